"""The dbt invocation of a build: data tests on by default, off with gates.dbt_data_tests."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pytest

from flows.lib import dbt_build

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
