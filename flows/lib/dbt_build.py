"""Run the dbt project on the warehouse for one as-of date: one `dbt build` per run.

dbt runs in this process, through its programmatic entry point (dbtRunner): a child process
would pay Python's start-up and dbt's imports (2-3 CPU-seconds) on every build. DuckDB allows
one open database per file and process, and dbt-duckdb keeps its database open after a build,
so the run closes its own connection before calling this and this closes dbt's afterwards
(`_release_dbt_database`). One build at a time per process, and nothing else in the process
reads the environment meanwhile: the build sets the warehouse path, the date and the DuckDB
limits in os.environ for dbt's profile and macros, and takes the secrets out, for its length.
A build killed (or out of memory) takes its run with it; the next run finds the build marked
`building` and says so (marts.build_status). dbt's target/ and logs/ go under
RECOUP_HOME/state/dbt, never into the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.lib.config import SECRET_ENV_VARS
from flows.lib.output_files import owner_only_spill_folder

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"

# dbt keeps global state (flags, adapters, its DuckDB database): one build at a time
_ONE_BUILD = threading.Lock()


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
        "test" if unit_tests_only else "build",
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target),
        "--log-path", str(state_folder / "dbt" / "logs"),
        "--vars", json.dumps(dict(variables or {}) if not unit_tests_only
                             else {**(variables or {}), "as_of_date": as_of.isoformat()}),
        "--no-use-colors",
        "--log-level", "none", "--log-level-file", "debug",  # logs/dbt.log has it all
        "--no-send-anonymous-usage-stats",
    ]  # fmt: skip
    arguments += ["--select" if unit_tests_only else "--exclude", "test_type:unit"]
    if not unit_tests_only and not data_tests:
        arguments.append("test_type:data")
    if select:
        arguments += ["--select", *select]
    if cautious:
        arguments += ["--indirect-selection", "cautious"]
    environment: dict[str, str | None] = {"RECOUP_WAREHOUSE_PATH": str(warehouse)}
    for name, value in (duckdb_config or {}).items():
        environment[f"RECOUP_DUCKDB_{name.upper()}"] = value  # profiles.yml reads them
    owner_only_spill_folder(duckdb_config)
    # the date goes in the environment, read when dbt executes (macros/as_of_date.sql): the
    # vars stay the same from day to day, so dbt reuses its saved manifest (partial parsing)
    environment["RECOUP_AS_OF_DATE"] = None if unit_tests_only else as_of.isoformat()
    for secret in SECRET_ENV_VARS:
        environment[secret] = None  # dbt needs none of them
    results_file = target / "run_results.json"
    results_file.unlink(missing_ok=True)  # a failed build must not leave the last run's results
    succeeded, error = _invoke_dbt(arguments, environment)
    if error is not None or not results_file.is_file():
        raise DbtFailed(f"dbt could not run: {error or 'it wrote no results'}")
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    failures = [
        f"{result['unique_id']}: {result.get('message') or result['status']}"
        for result in results
        if result["status"] in ("error", "fail")
    ]
    if failures or not succeeded:
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


def _invoke_dbt(
    arguments: list[str], environment: Mapping[str, str | None]
) -> tuple[bool, str | None]:
    """One dbt command in this process, with `environment` applied to os.environ for its
    length (None removes a variable) and a umask that keeps target/ and logs/ owner-only, like
    every file recoup writes. Returns (succeeded, error): error when dbt could not run at all
    (a project, profile or connection fault), succeeded False when a node failed."""
    from dbt.cli.main import dbtRunner  # dbt's imports cost a second: only when building

    with _ONE_BUILD, _environment(environment), _umask(0o077):
        try:
            outcome = dbtRunner().invoke(arguments)
        finally:
            _release_dbt_database()
    if outcome.exception is not None and not isinstance(outcome.exception, Exception):
        # dbt catches everything, Ctrl-C and Prefect's cancellation (TerminationSignal)
        # included: they stop the run as they would anywhere else, not as a failed build
        raise outcome.exception
    if outcome.exception is not None:
        return False, f"{type(outcome.exception).__name__}: {outcome.exception}"
    return bool(outcome.success), None


def _release_dbt_database() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the process (a class attribute of
    its connection manager), so the run can open the warehouse again, with its own settings."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
        DuckDBConnectionManager.close_all_connections()


@contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    try:
        _apply_to_environment(changes)
        yield
    finally:
        _apply_to_environment(saved)


def _apply_to_environment(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)
