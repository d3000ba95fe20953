"""Plan the day's contacts: one set-based query from the stage decisions to the action ledger.

An account gets a contact when, on the as-of date, it is in a stage whose channel reaches a
person (email, letter, phone queue, manager queue), it is not held, and the ledger holds no
contact yet for its key (account, stage, channel, policy version, the date it entered the
stage). Accounts that entered the stage up to `contact.catch_up_days` ago still qualify, so a
contact that was deferred, cancelled by a payment or refused by the provider is planned again
while it is still due; a key that was sent, maybe sent or suppressed never is.

When a skip-trace result gives the stage's channel new contact details on or after the day
the account entered the stage (dim_customers.email_updated_on / _at, address_updated_on / _at,
phone_updated_on / _at), the account re-enters the stage on that day: the key carries the date
(`reentered_on`), catch-up counts from it, and a contact planned before the new details were
accepted (to the old ones) does not make the new one a duplicate; the re-check cancels such a
contact if it is still planned (contact_details_changed).

Each candidate is judged by the guardrails, in this order; the first that applies is recorded
as its status and reason:

- email: the customer has no address → suppressed, no_email_address
- email: a do_not_email flag → suppressed, do_not_email
- email: the address bounced, was dropped, reported spam or unsubscribed (ops.email_suppressions)
  → suppressed, email_<why>
- email: a consumer's address at an employer's domain (`contact.work_email_domains`)
  → suppressed, work_email
- letter: no postal address → suppressed, no_postal_address
- letter: a letter to this address came back (returned-mail import) → suppressed, address_returned
- phone: no phone number, or a do_not_call flag → suppressed, no_phone_number / do_not_call
- phone: the number was reported invalid → suppressed, phone_invalid
- every channel but manager: the stage was contacted under another key and the account never
  left it since (a rerun for a past date can date a stage entry differently)
  → suppressed, already_contacted
- every channel but manager: the channel's cap per rolling 7 days is reached
  → deferred, frequency_cap
- every channel but manager: another contact less than `min_days_between_contacts` days away
  → deferred, min_days_between_contacts

Holds (bankruptcy, deceased, cease_communication, attorney_represented, legal_hold, fraud,
plans and promises, a dispute of the whole balance, manual holds) never get this far: a held
account keeps its stage and enters none (fct_account_stage_history), and the send step checks
every hold again right before sending. Caps and spacing count contacts by the as-of date of
the run that made them, so a rerun for a past date judges by the same calendar.

`build_plan` writes the candidates to a temp table and counts them; `commit_plan` writes them
into the ledger. The volume circuit breaker runs in between, so a halted spike leaves nothing
planned; a dry run never commits. The day's installment reminders of active plans join the
candidates after the dunning contacts (flows/lib/plan_servicing.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from flows.lib.config import ContactSettings
from flows.lib.ledger import ACTION_KEY_SQL, CONTACTED, REPLANNABLE
from flows.lib.plan_servicing import plan_installment_reminders

PLAN_TABLE = "_contact_plan"
STAY_LOOKBACK_DAYS = 90  # a same-stage contact further away than this is an earlier stay
CUSTOMER_CHANNELS = ("email", "letter", "phone")
LEDGER_CHANNELS = (*CUSTOMER_CHANNELS, "manager")


@dataclass(frozen=True)
class ContactScope:
    """Which accounts a run acts on: all of them, one segment, or a list."""

    segment: str | None = None
    account_ids: tuple[str, ...] | None = None

    def sql(self, alias: str) -> tuple[str, dict[str, object]]:
        """A where-clause fragment over `alias`, with its named parameters."""
        clauses, parameters = [], {}
        if self.segment is not None:
            clauses.append(f"{alias}.segment = $scope_segment")
            parameters["scope_segment"] = self.segment
        if self.account_ids is not None:
            clauses.append(f"list_contains($scope_accounts, {alias}.account_id)")
            parameters["scope_accounts"] = list(self.account_ids)
        return (" and ".join(clauses) or "true"), parameters


ALL_ACCOUNTS = ContactScope()


@dataclass(frozen=True)
class Plan:
    as_of: dt.date
    run_id: str
    counts: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    committed: bool = False

    def planned(self) -> dict[str, int]:
        """Contacts to send per channel: what the volume circuit breaker judges."""
        out: dict[str, int] = {}
        for (channel, status, _reason), count in self.counts.items():
            if status == "planned":
                out[channel] = out.get(channel, 0) + count
        return out

    def held_back(self) -> dict[tuple[str, str, str], int]:
        """(channel, status, reason) of what guardrails stopped."""
        return {
            (channel, status, reason or ""): count
            for (channel, status, reason), count in self.counts.items()
            if status != "planned"
        }


def build_plan(
    connection: duckdb.DuckDBPyConnection,
    contact: ContactSettings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope = ALL_ACCOUNTS,
    *,
    installment_reminder_days: int = 0,
) -> Plan:
    """Judge today's candidates into the temp table `_contact_plan`; count them. With
    `installment_reminder_days` (negotiation.installment_reminder_days), the day's reminders
    of plan installments join them (flows/lib/plan_servicing.py)."""
    scope_sql, scope_parameters = scope.sql("history")
    contacted = _sql_list((*CONTACTED, "planned"))
    parameters: dict[str, object] = {
        "as_of": as_of,
        "catch_up_days": contact.catch_up_days,
        "work_domains": [domain.lower() for domain in contact.work_email_domains],
        "email_cap": contact.max_emails_per_7_days,
        "letter_cap": contact.max_letters_per_7_days,
        "call_cap": contact.max_calls_per_7_days,
        "min_days": contact.min_days_between_contacts,
        "stay_lookback_days": STAY_LOOKBACK_DAYS,
        **scope_parameters,
    }
    connection.execute(
        f"""
        create or replace temp table {PLAN_TABLE} as
        with

        history as (
            select * from marts.fct_account_stage_history
        ),

        in_stage as (
            select
                history.*,
                history.stage_channel as channel
            from history
            where
                history.as_of_date = $as_of
                and history.stage_order > 0
                and not history.is_held
                and history.stage_channel in {_sql_list(LEDGER_CHANNELS)}
                and {scope_sql}
        ),

        -- new contact details for the stage's channel accepted on or after the day the account
        -- entered the stage (a skip-trace result): it re-enters the stage that day, a new key
        reentries as (
            select
                joined.* exclude (updated_on, updated_at),
                case
                    when joined.updated_on >= joined.stage_entered_date
                        and joined.updated_on <= $as_of
                        then joined.updated_on
                end as reentered_on,
                case
                    when joined.updated_on >= joined.stage_entered_date
                        and joined.updated_on <= $as_of
                        then joined.updated_at
                end as reentered_at
            from (
                select in_stage.*, updated.updated_on, updated.updated_at
                from in_stage
                left join (
                    select
                        customer_id, 'email' as channel,
                        email_updated_on as updated_on, email_updated_at as updated_at
                    from marts.dim_customers where email_updated_on is not null
                    union all
                    select customer_id, 'letter', address_updated_on, address_updated_at
                    from marts.dim_customers where address_updated_on is not null
                    union all
                    select customer_id, 'phone', phone_updated_on, phone_updated_at
                    from marts.dim_customers where phone_updated_on is not null
                ) as updated
                    on
                        in_stage.customer_id = updated.customer_id
                        and in_stage.channel = updated.channel
            ) as joined
        ),

        today as (
            select reentries.*
            from reentries
            where
                reentries.as_of_date
                - greatest(reentries.stage_entered_date, reentries.reentered_on)
                <= $catch_up_days
                -- placed with an agency: internal dunning stops (the hold follows in the
                -- next build; this covers the day of placement)
                and reentries.account_id not in (
                    select placements.account_id from ops.placements as placements
                    where placements.status = 'open'
                )
        ),

        keyed as (
            select
                {ACTION_KEY_SQL} as action_key,
                today.*
            from today
        ),

        ledger as (
            select * from ops.action_ledger
        ),

        candidates as (
            select
                keyed.*,
                ledger.status as previous_status
            from keyed
            left join ledger
                on keyed.action_key = ledger.action_key
            where ledger.status is null or ledger.status in {_sql_list(REPLANNABLE)}
        ),

        -- contacts that went out, may have, or are planned to, dated by the run that made them
        contacts as (
            select
                action_key,
                account_id,
                customer_id,
                stage,
                stage_order,
                channel,
                as_of_date as contact_day,
                planned_at
            from ledger
            where status in {contacted}
        ),

        -- caps count per account (per debt) and channel
        channel_counts as (
            select
                candidates.action_key,
                count(*) as same_channel_last_7_days
            from candidates
            inner join contacts
                on
                    candidates.account_id = contacts.account_id
                    and candidates.channel = contacts.channel
                    and contacts.contact_day between $as_of - 6 and $as_of
            group by candidates.action_key
        ),

        -- spacing counts per customer: two accounts, one person
        spacing as (
            select
                candidates.action_key,
                min(abs(contacts.contact_day - $as_of)) as days_to_nearest_contact
            from candidates
            inner join contacts
                on
                    candidates.customer_id = contacts.customer_id
                    and contacts.channel in {_sql_list(CUSTOMER_CHANNELS)}
            group by candidates.action_key
        ),

        -- a rerun for a past date never goes back down the ladder: a later-dated run already
        -- contacted the account about a stage above this one
        superseded as (
            select distinct candidates.action_key
            from candidates
            inner join contacts
                on
                    candidates.account_id = contacts.account_id
                    and contacts.contact_day > $as_of
                    and contacts.stage_order > candidates.stage_order
                    and contacts.channel in {_sql_list(CUSTOMER_CHANNELS)}
        ),

        -- the same stage contacted under another key (a rerun for a past date can date a stage
        -- entry differently, a new policy version renames nothing): a duplicate unless the
        -- account left the stage in between. Contacts more than STAY_LOOKBACK_DAYS away belong
        -- to an earlier stay.
        same_stage as (
            select
                candidates.action_key,
                candidates.account_id,
                candidates.stage_order,
                least(contacts.contact_day, $as_of) as stay_from,
                greatest(contacts.contact_day, $as_of) as stay_to
            from candidates
            inner join contacts
                on
                    candidates.account_id = contacts.account_id
                    and candidates.stage = contacts.stage
                    and candidates.action_key <> contacts.action_key
                    and abs(contacts.contact_day - $as_of) <= $stay_lookback_days
                    -- a contact made for the details replaced since is no duplicate (one
                    -- still planned is cancelled before sending: recheck)
                    and (
                        candidates.reentered_at is null
                        or contacts.planned_at >= candidates.reentered_at
                    )
        ),

        run_days as (
            select distinct as_of_date from history
        ),

        stays as (
            select
                same_stage.action_key,
                same_stage.stay_from,
                count(run_days.as_of_date) as days_between,
                count(stayed.account_id) as days_at_or_above
            from same_stage
            left join run_days
                on
                    run_days.as_of_date > same_stage.stay_from
                    and run_days.as_of_date < same_stage.stay_to
            left join history as stayed
                on
                    run_days.as_of_date = stayed.as_of_date
                    and same_stage.account_id = stayed.account_id
                    and stayed.stage_order >= same_stage.stage_order
            group by same_stage.action_key, same_stage.stay_from
        ),

        already_contacted as (
            select distinct action_key
            from stays
            where days_between = days_at_or_above
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
                    when candidates.channel = 'email' and customers.email is null
                        then 'suppressed:no_email_address'
                    when
                        candidates.channel = 'email'
                        and list_contains(
                            string_split(candidates.contact_restrictions, ', '), 'do_not_email'
                        )
                        then 'suppressed:do_not_email'
                    when candidates.channel = 'email' and suppressions.email is not null
                        then 'suppressed:email_' || suppressions.reason
                    when
                        candidates.channel = 'email'
                        and customers.customer_type = 'consumer'
                        and len(list_filter(
                            $work_domains,
                            lambda domain: lower(split_part(trim(customers.email), '@', 2))
                            = domain
                            or lower(split_part(trim(customers.email), '@', 2))
                            like '%.' || domain
                        )) > 0
                        then 'suppressed:work_email'
                    when
                        candidates.channel = 'letter'
                        and (
                            customers.address_line1 is null
                            or customers.city is null
                            or customers.postal_code is null
                        )
                        then 'suppressed:no_postal_address'
                    when candidates.channel = 'letter' and customers.is_address_returned
                        then 'suppressed:address_returned'
                    when candidates.channel = 'phone' and customers.phone is null
                        then 'suppressed:no_phone_number'
                    when candidates.channel = 'phone' and customers.is_phone_invalid
                        then 'suppressed:phone_invalid'
                    when
                        candidates.channel = 'phone'
                        and list_contains(
                            string_split(candidates.contact_restrictions, ', '), 'do_not_call'
                        )
                        then 'suppressed:do_not_call'
                    when candidates.channel = 'manager' then 'planned'
                    when already_contacted.action_key is not null
                        then 'suppressed:already_contacted'
                    when superseded.action_key is not null
                        then 'suppressed:superseded'
                    when
                        coalesce(channel_counts.same_channel_last_7_days, 0) >= case
                            candidates.channel
                            when 'email' then $email_cap
                            when 'letter' then $letter_cap
                            else $call_cap
                        end
                        then 'deferred:frequency_cap'
                    when spacing.days_to_nearest_contact < $min_days
                        then 'deferred:min_days_between_contacts'
                    else 'planned'
                end as verdict
            from candidates
            left join customers
                on candidates.customer_id = customers.customer_id
            left join suppressions
                on lower(trim(customers.email)) = suppressions.email
            left join channel_counts
                on candidates.action_key = channel_counts.action_key
            left join spacing
                on candidates.action_key = spacing.action_key
            left join superseded
                on candidates.action_key = superseded.action_key
            left join already_contacted
                on candidates.action_key = already_contacted.action_key
        ),

        -- one new contact per customer per run (the highest stage first): a customer with
        -- two past-due accounts hears about the second one min_days_between_contacts later
        ranked as (
            select
                judged.*,
                row_number() over (
                    partition by
                        judged.customer_id,
                        judged.verdict = 'planned' and judged.channel <> 'manager'
                    order by judged.stage_order desc, judged.account_id
                ) as customer_rank
            from judged
        ),

        final as (
            select
                ranked.* exclude (verdict, customer_rank),
                case
                    when
                        ranked.verdict = 'planned'
                        and ranked.channel <> 'manager'
                        and ranked.customer_rank > 1
                        and $min_days > 0
                        then 'deferred:min_days_between_contacts'
                    else ranked.verdict
                end as verdict
            from ranked
        )

        select
            action_key,
            account_id,
            customer_id,
            stage,
            stage_order,
            channel,
            stage_template as template,
            policy_version,
            stage_entered_date,
            reentered_on,
            as_of_date,
            segment,
            currency,
            total_open,
            collectible_amount,
            previous_status,
            split_part(verdict, ':', 1) as status,
            nullif(split_part(verdict, ':', 2), '') as reason
        from final
        """,
        parameters,
    )
    plan_installment_reminders(
        connection, contact, as_of, reminder_days=installment_reminder_days, scope=scope,
        plan_table=PLAN_TABLE,
    )  # fmt: skip
    rows = connection.execute(
        f"select channel, status, reason, count(*) from {PLAN_TABLE} group by all"
    ).fetchall()
    return Plan(
        as_of=as_of,
        run_id=run_id,
        counts={(channel, status, reason): count for channel, status, reason, count in rows},
    )


def commit_plan(connection: duckdb.DuckDBPyConnection, plan: Plan) -> Plan:
    """Write the judged candidates into the ledger (new keys inserted, keys planned again
    updated) and log every change, in one transaction."""
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"""
            update ops.action_ledger as ledger
            set
                status = plan.status,
                reason = plan.reason,
                as_of_date = plan.as_of_date,
                run_id = ?,
                total_open = plan.total_open,
                collectible_amount = plan.collectible_amount,
                times_planned = ledger.times_planned + 1,
                planned_at = now(),
                status_at = now()
            from {PLAN_TABLE} as plan
            where
                ledger.action_key = plan.action_key
                and ledger.status in {_sql_list(REPLANNABLE)}
            """,
            [plan.run_id],
        )
        connection.execute(
            f"""
            insert into ops.action_ledger (
                action_key, account_id, customer_id, stage, stage_order, channel, template,
                policy_version, stage_entered_date, reentered_on, as_of_date, run_id, segment,
                currency, total_open, collectible_amount, status, reason, times_planned,
                attempts, planned_at, status_at
            )
            select
                action_key, account_id, customer_id, stage, stage_order, channel, template,
                policy_version, stage_entered_date, reentered_on, as_of_date, ?, segment,
                currency, total_open, collectible_amount, status, reason, 1, 0, now(), now()
            from {PLAN_TABLE}
            where previous_status is null
            """,
            [plan.run_id],
        )
        connection.execute(
            f"""
            insert into ops.action_log
            select action_key, now(), ?, previous_status, status, reason
            from {PLAN_TABLE}
            """,
            [plan.run_id],
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return Plan(plan.as_of, plan.run_id, plan.counts, committed=True)


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"
