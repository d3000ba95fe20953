"""Plan servicing: one email reminder before each installment of an active plan, promise or
settlement, and nothing more once the plan is paid, broken or cancelled.

Every unpaid installment of an active plan (marts.fct_payment_plan_installments, whatever its
source: billing's payment_plans or an agreement recorded in recoup) whose due date falls
between the as-of date and `negotiation.installment_reminder_days` days after it gets ONE
email, ever. On a day-by-day schedule that is the day exactly N days before the due date; a
run that was skipped is caught up by the next one, as long as the due date has not passed.
`installment_reminder_days: 0` turns reminders off.

The reminder is a contact like any other in the action ledger (stage `installment_reminder`,
channel email, template `installment_reminder`, stage_order 0: it is on no ladder), under the
ledger's key with the installment's due date as `stage_entered_date`:
`action_key(account_id, "installment_reminder", "email", policy_version, due_date)`. So a rerun,
a past-date rerun or a later day plans the same key again and finds it planned or sent; and an
installment already reminded under another key (a new policy version) is not reminded again.
One account has one reminder per due date: two plans of one account due the same day share it
(the email shows the installment of the plan with the lower plan_id).

Guardrails (`plan_installment_reminders`, judged after the day's dunning contacts):
- holds: the plan's own hold (reason = its kind: promise_to_pay, installment_plan,
  settlement) stops dunning, not servicing; any other hold (bankruptcy, deceased,
  cease_communication, attorney_represented, legal_hold, fraud, a manual hold, a dispute of the
  whole balance, placed_with_agency, settled, referred_to_legal, ...) means no reminder: the
  installment is no candidate that day, as a held account is no candidate for dunning;
- an account with nothing open (not in the day's fct_account_stage_history) gets none;
- the email guardrails of the dunning emails: no address, do_not_email, an address on the
  suppression list, a consumer's work address → suppressed (final, like a dunning email's);
- at most one email per customer per day: a reminder is deferred (another_email_today) when
  another email to the customer is planned or went out for the same as-of date, or a reminder
  due sooner is planned that day; a deferred reminder is planned again the next day while the
  due date has not passed.
- Frequency caps and the minimum days between contacts do not hold a reminder back (the
  customer asked for the schedule; at most one per installment), but a reminder counts as an
  email in the caps and spacing of the dunning contacts that follow it.

Right before sending (`cancel_outdated_reminders`, from the re-check), a planned reminder is
cancelled when the installment is paid or no longer part of an active plan
(installment_no_longer_due: paid, broken, cancelled), when the account gained another hold
(hold: <reason>), or when its due date is before today (installment_due_date_passed: a rerun for
a past date, or a resumed run, never reminds of a date gone by).

`installments_due` and `with_installment` give the email's context the installment
(flows/lib/contact_data.py): amount, due date, k of n, what stays to pay after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import duckdb

from flows.lib.config import ContactSettings
from flows.lib.ledger import ACTION_KEY_SQL, CONTACTED, REPLANNABLE, transition
from flows.lib.templates import ContactContext, InstallmentDue

if TYPE_CHECKING:  # planner imports this module: no import cycle at run time
    from flows.lib.planner import ContactScope

REMINDER_STAGE = "installment_reminder"
REMINDER_TEMPLATE = "installment_reminder"
# the hold an active plan puts on its own account (int_account_holds: the plan's kind)
PLAN_HOLD_REASONS = ("promise_to_pay", "installment_plan", "settlement")
INSTALLMENTS_MART = "marts.fct_payment_plan_installments"


class InstallmentsNotBuilt(RuntimeError):
    """marts.fct_payment_plan_installments does not exist: dbt has not built it yet."""


@dataclass(frozen=True)
class RemindersPlanned:
    """What `plan_installment_reminders` added to the day's plan, per (status, reason)."""

    as_of: dt.date
    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return sum(count for (status, _), count in self.counts.items() if status == "planned")


