"""Task: build the dbt marts for the run's as-of date (one dbt invocation per run)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import get_run_logger, task

from flows.lib.dbt_build import DbtOutcome, build_warehouse


@task(name="build-marts")
def build_marts(
    warehouse: Path,
    state_folder: Path,
    as_of: dt.date,
    variables: dict[str, object] | None = None,
    data_tests: bool = True,
    duckdb_config: dict[str, str] | None = None,
) -> DbtOutcome:
    """Balances, aging, holds and stages for `as_of`, with the marts' data tests (unless
    `data_tests` is off: gates.dbt_data_tests)."""
    outcome = build_warehouse(
        warehouse,
        state_folder,
        as_of,
        variables=variables,
        data_tests=data_tests,
        duckdb_config=duckdb_config,
    )
    get_run_logger().info("dbt built %s nodes for %s", outcome.nodes, as_of)
    return outcome
