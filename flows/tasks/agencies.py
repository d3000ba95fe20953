"""Task: recall from and place with collection agencies, and write their files."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.agency_placement import PlacementOutcome, place_and_recall
from flows.lib.config import Settings
from flows.lib.planner import ContactScope


@task(name="place-with-agencies", cache_policy=NO_CACHE)  # inputs hold a live connection
def place_with_agencies(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
) -> PlacementOutcome:
    """Recall what must come back from the agencies, then place the accounts that reached the
    agency stage; one placement file and one recall file per agency per day."""
    outcome = place_and_recall(
        connection, settings, as_of=as_of, run_id=run_id, now=dt.datetime.now(dt.UTC), scope=scope
    )
    get_run_logger().info("agencies: %s", outcome)
    return outcome
