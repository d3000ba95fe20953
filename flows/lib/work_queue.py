"""The phone and manager work queues: planned calls and reviews → owned items with a due date.

A phone item (stage channel `phone`, e.g. manager_review) goes to one of
`work_queue.phone_owners`, the same collector for the same account every time; a manager item
(channel `manager`, e.g. write_off_recommendation) goes to `work_queue.manager_owner`. The due
date is `work_queue.due_business_days` business days after the run's date (dim_calendar). Each
call item says when a call is lawful: the hours inside the window in every zone the customer may
be in, in the company's time zone. do_not_call and the calls-per-7-days cap were applied when
the call was planned; holds are checked again right before queueing. An item whose stage uses
offers carries the account's offers in force as `talking_points` (flows/lib/offers.py), e.g.
"Plan: 3 x 120.00 USD, 6 x 60.00 USD; settlement 540.00 USD (90%) until 2026-04-30 (needs
approval)"; empty when there are none.

Each run writes `out/work_queue/<run date>/work_queue_<run>.csv` with the items it queued; the
mart `fct_work_queue` is the whole queue, open and done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import zoneinfo

import duckdb

from flows.lib.business_days import business_day_after
from flows.lib.config import Settings
from flows.lib.contact_data import PlannedContact, due_contacts
from flows.lib.emailing import planned_keys, send_window
from flows.lib.ledger import ChannelOutcome, Outcome, claim, record_outcomes
from flows.lib.offers import talking_points
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from flows.lib.printing import note_hand_off
from flows.lib.send_window import SendWindow, lawful_intervals, plausible_zones

QUEUE_HEADER = (
    "item_id",
    "queue",
    "owner",
    "due_date",
    "account_id",
    "customer_name",
    "phone",
    "stage",
    "reason",
    "currency",
    "collectible_amount",
    "max_days_past_due",
    "call_window",
    "talking_points",
)


def queue_planned_work(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    scope: ContactScope = ALL_ACCOUNTS,
) -> ChannelOutcome:
    """Queue the run's planned calls and manager reviews; what became of them."""
    outcome = ChannelOutcome("queue")
    keys = planned_keys(connection, "phone", as_of, scope) + planned_keys(
        connection, "manager", as_of, scope
    )
    if not keys:
        return outcome
    contacts = due_contacts(connection, settings, keys, as_of, run_id=run_id, outcome=outcome)
    if not contacts:
        return outcome
    folder = settings.path("out") / "work_queue" / as_of.isoformat()
    queue_file = folder / f"work_queue_{run_id[:8]}.csv"
    claimed = set(claim(connection, [contact.action_key for contact in contacts], run_id=run_id))
    contacts = [contact for contact in contacts if contact.action_key in claimed]
    note_hand_off(
        connection, {contact.action_key: (queue_file, queue_file) for contact in contacts}
    )
    days = settings.work_queue.due_business_days
    due = business_day_after(connection, as_of, days) or as_of + dt.timedelta(days=days)
    window = send_window(settings)
    company_zone = zoneinfo.ZoneInfo(settings.company.timezone)
    points = talking_points(connection, settings, as_of, [each.action_key for each in contacts])
    rows, queued = [], []
    for contact in contacts:
        queue = "manager" if contact.channel == "manager" else "phone"
        owner = (
            settings.work_queue.manager_owner
            if queue == "manager"
            else _owner(contact.account_id, settings.work_queue.phone_owners)
        )
        context = contact.context
        reason = f"{contact.stage}: {context.max_days_past_due} days past due"
        call_window = (
            _call_window(contact, due, window, settings.company.timezone, company_zone)
            if queue == "phone"
            else ""
        )
        rows.append(
            (
                contact.action_key,
                queue,
                owner,
                due.isoformat(),
                contact.account_id,
                contact.recipient.name,
                contact.recipient.phone or "",
                contact.stage,
                reason,
                context.currency,
                f"{context.collectible_amount:.2f}",
                context.max_days_past_due,
                call_window,
                points.get(contact.action_key, ""),
            )
        )
        queued.append(
            Outcome(
                contact.action_key,
                "sent",
                reason,
                provider="queue",
                provider_message_id=queue_file.name,
                sent_at=now,
                recipient=contact.recipient.phone if queue == "phone" else None,
                language=context.language,
                owner=owner,
                due_date=due,
            )
        )
    path = write_atomically(queue_file, csv_bytes(QUEUE_HEADER, rows))
    queued = [dataclasses.replace(each, output_path=str(path)) for each in queued]
    record_outcomes(connection, queued, run_id=run_id)
    outcome.add("sent", None, len(queued))
    outcome.files = [str(path)]
    return outcome


def _owner(account_id: str, owners: list[str]) -> str:
    """The same collector for the same account, spread evenly over the team."""
    digest = hashlib.sha256(account_id.encode("utf-8")).digest()
    return owners[int.from_bytes(digest[:8], "big") % len(owners)]


def _call_window(
    contact: PlannedContact,
    day: dt.date,
    window: SendWindow,
    company_zone_name: str,
    company_zone: zoneinfo.ZoneInfo,
) -> str:
    """The lawful calling hours on `day` in the company's zone ("10:00-19:00 America/Chicago")."""
    recipient = contact.recipient
    zones = plausible_zones(
        timezone=recipient.timezone,
        country=recipient.country,
        state=recipient.state,
        postal_code=recipient.postal_code,
        phone=recipient.phone,
        fallback=company_zone_name,
    )
    start_of_day = dt.datetime.combine(day, dt.time(), company_zone)
    intervals = lawful_intervals(zones, window, start_of_day, start_of_day + dt.timedelta(days=1))
    if not intervals:
        return "no common lawful hour: check the customer's location"
    return (
        ", ".join(
            f"{low.astimezone(company_zone):%H:%M}-{high.astimezone(company_zone):%H:%M}"
            for low, high in intervals
        )
        + f" {company_zone_name}"
    )