def plan_installment_reminders(
    connection: duckdb.DuckDBPyConnection,
    contact: ContactSettings,
    as_of: dt.date,
    *,
    reminder_days: int,
    scope: ContactScope | None = None,
    plan_table: str = "_contact_plan",
) -> RemindersPlanned:
    """Judge the day's installment reminders and append them to `plan_table` (the planner's
    temp table, in its columns), before the volume breaker and the commit; count them."""
    if reminder_days <= 0:
        return RemindersPlanned(as_of)
    _require_mart(connection)
    scope_sql, scope_parameters = scope.sql("history") if scope is not None else ("true", {})
    parameters: dict[str, object] = {
        "as_of": as_of,
        "days": reminder_days,
        "work_domains": [domain.lower() for domain in contact.work_email_domains],
        "plan_holds": list(PLAN_HOLD_REASONS),
        **scope_parameters,
    }
    connection.execute(
        f"""
        create or replace temp table _installment_reminders as
        with

        installments as (
            select distinct account_id, due_date
            from {INSTALLMENTS_MART}
            where
                as_of_date = $as_of
                and plan_status = 'active'
                and not is_paid
                and due_date between $as_of and $as_of + $days
        ),

        history as (
            select * from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        -- accounts with something open that day, in the run's scope, with no hold but their
        -- plan's own (an agency placed today is held from the next build on)
        serviceable as (
            select history.*
            from history
            where
                {scope_sql}
                and len(list_filter(
                    string_split(coalesce(history.hold_reason, ''), ', '),
                    lambda reason: reason <> '' and not list_contains($plan_holds, reason)
                )) = 0
                and history.account_id not in (
                    select placements.account_id from ops.placements as placements
                    where placements.status = 'open'
                )
        ),

        reminders as (
            select
                serviceable.account_id,
                serviceable.customer_id,
                '{REMINDER_STAGE}' as stage,
                0 as stage_order,
                'email' as channel,
                '{REMINDER_TEMPLATE}' as template,
                serviceable.policy_version,
                installments.due_date as stage_entered_date,
                null::date as reentered_on,
                serviceable.as_of_date,
                serviceable.segment,
                serviceable.currency,
                serviceable.total_open,
                serviceable.collectible_amount,
                serviceable.contact_restrictions
            from installments
            inner join serviceable
                on installments.account_id = serviceable.account_id
        ),

        keyed as (
            select
                {ACTION_KEY_SQL} as action_key,
                reminders.*
            from reminders
        ),

        ledger as (
            select * from ops.action_ledger
        ),

        -- reminded once: planned, sent (or maybe) or suppressed, under any key
        reminded as (
            select distinct account_id, stage_entered_date
            from ledger
            where stage = '{REMINDER_STAGE}' and status not in {_sql_list(REPLANNABLE)}
        ),

        candidates as (
            select
                keyed.*,
                ledger.status as previous_status
            from keyed
            left join ledger
                on keyed.action_key = ledger.action_key
            left join reminded
                on
                    keyed.account_id = reminded.account_id
                    and keyed.stage_entered_date = reminded.stage_entered_date
            where
                (ledger.status is null or ledger.status in {_sql_list(REPLANNABLE)})
                and reminded.account_id is null
        ),

        -- other emails to the customer for the same day: this run's plan, earlier runs' ledger
        same_day_emails as (
            select customer_id
            from {plan_table}
            where channel = 'email' and status = 'planned'
            union all
            select customer_id
            from ledger
            where
                channel = 'email'
                and as_of_date = $as_of
                and status in {_sql_list((*CONTACTED, "planned"))}
        ),

        emailed_today as (
            select distinct customer_id from same_day_emails
        ),

        customers as (
            select * from marts.dim_customers
        ),

        suppressions as (
            select * from ops.email_suppressions
        ),

        judged as (
            select
                candidates.*,
                case
                    when customers.email is null then 'suppressed:no_email_address'
                    when
                        list_contains(
                            string_split(candidates.contact_restrictions, ', '), 'do_not_email'
                        )
                        then 'suppressed:do_not_email'
                    when suppressions.email is not null
                        then 'suppressed:email_' || suppressions.reason
                    when
                        customers.customer_type = 'consumer'
                        and len(list_filter(
                            $work_domains,
                            lambda domain: lower(split_part(trim(customers.email), '@', 2))
                            = domain
                            or lower(split_part(trim(customers.email), '@', 2))
                            like '%.' || domain
                        )) > 0
                        then 'suppressed:work_email'
                    when emailed_today.customer_id is not null
                        then 'deferred:another_email_today'
                    else 'planned'
                end as verdict
            from candidates
            left join customers
                on candidates.customer_id = customers.customer_id
            left join suppressions
                on lower(trim(customers.email)) = suppressions.email
            left join emailed_today
                on candidates.customer_id = emailed_today.customer_id
        ),

        -- one reminder per customer per day, the soonest due first
        ranked as (
            select
                judged.*,
                row_number() over (
                    partition by judged.customer_id, judged.verdict = 'planned'
                    order by judged.stage_entered_date, judged.account_id
                ) as customer_rank
            from judged
        )

        select
            action_key,
            account_id,
            customer_id,
            stage,
            stage_order,
            channel,
            template,
            policy_version,
            stage_entered_date,
            reentered_on,
            as_of_date,
            segment,
            currency,
            total_open,
            collectible_amount,
            previous_status,
            case
                when verdict = 'planned' and customer_rank > 1 then 'deferred'
                else split_part(verdict, ':', 1)
            end as status,
            case
                when verdict = 'planned' and customer_rank > 1 then 'another_email_today'
                else nullif(split_part(verdict, ':', 2), '')
            end as reason
        from ranked
        """,
        parameters,
    )
    connection.execute(f"insert into {plan_table} by name select * from _installment_reminders")
    rows = connection.execute(
        "select status, reason, count(*) from _installment_reminders group by all"
    ).fetchall()
    connection.execute("drop table _installment_reminders")
    return RemindersPlanned(
        as_of, counts={(status, reason): count for status, reason, count in rows}
    )


