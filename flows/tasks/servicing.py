"""Task: write the day's refund queue and payment discrepancy queue for billing ops."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.servicing import ServicingOutcome, write_servicing_queues


@task(name="servicing-queues", cache_policy=NO_CACHE)  # inputs hold a live connection
def servicing_queues(
    connection: duckdb.DuckDBPyConnection, settings: Settings, as_of: dt.date
) -> ServicingOutcome:
    """The refund and discrepancy queues of the marts built for `as_of`, as CSV files."""
    outcome = write_servicing_queues(connection, settings.path("out"), as_of)
    get_run_logger().info("servicing: %s", outcome)
    return outcome
