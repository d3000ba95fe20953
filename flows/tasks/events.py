"""Task: import the SendGrid events the webhook spooled (bounces and opt-outs become flags)."""

from __future__ import annotations

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.email_events import ImportOutcome, import_spool, incoming_folder
from flows.lib.opt_outs import import_opt_outs, opt_out_folder


@task(name="import-email-events", cache_policy=NO_CACHE)  # inputs hold a live connection
def import_email_events(connection: duckdb.DuckDBPyConnection, settings: Settings) -> ImportOutcome:
    """Load every spooled Event Webhook post, oldest first, and every opt-out made on
    recoup's opt-out page, before the day's plan is made."""
    outcome = import_spool(
        connection, incoming_folder(settings), public_key=settings.email.event_public_key
    )
    opted_out = import_opt_outs(connection, opt_out_folder(settings))
    if opted_out.files_imported or opted_out.files_rejected:
        get_run_logger().info(
            "opt-outs: %s addresses suppressed, %s requests of unknown emails set aside",
            opted_out.addresses_suppressed,
            opted_out.files_rejected,
        )
    if outcome.files_imported or outcome.files_rejected:
        get_run_logger().info(
            "email events: %s new, %s duplicates, %s addresses suppressed, %s sends confirmed, "
            "%s files rejected",
            outcome.events_new,
            outcome.duplicates,
            outcome.suppressions_added,
            outcome.actions_confirmed,
            outcome.files_rejected,
        )
    return outcome