def cancel_outdated_reminders(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    today: dt.date,
    run_id: str,
    scope: ContactScope | None = None,
) -> dict[str, int]:
    """Cancel the planned reminders that the newest facts overtook; how many per reason."""
    scope_sql, scope_parameters = scope.sql("ledger") if scope is not None else ("true", {})
    parameters = {"as_of": as_of, **scope_parameters}
    pending = connection.execute(
        f"""
        select count(*) from ops.action_ledger as ledger
        where
            ledger.status = 'planned'
            and ledger.stage = '{REMINDER_STAGE}'
            and ledger.as_of_date <= $as_of
            and {scope_sql}
        """,
        parameters,
    ).fetchone()
    if not pending or not pending[0]:
        return {}
    _require_mart(connection)
    rows = connection.execute(
        f"""
        with

        pending as (
            select * from ops.action_ledger as ledger
            where
                ledger.status = 'planned'
                and ledger.stage = '{REMINDER_STAGE}'
                and ledger.as_of_date <= $as_of
                and {scope_sql}
        ),

        still_due as (
            select distinct account_id, due_date
            from {INSTALLMENTS_MART}
            where as_of_date = $as_of and plan_status = 'active' and not is_paid
        ),

        other_holds as (
            select
                account_id,
                list_filter(
                    string_split(coalesce(hold_reason, ''), ', '),
                    lambda reason: reason <> '' and not list_contains($plan_holds, reason)
                ) as reasons
            from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        reasons as (
            select pending.action_key, 1 as rank, 'hold: ' || other_holds.reasons[1] as reason
            from pending
            inner join other_holds
                on pending.account_id = other_holds.account_id
            where len(other_holds.reasons) > 0

            union all

            select pending.action_key, 2, 'installment_no_longer_due'
            from pending
            left join still_due
                on
                    pending.account_id = still_due.account_id
                    and pending.stage_entered_date = still_due.due_date
            where still_due.account_id is null

            union all

            select action_key, 3, 'installment_due_date_passed'
            from pending
            where stage_entered_date < $today
        )

        select action_key, arg_min(reason, rank) as reason
        from reasons
        group by action_key
        """,
        {**parameters, "today": today, "plan_holds": list(PLAN_HOLD_REASONS)},
    ).fetchall()
    by_reason: dict[str, list[str]] = {}
    for key, reason in rows:
        by_reason.setdefault(reason, []).append(key)
    return {
        reason: transition(
            connection, keys, "cancelled", run_id=run_id, reason=reason, only_from=("planned",)
        )
        for reason, keys in sorted(by_reason.items())
    }


