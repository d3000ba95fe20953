"""Right before sending: look at every planned contact again, against the newest facts.

A plan is made from the facts dated on or before its as-of date. Between planning and sending
(a resumed run, a late batch, a rerun for a past date) the customer may have paid or the account
may have gained a hold. Each planned contact is cancelled, with its reason, when:

- paid_since_planning: a payment (not a reversal), credit note or write-off dated after the
  plan's as-of date, or first loaded after the plan was made;
- disputed_since_planning: an open dispute opened after the as-of date, or first loaded after
  planning;
- payment_plan_since_planning: a payment plan or promise (not cancelled) created after the
  as-of date, or first loaded after planning;
- hold: <flag>: bankruptcy, deceased, cease_communication, attorney_represented, legal_hold or
  fraud in force today;
- hold: manual: a manual hold (dbt_project/seeds/manual_holds.csv) in force today;
- placed_with_agency: the account is placed with a collection agency (internal dunning stops);
- do_not_email / do_not_call: the flag in force today (email / phone only);
- email_<why>: the address is on recoup's suppression list now (email only);
- address_returned / phone_invalid: a letter to this address came back, or this number was
  reported invalid (ops.contact_problems; letter / phone only);
- contact_details_changed: a skip-trace result replaced the channel's details after the
  contact was planned (the account re-enters its stage for the new ones under another key);
- no_longer_in_stage: planned by an earlier day's run, and on the run's date the account is
  not in that stay any more (it moved up or down the ladder, paid, or is held);
- stale_plan: planned more than `contact.catch_up_days` before the run's date;
- installment reminders (on no ladder, so never no_longer_in_stage): hold: <reason> for a hold
  other than the plan's own, installment_no_longer_due, installment_due_date_passed
  (flows/lib/plan_servicing.py `cancel_outdated_reminders`).

"First loaded": a full snapshot re-sends old payments every day; only a payment whose key was
never loaded before planning counts as new. Cancelled contacts are planned again by a later run
while the account stays in the stage, with that day's amounts. The internal manager queue is
only cancelled when stale.

`recover_interrupted` runs first: a contact left `sending` by a crashed run is `maybe_sent` for
email (SendGrid may have it: never re-sent blindly); a letter or queue item is `sent` when its
print manifest or queue file was written, and `planned` again when it was not.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from flows.lib.ledger import Outcome, record_outcomes, transition
from flows.lib.plan_servicing import REMINDER_STAGE, cancel_outdated_reminders
from flows.lib.planner import ALL_ACCOUNTS, ContactScope, _sql_list

HOLD_FLAGS = (
    "bankruptcy",
    "deceased",
    "cease_communication",
    "attorney_represented",
    "legal_hold",
    "fraud",
)


# What can overtake a planned contact, per kind of item: (the kind in first_loads, the CTE of
# the pending accounts' items, its raw entity, the item's id)
_ITEMS = (
    ("payment", "payments", "payments", "payment_id"),
    ("adjustment", "adjustments", "adjustments", "adjustment_id"),
    ("dispute", "disputes", "disputes", "dispute_id"),
    ("plan", "plans", "payment_plans", "plan_id"),
)
_PENDING_ITEMS_SQL = "\n\n        ".join(
    f"""{cte} as (
            select * from raw.{entity}_latest
            where account_id in (select account_id from pending_accounts)
        ),"""
    for _, cte, entity, _ in _ITEMS
)
# when each of those items was first loaded: the earliest of its versions
_FIRST_LOADS_SQL = "\n            union all\n            ".join(
    f"""select '{kind}' as entity, {item_id} as item_id, min(_loaded_at) as first_loaded_at
            from raw.{entity}
            where {item_id} in (select {item_id} from {cte})
            group by {item_id}"""
    for kind, cte, entity, item_id in _ITEMS
)


def recover_interrupted(connection: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Settle contacts a crashed run left `sending`; how many per new status.

    An email is `maybe_sent`: SendGrid may have it, and it is never re-sent blindly. A letter
    or queue item is `sent` when the hand-off file it was claimed for (the print manifest, the
    queue file) exists and lists it, and `planned` again when it does not: nothing left recoup
    before that file was written."""
    rows = connection.execute(
        "select action_key, channel, output_path, provider_message_id "
        "from ops.action_ledger where status = 'sending'"
    ).fetchall()
    emails = [key for key, channel, _, _ in rows if channel == "email"]
    handed_off, not_yet = [], []
    for key, channel, output_path, hand_off in rows:
        if channel == "email":
            continue
        listed = output_path and hand_off and _lists(Path(output_path).parent / hand_off, key)
        (handed_off if listed else not_yet).append(key)
    record_outcomes(
        connection,
        [
            Outcome(key, "sent", "interrupted after its hand-off file was written",
                    sent_at=dt.datetime.now(dt.UTC))
            for key in handed_off
        ],
        run_id=run_id,
    )  # fmt: skip
    return {
        "maybe_sent": transition(
            connection, emails, "maybe_sent", run_id=run_id, reason="interrupted_while_sending"
        ),
        "sent": len(handed_off),
        "planned": transition(
            connection, not_yet, "planned", run_id=run_id, reason="interrupted_while_sending"
        ),
    }


