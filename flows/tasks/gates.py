"""Tasks: the data gates (gate 1 on the raw batch, gate 2 and the volume breaker on the marts)."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.gates import GateOutcome, require_marts_for, run_gate
from flows.lib.volume_breaker import VolumeRule, check_volumes


@task(name="gate-raw", cache_policy=NO_CACHE)  # inputs hold a live connection
def check_raw_batch(
    connection: duckdb.DuckDBPyConnection, settings: Settings, as_of: dt.date, run_id: str
) -> GateOutcome:
    """Gate 1: keys, required fields, enums, dates, amounts, currencies, freshness."""
    outcome = run_gate(
        connection, "gate_raw", as_of, run_id=run_id, freshness_days=settings.gates.freshness_days
    )
    get_run_logger().info(
        "gate_raw passed %s checks in %.2f s", len(outcome.results), outcome.seconds
    )
    return outcome


@task(name="gate-warehouse", cache_policy=NO_CACHE)
def check_marts(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    allow_volume_spike: bool,
    record_volumes: bool,
) -> list[GateOutcome]:
    """Gate 2: reconciliation and consistency of the marts, then the volume circuit breaker."""
    require_marts_for(connection, as_of)
    warehouse = run_gate(
        connection,
        "gate_warehouse",
        as_of,
        run_id=run_id,
        freshness_days=settings.gates.freshness_days,
    )
    rule = VolumeRule(
        factor=settings.gates.volume_factor,
        min_actions=settings.gates.volume_min_actions,
        trailing_runs=settings.gates.volume_trailing_runs,
    )
    volumes = check_volumes(
        connection, as_of, rule, run_id=run_id, override=allow_volume_spike, record=record_volumes
    )
    get_run_logger().info(
        "gate_warehouse and volume breaker passed in %.2f s", warehouse.seconds + volumes.seconds
    )
    return [warehouse, volumes]
