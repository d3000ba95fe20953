"""Tasks: the day's refund queue and payment discrepancy queue for billing ops, and the day's
skip-trace requests."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.pii import keyring_for
from flows.lib.servicing import ServicingOutcome, write_servicing_queues
from flows.lib.skip_tracing import SkipTraceOutcome, trace_skips


@task(name="servicing-queues", cache_policy=NO_CACHE)  # inputs hold a live connection
def servicing_queues(
    connection: duckdb.DuckDBPyConnection, settings: Settings, as_of: dt.date
) -> ServicingOutcome:
    """The refund and discrepancy queues of the marts built for `as_of`, as CSV files."""
    outcome = write_servicing_queues(connection, settings.path("out"), as_of)
    get_run_logger().info("servicing: %s", outcome)
    return outcome


@task(name="skip-trace", cache_policy=NO_CACHE)
def skip_trace(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    dry_run: bool = False,
    scoped: bool = False,
) -> SkipTraceOutcome:
    """Request skip tracing for the customers the ladder can no longer reach (a dry run only
    counts them)."""
    outcome = trace_skips(
        connection, settings.skip_tracing, settings.path("out"), as_of, run_id=run_id,
        dry_run=dry_run, scoped=scoped, keyring=keyring_for(settings),
    )  # fmt: skip
    get_run_logger().info("skip tracing: %s", outcome)
    return outcome
