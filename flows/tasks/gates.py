"""Tasks: the data gates (gate 1 on the raw batch, gate 2 on the marts)."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.gates import GateOutcome, require_marts_for, run_gate


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
) -> GateOutcome:
    """Gate 2: reconciliation and consistency of the marts. (The volume circuit breaker
    judges the contact plan: see flows/tasks/contact.py.)"""
    require_marts_for(connection, as_of)
    outcome = run_gate(
        connection,
        "gate_warehouse",
        as_of,
        run_id=run_id,
        freshness_days=settings.gates.freshness_days,
    )
    get_run_logger().info("gate_warehouse passed in %.2f s", outcome.seconds)
    return outcome
