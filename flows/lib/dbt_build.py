"""Run the dbt project on the warehouse for one as-of date: one `dbt build` per run.

dbt runs in a child process: DuckDB allows one writer per file and dbt-duckdb keeps its
connection open for the life of its process, so in-process dbt would block the run's own
connection afterwards. The run closes its connection before calling this. dbt's target/ and
logs/ go under RECOUP_HOME/state/dbt, never into the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flows.lib.output_files import owner_only_folder

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


class DbtFailed(RuntimeError):
    """A model or test failed; the message names each failing node and its error.
    `failed_nodes` holds their unique ids; `rebuilt_models` and `not_rebuilt_models` the models
    this build did and did not finish (None when dbt stopped before writing its results)."""

    def __init__(
        self,
        message: str,
        *,
        failed_nodes: tuple[str, ...] = (),
        rebuilt_models: tuple[str, ...] | None = None,
        not_rebuilt_models: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message)
        self.failed_nodes = failed_nodes
        self.rebuilt_models = rebuilt_models
        self.not_rebuilt_models = not_rebuilt_models


@dataclass(frozen=True)
class DbtOutcome:
    nodes: int
    seconds: float


def build_warehouse(
    warehouse: Path,
    state_folder: Path,
    as_of: dt.date,
    *,
    unit_tests_only: bool = False,
    variables: Mapping[str, object] | None = None,
    data_tests: bool = True,
    select: tuple[str, ...] = (),
    cautious: bool = False,
    duckdb_config: Mapping[str, str] | None = None,
) -> DbtOutcome:
    """`dbt build` for `as_of`: staging, intermediate, marts and their data tests; or, with
    `unit_tests_only`, `dbt test` of the unit tests alone (fixed inputs, no warehouse data).
    `variables` are further dbt vars (settings such as the refund hold); the project's
    defaults hold for the rest. Without `data_tests`, the build runs the models and seeds
    only (gates.dbt_data_tests: false). `select` builds only those nodes (dbt selectors);
    `cautious` leaves out the tests of models outside the selection. `duckdb_config` holds
    the DuckDB limits (Settings.duckdb_config: memory_limit, temp_directory) that dbt's
    connection takes through its profile."""
    target = state_folder / "dbt" / "target"
    arguments = [
        str(Path(sys.executable).parent / "dbt"),
        "test" if unit_tests_only else "build",
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target),
        "--log-path", str(state_folder / "dbt" / "logs"),
        "--vars", json.dumps(dict(variables or {}) if not unit_tests_only
                             else {**(variables or {}), "as_of_date": as_of.isoformat()}),
        "--no-use-colors",
    ]  # fmt: skip
    arguments += ["--select" if unit_tests_only else "--exclude", "test_type:unit"]
    if not unit_tests_only and not data_tests:
        arguments.append("test_type:data")
    if select:
        arguments += ["--select", *select]
    if cautious:
        arguments += ["--indirect-selection", "cautious"]
    environment = {
        **os.environ,
        "RECOUP_WAREHOUSE_PATH": str(warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for name, value in (duckdb_config or {}).items():
        environment[f"RECOUP_DUCKDB_{name.upper()}"] = value  # profiles.yml reads them
    if duckdb_config and duckdb_config.get("temp_directory"):
        # owner-only before DuckDB makes it: spilled pages hold the warehouse's rows
        owner_only_folder(Path(duckdb_config["temp_directory"]))
    # the date goes in the environment, read when dbt executes (macros/as_of_date.sql): the
    # vars stay the same from day to day, so dbt reuses its saved manifest (partial parsing)
    environment.pop("RECOUP_AS_OF_DATE", None)
    for secret in ("SENDGRID_API_KEY", "RECOUP_PII_KEY", "RECOUP_PII_PREVIOUS_KEYS"):
        environment.pop(secret, None)  # dbt needs none of them
    if not unit_tests_only:
        environment["RECOUP_AS_OF_DATE"] = as_of.isoformat()
    results_file = target / "run_results.json"
    results_file.unlink(missing_ok=True)  # a killed dbt must not leave the last run's results
    completed = subprocess.run(
        arguments, env=environment, capture_output=True, text=True, check=False, umask=0o077
    )  # its target/ and logs/ owner-only, like every file recoup writes
    if completed.returncode not in (0, 1) or not results_file.is_file():
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise DbtFailed(f"dbt could not run (exit code {completed.returncode}):\n{tail}")
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    failures = [
        f"{result['unique_id']}: {result.get('message') or result['status']}"
        for result in results
        if result["status"] in ("error", "fail")
    ]
    if failures or completed.returncode != 0:
        models = [result for result in results if result["unique_id"].startswith("model.")]
        raise DbtFailed(
            "dbt build failed:\n  " + "\n  ".join(failures or ["see state/dbt/logs"]),
            failed_nodes=tuple(
                result["unique_id"] for result in results if result["status"] in ("error", "fail")
            ),
            rebuilt_models=tuple(
                result["unique_id"] for result in models if result["status"] == "success"
            ),
            not_rebuilt_models=tuple(
                result["unique_id"] for result in models if result["status"] != "success"
            ),
        )
    seconds = sum(result.get("execution_time") or 0.0 for result in results)
    return DbtOutcome(nodes=len(results), seconds=seconds)
