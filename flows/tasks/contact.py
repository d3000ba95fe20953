"""Tasks: plan the day's contacts (with the volume circuit breaker), re-check them, and hand
them to each channel: emails to SendGrid or the outbox folder, letters to the printer's
folder, calls and reviews to the work queue. One task per step, never one per contact."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.emailing import send_planned_emails
from flows.lib.gates import GateFailed, GateOutcome
from flows.lib.ledger import ChannelOutcome
from flows.lib.messages import EmailSender
from flows.lib.offers import OfferOutcome, make_offers
from flows.lib.planner import ContactScope, Plan, build_plan, commit_plan
from flows.lib.printing import print_planned_letters
from flows.lib.recheck import cancel_outdated, recover_interrupted
from flows.lib.senders import OutboxSender, SendGridSender
from flows.lib.volume_breaker import VolumeRule, check_volumes
from flows.lib.work_queue import queue_planned_work


@task(name="make-offers", cache_policy=NO_CACHE)  # inputs hold a live connection
def offer_terms(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
    *,
    dry_run: bool = False,
) -> OfferOutcome:
    """The plan and settlement offers the day's reminders and phone queue carry (a dry run
    only counts them)."""
    outcome = make_offers(connection, settings, as_of, run_id, scope=scope, dry_run=dry_run)
    get_run_logger().info("offers: %s", outcome)
    return outcome


@task(name="plan-contacts", cache_policy=NO_CACHE)  # inputs hold a live connection
def plan_contacts(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
    *,
    allow_volume_spike: bool,
    commit: bool,
) -> tuple[Plan, GateOutcome]:
    """Judge today's candidates by the guardrails, pass the counts through the volume
    circuit breaker, then (unless a dry run) write them into the action ledger."""
    plan = build_plan(
        connection, settings.contact, as_of, run_id, scope,
        installment_reminder_days=settings.negotiation.installment_reminder_days,
    )  # fmt: skip
    rule = VolumeRule(
        factor=settings.gates.volume_factor,
        min_actions=settings.gates.volume_min_actions,
        trailing_runs=settings.gates.volume_trailing_runs,
    )
    full_run = scope == ContactScope()
    try:
        breaker = check_volumes(
            connection,
            as_of,
            rule,
            run_id=run_id,
            override=allow_volume_spike,
            planned=plan.planned(),
            record=commit and full_run,  # a scoped run's counts are not a day's volume
        )
    except GateFailed as tripped:
        if commit or tripped.outcome is None:
            raise
        # a dry run shows what the breaker would halt instead of halting before the plan
        get_run_logger().warning("the volume breaker would halt this run: %s", tripped)
        breaker = tripped.outcome
    if commit:
        plan = commit_plan(connection, plan)
    get_run_logger().info(
        "planned contacts for %s: %s; held back: %s",
        as_of,
        plan.planned() or "none",
        sum(plan.held_back().values()),
    )
    return plan, breaker


@task(name="recheck-planned", cache_policy=NO_CACHE)
def recheck_planned(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
) -> dict[str, int]:
    """Settle what a crashed run left sending; cancel what newer facts overtook."""
    recovered = recover_interrupted(connection, run_id)
    cancelled = cancel_outdated(
        connection,
        as_of=as_of,
        today=max(as_of, settings.today()),
        catch_up_days=settings.contact.catch_up_days,
        run_id=run_id,
        scope=scope,
    )
    logger = get_run_logger()
    if any(recovered.values()):
        logger.warning("contacts left sending by an earlier run: %s", recovered)
    if cancelled:
        logger.info("planned contacts cancelled before sending: %s", cancelled)
    return {
        **{f"recovered as {status}": n for status, n in recovered.items() if n},
        **{f"cancelled: {reason}": n for reason, n in cancelled.items()},
    }


def email_sender(settings: Settings, as_of: dt.date) -> EmailSender:
    """SendGrid when SENDGRID_API_KEY is set, else .eml files in the outbox folder."""
    if settings.sendgrid_api_key is not None:
        return SendGridSender.from_settings(settings)
    return OutboxSender.from_settings(settings, settings.path("outbox") / as_of.isoformat())


@task(name="send-emails", cache_policy=NO_CACHE)
def send_emails(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
) -> ChannelOutcome:
    """Send the planned emails, request by request; keys already sent are never sent again."""
    sender = email_sender(settings, as_of)
    outcome = send_planned_emails(
        connection,
        settings,
        sender,
        as_of=as_of,
        run_id=run_id,
        now=dt.datetime.now(dt.UTC),
        scope=scope,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    get_run_logger().info("emails via %s: %s", sender.provider, outcome.counts or "none")
    return outcome


@task(name="print-letters", cache_policy=NO_CACHE)
def print_letters(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
) -> ChannelOutcome:
    """Render the planned letters to PDF and write the print manifest."""
    outcome = print_planned_letters(
        connection, settings, as_of=as_of, run_id=run_id, now=dt.datetime.now(dt.UTC), scope=scope
    )
    get_run_logger().info("letters: %s", outcome.counts or "none")
    return outcome


@task(name="queue-work", cache_policy=NO_CACHE)
def queue_work(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
) -> ChannelOutcome:
    """Write the planned calls and manager reviews into the work queue."""
    outcome = queue_planned_work(
        connection, settings, as_of=as_of, run_id=run_id, now=dt.datetime.now(dt.UTC), scope=scope
    )
    get_run_logger().info("work queue: %s", outcome.counts or "none")
    return outcome