def installments_due(
    connection: duckdb.DuckDBPyConnection, keys: list[str], as_of: dt.date
) -> dict[str, InstallmentDue]:
    """The installment each planned reminder among `keys` is about, on `as_of` (one query);
    a reminder whose installment is no longer due (paid, plan broken or cancelled) has none."""
    if not keys:
        return {}
    _require_mart(connection)
    rows = connection.execute(
        f"""
        with

        planned as (
            select action_key, account_id, stage_entered_date
            from ops.action_ledger
            where action_key in (select unnest($keys::varchar[])) and stage = '{REMINDER_STAGE}'
        ),

        installments as (
            select * from {INSTALLMENTS_MART}
            where as_of_date = $as_of and plan_status = 'active' and not is_paid
        ),

        matched as (
            select
                planned.action_key,
                installments.*,
                row_number() over (
                    partition by planned.action_key order by installments.plan_id
                ) as plan_rank
            from planned
            inner join installments
                on
                    planned.account_id = installments.account_id
                    and planned.stage_entered_date = installments.due_date
        )

        select
            action_key,
            plan_id,
            plan_kind,
            installment_no,
            installments,
            due_date,
            installment_amount,
            unpaid_amount,
            remaining_after_amount,
            grace_end_date
        from matched
        where plan_rank = 1
        """,
        {"keys": keys, "as_of": as_of},
    ).fetchall()
    return {
        key: InstallmentDue(
            plan_id=plan_id,
            plan_kind=plan_kind,
            number=number,
            installments=count,
            due_date=due_date,
            amount=amount,
            amount_due=unpaid,
            remaining_after=remaining,
            grace_end_date=grace_end,
        )
        for (
            key, plan_id, plan_kind, number, count, due_date, amount, unpaid, remaining,
            grace_end,
        ) in rows
    }  # fmt: skip


def with_installment(context: ContactContext, installment: InstallmentDue) -> ContactContext:
    """A reminder's context: it asks for the installment (never more than the collectible
    balance) by its due date, and names no escalation step."""
    amount_due = min(installment.amount_due, context.collectible_amount)
    pay_by = installment.due_date
    if context.validation is not None:  # Reg F 1006.38(b): never before the validation end
        pay_by = max(pay_by, context.pay_by_date)
    return dataclasses.replace(
        context,
        installment=dataclasses.replace(installment, amount_due=amount_due),
        amount_due=amount_due,
        not_yet_due_amount=Decimal("0.00"),
        pay_by_date=pay_by,
        next_step_date=None,
    )


def _require_mart(connection: duckdb.DuckDBPyConnection) -> None:
    found = connection.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'marts' and table_name = 'fct_payment_plan_installments'"
    ).fetchone()
    if not found or not found[0]:
        raise InstallmentsNotBuilt(
            f"{INSTALLMENTS_MART} does not exist: build the warehouse for the date first "
            "(`recoup run --as-of DATE`); no installment reminder was planned or sent."
        )


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"
