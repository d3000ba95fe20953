"""Task: import the SendGrid events the webhook spooled (bounces and opt-outs become flags)."""

from __future__ import annotations

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.email_events import ImportOutcome, import_spool, incoming_folder


@task(name="import-email-events", cache_policy=NO_CACHE)  # inputs hold a live connection
def import_email_events(connection: duckdb.DuckDBPyConnection, settings: Settings) -> ImportOutcome:
    """Load every spooled Event Webhook post, oldest first, before the day's plan is made."""
    outcome = import_spool(
        connection, incoming_folder(settings), public_key=settings.email.event_public_key
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
