"""The email step: planned reminders → rendered messages → the sender, one request at a time.

For every planned email of the run (after the re-check has cancelled what the newest facts
overtook):

1. Every template must exist and render before anything is sent: a missing file or variable
   stops the step with nothing sent (`TemplatesNotReady`).
2. The send time: now when now is inside the window (08:00-21:00 less the margin) in every zone
   the customer may be in, else the first instant that is, as a SendGrid `send_at` at most 72
   hours ahead; with no such instant the email is deferred (`no_lawful_send_time`).
3. Requests of at most `email.batch_size` messages, each address at most once per request.
   Each request is claimed in the ledger (`sending`, committed) before the provider is called,
   and its results are recorded right after: a crash in between leaves `sending`, which the
   next run settles as `maybe_sent` and never sends again on its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import duckdb
import jinja2

from flows.lib import faults
from flows.lib.config import Settings
from flows.lib.contact_data import PlannedContact, due_contacts, validation_end
from flows.lib.ledger import ChannelOutcome, Outcome, claim, record_outcomes
from flows.lib.messages import EmailMessage, EmailSender, SendAborted, SendResult
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from flows.lib.send_window import SendWindow, next_send_time, plausible_zones
from flows.lib.templates import missing_templates, render_email

logger = logging.getLogger(__name__)
OUTBOX_REQUEST_SIZE = 500  # the outbox folder has no request limit; keep ledger commits few
# a template (or its data) that cannot render: Jinja's errors, and the money and date
# filters' refusals of a missing value
RENDER_ERRORS = (jinja2.TemplateError, TypeError, ValueError)
_T = TypeVar("_T")
SANDBOXED = "sandbox_mode: validated by SendGrid, not sent"


class TemplatesNotReady(RuntimeError):
    """A template is missing or does not render: nothing was sent."""


def planned_keys(
    connection: duckdb.DuckDBPyConnection,
    channel: str,
    as_of: dt.date,
    scope: ContactScope = ALL_ACCOUNTS,
) -> list[str]:
    """The run's planned actions of one channel (any plan dated up to the run's date)."""
    scope_sql, parameters = scope.sql("ledger")
    rows = connection.execute(
        f"""
        select action_key from ops.action_ledger as ledger
        where
            ledger.status = 'planned'
            and ledger.channel = $channel
            and ledger.as_of_date <= $as_of
            and {scope_sql}
        order by ledger.action_key
        """,
        {"channel": channel, "as_of": as_of, **parameters},
    ).fetchall()
    return [key for (key,) in rows]


def send_window(settings: Settings) -> SendWindow:
    return SendWindow(
        start_hour=settings.contact.window_start_hour,
        end_hour=settings.contact.window_end_hour,
        margin=dt.timedelta(minutes=settings.contact.window_margin_minutes),
    )


def send_planned_emails(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    sender: EmailSender,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    scope: ContactScope = ALL_ACCOUNTS,
    request_size: int | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> ChannelOutcome:
    """Send the run's planned emails; what became of them, per status and reason.

    `now` is when the step starts; `clock` (default: `now` for every request) gives the time
    each request is sent, so the send window is judged when the request leaves, not when the
    step began (rate-limit waits and retries can take a while)."""
    outcome = ChannelOutcome("email", provider=sender.provider)
    keys = planned_keys(connection, "email", as_of, scope)
    if not keys:
        return outcome
    missing = missing_templates()
    if missing:
        raise TemplatesNotReady(
            "contact templates are missing, so no email was sent: " + ", ".join(missing)
        )
    company_zone = zoneinfo.ZoneInfo(settings.company.timezone)
    sent_on = max(now.astimezone(company_zone).date(), as_of)
    contacts = due_contacts(
        connection, settings, keys, as_of, run_id=run_id, outcome=outcome, sent_on=sent_on
    )
    _preflight(contacts)
    window = send_window(settings)
    addressed: list[tuple[PlannedContact, tuple[str, ...]]] = []
    unaddressed: list[Outcome] = []
    for contact in contacts:
        recipient = contact.recipient
        if not recipient.email:
            unaddressed.append(Outcome(contact.action_key, "suppressed", "no_email_address"))
            continue
        zones = plausible_zones(
            timezone=recipient.timezone,
            country=recipient.country,
            state=recipient.state,
            postal_code=recipient.postal_code,
            phone=recipient.phone,
            fallback=settings.company.timezone,
        )
        addressed.append((contact, zones))
    _record(connection, outcome, unaddressed, run_id)

    size = request_size or (
        settings.email.batch_size if sender.provider.startswith("sendgrid") else OUTBOX_REQUEST_SIZE
    )
    handed = 0  # messages handed to the sender so far (the test-only fault point send:<n>)
    for batch in request_batches(addressed, size):
        current = clock() if clock is not None else now
        ready, held_back = [], []
        for contact, zones in batch:
            send_at = next_send_time(current, zones, window)
            if send_at is None:
                held_back.append(Outcome(contact.action_key, "deferred", "no_lawful_send_time"))
                continue
            released_on = send_at.astimezone(company_zone).date()
            if released_on > sent_on and contact.context.validation is not None:
                contact = _validation_from(connection, contact, released_on)
            ready.append((contact, None if send_at == current else send_at))
        messages, failures = _render(ready)
        _record(connection, outcome, held_back + failures, run_id)
        claimed = set(
            claim(connection, [message.outbox_id for message, _ in messages], run_id=run_id)
        )
        messages = [
            (message, contact) for message, contact in messages if message.outbox_id in claimed
        ]
        if not messages:
            continue
        aborted: SendAborted | None = None
        try:
            results = sender.send([message for message, _ in messages])
        except SendAborted as error:
            aborted = error
            results = error.results or [
                SendResult(message.outbox_id, "failed", sender.provider, 1, error=str(error))
                for message, _ in messages
            ]
        handed += len(messages)
        faults.after_handed(handed)
        recorded = _outcomes(results, messages, sent_at=current)
        record_outcomes(connection, recorded, run_id=run_id)
        for each in recorded:
            outcome.add(each.status, each.reason if each.status != "sent" else None)
            outcome.scheduled += each.status == "sent" and each.send_at is not None
            if each.output_path and not outcome.files:
                outcome.files = [str(Path(each.output_path).parent)]
        if aborted is not None:
            raise aborted
        logger.info("email request of %s messages: %s", len(messages), _summary(recorded))
    return outcome


def _record(
    connection: duckdb.DuckDBPyConnection,
    outcome: ChannelOutcome,
    outcomes: list[Outcome],
    run_id: str,
) -> None:
    record_outcomes(connection, outcomes, run_id=run_id)
    for each in outcomes:
        outcome.add(each.status, each.reason)


def _validation_from(
    connection: duckdb.DuckDBPyConnection, contact: PlannedContact, released_on: dt.date
) -> PlannedContact:
    """The validation period counts from the day the email is released (a send scheduled
    into tomorrow's window is provided tomorrow), and the pay-by date never precedes it."""
    end = validation_end(connection, released_on)
    validation = contact.context.validation
    if end is None or validation is None or end <= validation.validation_end_date:
        return contact
    context = dataclasses.replace(
        contact.context,
        validation=dataclasses.replace(validation, validation_end_date=end),
        pay_by_date=max(contact.context.pay_by_date, end),
    )
    return dataclasses.replace(contact, context=context)


def request_batches(
    items: Sequence[tuple[PlannedContact, _T]], size: int
) -> Iterator[list[tuple[PlannedContact, _T]]]:
    """Requests of at most `size` messages in which each address appears once: the k-th
    message to an address goes into the k-th round of requests."""
    rounds: list[list[tuple[PlannedContact, _T]]] = []
    seen: dict[str, int] = {}
    for item in items:
        address = (item[0].recipient.email or "").strip().lower()
        position = seen.get(address, 0)
        seen[address] = position + 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(item)
    for each_round in rounds:
        for start in range(0, len(each_round), size):
            yield each_round[start : start + size]


def _preflight(contacts: Sequence[PlannedContact]) -> None:
    """Render one contact of every (template, language) before anything is sent."""
    samples: dict[tuple[str, str], PlannedContact] = {}
    for contact in contacts:
        samples.setdefault((contact.template, contact.context.language), contact)
    for (template, language), contact in sorted(samples.items()):
        try:
            render_email(contact.context)
        except RENDER_ERRORS as error:
            raise TemplatesNotReady(
                f"template {template} ({language}) does not render, so no email was sent: "
                f"{error.__class__.__name__}: {error}"
            ) from None


def _render(
    batch: Sequence[tuple[PlannedContact, dt.datetime | None]],
) -> tuple[list[tuple[EmailMessage, PlannedContact]], list[Outcome]]:
    messages, failures = [], []
    for contact, send_at in batch:
        try:
            rendered = render_email(contact.context)
        except RENDER_ERRORS as error:
            failures.append(
                Outcome(
                    contact.action_key,
                    "failed",
                    f"template error: {error.__class__.__name__}: {error}",
                )
            )
            continue
        message = EmailMessage(
            outbox_id=contact.action_key,
            to_address=contact.recipient.email or "",
            to_name=contact.recipient.name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            send_at=send_at,
            opt_out_link=contact.context.opt_out_link,
        )
        messages.append((message, contact))
    return messages, failures


def _outcomes(
    results: Sequence[SendResult],
    messages: Sequence[tuple[EmailMessage, PlannedContact]],
    *,
    sent_at: dt.datetime,
) -> list[Outcome]:
    by_key = {message.outbox_id: (message, contact) for message, contact in messages}
    outcomes = []
    for result in results:
        message, contact = by_key[result.outbox_id]
        sandboxed = result.provider == "sendgrid-sandbox" and result.status == "sent"
        outcomes.append(
            Outcome(
                action_key=result.outbox_id,
                # sandbox mode: SendGrid validated it and sent nothing, so a real run still must
                status="cancelled" if sandboxed else result.status,
                reason="sandbox_mode: validated by SendGrid, not sent"
                if sandboxed
                else result.error,
                attempts=result.attempts,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
                sent_at=sent_at if result.status == "sent" and not sandboxed else None,
                send_at=message.send_at,
                recipient=message.to_address,
                language=contact.context.language,
                output_path=result.output_path,
            )
        )
    return outcomes


def _summary(outcomes: Sequence[Outcome]) -> str:
    counts: dict[str, int] = {}
    for each in outcomes:
        counts[each.status] = counts.get(each.status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
