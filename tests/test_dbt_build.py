"""The dbt invocation of a build: data tests on by default, off with gates.dbt_data_tests."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pytest

from flows.lib import dbt_build
from flows.lib.warehouse import open_warehouse

pytestmark = pytest.mark.unit


def invocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options) -> list[str]:
    seen: list[list[str]] = []

    def fake_invoke(arguments, _environment):
        seen.append(arguments)
        results = tmp_path / "state" / "dbt" / "target" / "run_results.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({"results": []}), encoding="utf-8")
        return True, None

    monkeypatch.setattr(dbt_build, "_invoke_dbt", fake_invoke)
    dbt_build.build_warehouse(tmp_path / "w.duckdb", tmp_path / "state", dt.date(2026, 3, 2),
                              **options)  # fmt: skip
    [arguments] = seen
    return arguments


def test_a_build_runs_the_data_tests_by_default(tmp_path, monkeypatch) -> None:
    arguments = invocation(tmp_path, monkeypatch)
    assert arguments[0] == "build"
    assert arguments[-2:] == ["--exclude", "test_type:unit"]


def test_without_data_tests_the_build_runs_models_and_seeds_only(tmp_path, monkeypatch) -> None:
    arguments = invocation(tmp_path, monkeypatch, data_tests=False)
    assert arguments[-3:] == ["--exclude", "test_type:unit", "test_type:data"]


def test_the_unit_tests_ignore_the_data_test_switch(tmp_path, monkeypatch) -> None:
    arguments = invocation(tmp_path, monkeypatch, unit_tests_only=True, data_tests=False)
    assert arguments[0] == "test" and arguments[-2:] == ["--select", "test_type:unit"]


@pytest.mark.integration
def test_the_duckdb_limits_reach_dbts_connection(tmp_path) -> None:
    """dbt's profile takes the memory limit and spill folder recoup passes: a limit DuckDB
    cannot read fails the build, naming the setting; a readable one builds."""
    warehouse, state = tmp_path / "w.duckdb", tmp_path / "state"
    spill = str(tmp_path / "spill")
    with pytest.raises(dbt_build.DbtFailed, match=r"(?i)memory"):
        dbt_build.build_warehouse(warehouse, state, dt.date(2026, 3, 2), select=("manual_holds",),
                                  duckdb_config={"memory_limit": "lots", "temp_directory": spill})  # fmt: skip
    outcome = dbt_build.build_warehouse(
        warehouse, state, dt.date(2026, 3, 2), select=("manual_holds",),
        duckdb_config={"memory_limit": "256MB", "temp_directory": spill},
    )  # fmt: skip
    assert outcome.nodes >= 1
    assert (Path(spill).stat().st_mode & 0o777) == 0o700  # made owner-only before DuckDB


@pytest.mark.integration
def test_an_in_process_build_gives_back_the_file_and_the_environment(tmp_path, monkeypatch) -> None:
    """dbt runs in recoup's process: afterwards the warehouse opens with other settings (dbt's
    database is closed), and the environment and umask are as they were, secrets included."""
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.delenv("RECOUP_WAREHOUSE_PATH", raising=False)
    warehouse = tmp_path / "w.duckdb"
    umask = os.umask(0o022)
    try:
        dbt_build.build_warehouse(warehouse, tmp_path / "state", dt.date(2026, 3, 2),
                                  select=("manual_holds",))  # fmt: skip
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(umask)
    assert os.environ["SENDGRID_API_KEY"] == "SG.test-key"
    assert "RECOUP_WAREHOUSE_PATH" not in os.environ and "RECOUP_AS_OF_DATE" not in os.environ
    with duckdb.connect(str(warehouse), config={"memory_limit": "512MB"}) as connection:
        [(tables,)] = connection.execute(
            "select count(*) from information_schema.tables where table_name = 'manual_holds'"
        ).fetchall()
    assert tables == 1
    logs = tmp_path / "state" / "dbt" / "logs" / "dbt.log"
    assert logs.is_file() and (logs.stat().st_mode & 0o077) == 0  # owner-only, like the rest


def test_a_dbt_that_cannot_start_is_a_clear_failure(tmp_path, monkeypatch) -> None:
    """A warehouse path DuckDB cannot open (its folder is a file) stops dbt before any node:
    the error says dbt could not run and why."""
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    with pytest.raises(dbt_build.DbtFailed, match="dbt could not run"):
        dbt_build.build_warehouse(tmp_path / "not-a-folder" / "w.duckdb", tmp_path / "state",
                                  dt.date(2026, 3, 2), select=("manual_holds",))  # fmt: skip


def test_ctrl_c_or_a_cancellation_during_a_build_stops_the_run_not_fails_the_build(
    tmp_path, monkeypatch
) -> None:
    """dbt catches every exception it meets, KeyboardInterrupt and Prefect's TerminationSignal
    too, and hands it back: the build raises it again (the run ends as interrupted or
    cancelled, not as a failed build), with the environment given back."""
    from dbt.cli.main import dbtRunner, dbtRunnerResult
    from prefect.exceptions import TerminationSignal

    monkeypatch.delenv("RECOUP_WAREHOUSE_PATH", raising=False)
    for interruption in (KeyboardInterrupt(), TerminationSignal(15)):
        monkeypatch.setattr(
            dbtRunner,
            "invoke",
            lambda _self, _arguments, error=interruption: dbtRunnerResult(
                success=False, exception=error
            ),
        )
        with pytest.raises(type(interruption)):
            dbt_build.build_warehouse(tmp_path / "w.duckdb", tmp_path / "state",
                                      dt.date(2026, 3, 2))  # fmt: skip
        assert "RECOUP_WAREHOUSE_PATH" not in os.environ


def test_the_variables_a_build_sets_are_not_taken_for_settings(tmp_path, monkeypatch) -> None:
    """While dbt builds, the environment holds RECOUP_WAREHOUSE_PATH, RECOUP_AS_OF_DATE and
    RECOUP_DUCKDB_*: settings loaded meanwhile do not refuse them as unknown settings."""
    from flows.lib.config import load_settings

    monkeypatch.setenv("RECOUP_HOME", str(tmp_path))
    for name, value in {
        "RECOUP_WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
        "RECOUP_AS_OF_DATE": "2026-03-02",
        "RECOUP_DUCKDB_MEMORY_LIMIT": "1GB",
        "RECOUP_DUCKDB_TEMP_DIRECTORY": str(tmp_path / "spill"),
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().duckdb.memory_limit == "3GB"  # the setting is duckdb.memory_limit


@pytest.mark.integration
def test_a_build_that_spills_to_disk_keeps_its_spill_folder(tmp_path, monkeypatch) -> None:
    """dbt must give DuckDB the memory limit and spill folder once, when it opens the
    database. Set again on each later cursor (the profile's `settings:`), DuckDB refuses once
    a query has spilled: "Cannot switch temporary directory after the current one has been
    used", which stopped the first 1M-account build. Here dbt's first cursor spills for certain
    (a temporary table five times the limit), and the build that follows, with a cursor per
    node, must go through."""
    from dbt.adapters.duckdb.environments import Environment

    prepare_cursor = Environment.initialize_cursor
    cursors: list[object] = []
    spilled: list[tuple[str, str]] = []

    def spill_on_the_first_cursor(_cls, creds, cursor, *more):  # type: ignore[no-untyped-def]
        cursor = prepare_cursor(creds, cursor, *more)
        cursors.append(cursor)
        if len(cursors) == 1:
            cursor.execute("create temporary table spill as select range as n, random() as r"
                           " from range(20000000)")  # fmt: skip
            spilled.extend(cursor.execute("select path, current_setting('memory_limit')"
                                          " from duckdb_temporary_files()").fetchall())  # fmt: skip
            cursor.execute("drop table spill")
        return cursor

    monkeypatch.setattr(Environment, "initialize_cursor", classmethod(spill_on_the_first_cursor))
    spill = tmp_path / "spill"
    open_warehouse(tmp_path / "w.duckdb").close()
    outcome = dbt_build.build_warehouse(
        tmp_path / "w.duckdb", tmp_path / "state", dt.date(2026, 11, 23), data_tests=False,
        select=("+int_account_balances",),
        duckdb_config={"memory_limit": "64MB", "temp_directory": str(spill)},
    )  # fmt: skip
    assert outcome.nodes >= 8 and len(cursors) > outcome.nodes  # a cursor per node, at least
    assert spilled, "the temporary table did not spill: the test proves nothing"
    assert all(Path(path).parent == spill for path, _limit in spilled)  # recoup's folder
    assert {limit for _path, limit in spilled} == {"61.0 MiB"}  # 64MB, as DuckDB shows it