def _lists(hand_off: Path, key: str) -> bool:
    try:
        return key in hand_off.read_text(encoding="utf-8")
    except OSError:
        return False


def cancel_outdated(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    today: dt.date,
    catch_up_days: int,
    run_id: str,
    scope: ContactScope = ALL_ACCOUNTS,
) -> dict[str, int]:
    """Cancel the planned contacts the newest facts overtook; how many per reason."""
    scope_sql, scope_parameters = scope.sql("ledger")
    rows = connection.execute(
        f"""
        with

        pending as (
            select * from ops.action_ledger as ledger
            where ledger.status = 'planned' and ledger.as_of_date <= $as_of and {scope_sql}
        ),

        customers as (
            select * from ops.customer_contacts
        ),

        -- the payments, credits, disputes and plans below only ever meet a pending contact by
        -- its account: read only those of the accounts with one, and each such item's
        -- versions in full for its first load (an earlier version may name another account)
        pending_accounts as (
            select distinct account_id from pending
        ),

        {_PENDING_ITEMS_SQL}

        first_loads as (
            {_FIRST_LOADS_SQL}
        ),

        money_in as (
            select
                payments.account_id,
                payments.received_date as item_date,
                first_loads.first_loaded_at
            from payments
            inner join first_loads
                on first_loads.entity = 'payment' and payments.payment_id = first_loads.item_id
            where payments.reverses_payment_id is null
            union all
            select
                adjustments.account_id,
                adjustments.effective_date,
                first_loads.first_loaded_at
            from adjustments
            inner join first_loads
                on
                    first_loads.entity = 'adjustment'
                    and adjustments.adjustment_id = first_loads.item_id
            where adjustments.kind in ('credit_note', 'write_off')
        ),

        new_disputes as (
            select
                disputes.account_id,
                disputes.opened_date as item_date,
                first_loads.first_loaded_at
            from disputes
            inner join first_loads
                on first_loads.entity = 'dispute' and disputes.dispute_id = first_loads.item_id
            where disputes.resolved_date is null or disputes.resolved_date > $today
        ),

        new_plans as (
            select
                plans.account_id,
                plans.created_date as item_date,
                first_loads.first_loaded_at
            from plans
            inner join first_loads
                on first_loads.entity = 'plan' and plans.plan_id = first_loads.item_id
            where plans.cancelled_date is null or plans.cancelled_date > $today
        ),

        flags_today as (
            select
                flags.customer_id,
                flags.account_id,
                flags.flag
            from raw.account_flags_latest as flags
            where
                flags.start_date <= $today
                and (flags.end_date is null or flags.end_date > $today)
        ),

        account_flags as (
            select
                pending.action_key,
                flags_today.flag
            from pending
            inner join flags_today
                on
                    pending.customer_id = flags_today.customer_id
                    and (
                        flags_today.account_id is null
                        or flags_today.account_id = pending.account_id
                    )
        ),

        stages_now as (
            select * from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        reasons as (
            select action_key, 1 as rank, 'stale_plan' as reason
            from pending
            where as_of_date < $as_of - $catch_up_days

            union all

            -- planned by an earlier day's run: still due only while the account is in that
            -- same stay (not moved up or down, paid, or held since)
            select pending.action_key, 1, 'no_longer_in_stage'
            from pending
            left join stages_now
                on
                    pending.account_id = stages_now.account_id
                    and pending.stage = stages_now.stage
                    and pending.stage_entered_date = stages_now.stage_entered_date
                    and not stages_now.is_held
            where
                pending.as_of_date < $as_of
                and stages_now.account_id is null
                and pending.stage <> '{REMINDER_STAGE}'

            union all

            select account_flags.action_key, 2, 'hold: ' || min(account_flags.flag)
            from account_flags
            inner join pending on account_flags.action_key = pending.action_key
            where
                account_flags.flag in {_sql_list(HOLD_FLAGS)}
                and pending.channel <> 'manager'
            group by account_flags.action_key

            union all

            select pending.action_key, 3, 'hold: manual'
            from pending
            inner join policy.manual_holds as manual_holds
                on pending.account_id = manual_holds.account_id
            where
                pending.channel <> 'manager'
                and manual_holds.start_date <= $today
                and (manual_holds.end_date is null or manual_holds.end_date > $today)

            union all

            select pending.action_key, 3, 'placed_with_agency'
            from pending
            inner join ops.placements as placements
                on pending.account_id = placements.account_id
            where placements.status = 'open' and pending.channel <> 'manager'

            union all

            select pending.action_key, 4, 'paid_since_planning'
            from pending
            inner join money_in
                on
                    pending.account_id = money_in.account_id
                    and (
                        money_in.item_date > pending.as_of_date
                        or money_in.first_loaded_at > pending.planned_at
                    )
            where pending.channel <> 'manager'

            union all

            select pending.action_key, 5, 'disputed_since_planning'
            from pending
            inner join new_disputes
                on
                    pending.account_id = new_disputes.account_id
                    and (
                        new_disputes.item_date > pending.as_of_date
                        or new_disputes.first_loaded_at > pending.planned_at
                    )
            where pending.channel <> 'manager'

            union all

            select pending.action_key, 6, 'payment_plan_since_planning'
            from pending
            inner join new_plans
                on
                    pending.account_id = new_plans.account_id
                    and (
                        new_plans.item_date > pending.as_of_date
                        or new_plans.first_loaded_at > pending.planned_at
                    )
            where pending.channel <> 'manager'

            union all

            select account_flags.action_key, 7, min(account_flags.flag)
            from account_flags
            inner join pending on account_flags.action_key = pending.action_key
            where
                (pending.channel = 'email' and account_flags.flag = 'do_not_email')
                or (pending.channel = 'phone' and account_flags.flag = 'do_not_call')
            group by account_flags.action_key

            union all

            select pending.action_key, 8, 'email_' || suppressions.reason
            from pending
            inner join customers on pending.customer_id = customers.customer_id
            inner join ops.email_suppressions as suppressions
                on lower(trim(customers.email)) = suppressions.email
            where pending.channel = 'email'

            union all

            select pending.action_key, 9, 'address_returned'
            from pending
            inner join customers on pending.customer_id = customers.customer_id
            where pending.channel = 'letter' and customers.address_returned

            union all

            select pending.action_key, 10, 'phone_invalid'
            from pending
            inner join customers on pending.customer_id = customers.customer_id
            where pending.channel = 'phone' and customers.phone_invalid

            union all

            -- planned for details a skip-trace result replaced since: the account re-enters
            -- its stage for the new ones under another key (planner), so this one never goes
            select pending.action_key, 11, 'contact_details_changed'
            from pending
            inner join customers on pending.customer_id = customers.customer_id
            where
                (pending.channel = 'email' and customers.email_updated_at > pending.planned_at)
                or (
                    pending.channel = 'letter'
                    and customers.address_updated_at > pending.planned_at
                )
                or (pending.channel = 'phone' and customers.phone_updated_at > pending.planned_at)
        )

        select action_key, arg_min(reason, rank) as reason
        from reasons
        group by action_key
        """,
        {"as_of": as_of, "today": today, "catch_up_days": catch_up_days, **scope_parameters},
    ).fetchall()
    by_reason: dict[str, list[str]] = {}
    for key, reason in rows:
        by_reason.setdefault(reason, []).append(key)
    cancelled = {
        reason: transition(
            connection, keys, "cancelled", run_id=run_id, reason=reason, only_from=("planned",)
        )
        for reason, keys in sorted(by_reason.items())
    }
    reminders = cancel_outdated_reminders(
        connection, as_of=as_of, today=today, run_id=run_id, scope=scope
    )
    for reason, count in reminders.items():
        cancelled[reason] = cancelled.get(reason, 0) + count
    return cancelled
