"""Warehouse integrity: a build that fails midway is marked with its run id, nothing reads the
half-built marts, and the next good build leaves every mart on one date again."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import duckdb
import pytest

from flows.lib.contact_data import MartsNotForDate, require_build_for
from flows.lib.dbt_build import DbtFailed
from flows.lib.gates import (
    GateFailed,
    fail_build,
    finish_build,
    record_build,
    require_marts_for,
    start_build,
    unfinished_build,
)
from flows.lib.runs import ensure_runs_table
from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row, write_batch

D1 = dt.date(2026, 11, 3)  # a Tuesday
D2 = D1 + dt.timedelta(days=14)


def build_status(connection: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """The one row of marts.build_status, what an analyst reads."""
    cursor = connection.execute("select * from marts.build_status")
    names = [column[0] for column in cursor.description]
    [values] = cursor.fetchall()
    return dict(zip(names, values, strict=True))


def latest_dates(connection: duckdb.DuckDBPyConnection) -> dict[str, dt.date]:
    """The latest as_of_date of every mart table that has one and holds rows."""
    tables = connection.execute(
        """
        select tables.table_name
        from information_schema.tables as tables
        inner join information_schema.columns as columns
            on tables.table_schema = columns.table_schema
            and tables.table_name = columns.table_name
        where
            tables.table_schema = 'marts'
            and tables.table_type = 'BASE TABLE'
            and columns.column_name = 'as_of_date'
        order by 1
        """
    ).fetchall()
    dates = {
        name: connection.execute(f"select max(as_of_date) from marts.{name}").fetchall()[0][0]
        for (name,) in tables
    }
    return {name: day for name, day in dates.items() if day is not None}


def refusals(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[str]:
    """What gate 2 and the steps that read the marts (agencies, servicing, skip tracing,
    contacts) say when asked to work on `as_of`; empty when they would go ahead."""
    said = []
    for check in (
        lambda: require_marts_for(connection, as_of),
        lambda: require_build_for(connection, as_of, would="it would", nothing="nothing done"),
    ):
        try:
            check()
        except (GateFailed, MartsNotForDate) as refused:
            said.append(str(refused))
    return said


@pytest.mark.integration
def test_a_build_that_fails_midway_is_marked_refused_and_cleared_by_the_next_build(
    prefect_api, recoup_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main
    from flows.daily_dunning import daily_dunning

    # no SSN or date of birth: nothing here needs them, and the loader encrypts them
    customers = [row("customers", customer_id="CA", email="ca@example.com", ssn="",
                     date_of_birth="")]  # fmt: skip
    accounts = [row("accounts", account_id="A", customer_id="CA")]
    invoices = [row("invoices", invoice_id="IA", account_id="A", issue_date="2026-10-01",
                    due_date=(D1 - dt.timedelta(days=1)).isoformat())]  # fmt: skip
    base_batch(recoup_home / "inbox" / "01", customers=customers, accounts=accounts,
               invoices=invoices)  # fmt: skip
    # the runs load and build only (the gates and contact steps have their own tests)
    daily_dunning(as_of=D1, only=["ingest", "build"])  # the previous consistent state
    path = recoup_home / "warehouse" / "recoup.duckdb"
    connection = open_warehouse(path)
    assert build_status(connection)["is_consistent"] is True
    assert set(latest_dates(connection).values()) == {D1}
    # an analyst adds a column to a history mart: the next build fails at that model, after
    # the models before it were rebuilt for D2
    connection.execute("alter table marts.fct_account_aging add column analyst_note varchar")
    connection.close()
    write_batch(recoup_home / "inbox" / "02", payments=[row(
        "payments", payment_id="P1", account_id="A", amount="10.00",
        received_date=(D2 - dt.timedelta(days=1)).isoformat(),
    )])  # fmt: skip

    with pytest.raises(DbtFailed, match=f"for {D2}\\) failed at fct_account_aging: the marts "
                       f"may mix {D2} and {D1}") as failure:  # fmt: skip
        daily_dunning(as_of=D2, only=["ingest", "build"])

    connection = open_warehouse(path, read_only=True)
    [(run_id, failed_step, error)] = connection.execute(
        "select run_id, failed_step, error from ops.runs where status = 'failed'"
    ).fetchall()
    [attempt] = connection.execute(
        "select run_id, as_of_date, status, previous_as_of_date, failed_nodes, rebuilt_models, "
        "not_rebuilt_models from ops.build_attempts where as_of_date = ?",
        [D2],
    ).fetchall()
    status = build_status(connection)
    dates = latest_dates(connection)
    refused = refusals(connection, D1) + refusals(connection, D2)
    ledger = connection.execute("select count(*) from ops.action_ledger").fetchall()
    connection.close()
    # the failure is recorded with the run id, in the run record and in the build attempts
    assert failed_step == "build"
    assert error.startswith(f"DbtFailed: the last build (run {run_id[:8]}, for {D2}) failed")
    assert attempt[:5] == (run_id, D2, "failed", D1, ["fct_account_aging"])
    assert "fct_account_stage" in attempt[5] and "fct_account_aging" in attempt[6]
    assert failure.value.failed_nodes == ("model.recoup.fct_account_aging",)
    # the marts do mix the two dates, and what analysts read says so, naming the run
    assert dates["fct_account_stage"] == D2 and dates["fct_account_aging"] == D1
    assert status["is_consistent"] is False and status["failed_run_id"] == run_id
    assert status["built_as_of_date"] == D1 and status["failed_as_of_date"] == D2
    assert f"run {run_id[:8]}" in status["message"]
    assert f"may mix {D2} and {D1}" in status["message"]
    assert status["incomplete_dates"] == [D2]
    # gate 2 and every step that reads the marts refuse, for the new date and the old one
    assert len(refused) == 4 and all(f"run {run_id[:8]}" in said for said in refused)
    assert ledger == [(0,)]  # nothing was planned or sent
    main(["status"])
    said = " ".join(capsys.readouterr().out.split())
    assert f"Marts in doubt: the last build (run {run_id[:8]}, for {D2}) failed" in said

    # the column is dropped again; the resumed run starts at the build and builds D2 whole
    connection = open_warehouse(path)
    connection.execute("alter table marts.fct_account_aging drop column analyst_note")
    connection.close()
    resumed = daily_dunning(as_of=D2, resume=True)
    steps = {step.step: step.status for step in resumed.record.steps}
    assert (steps["ingest"], steps["build"]) == ("skipped", "done")

    connection = open_warehouse(path, read_only=True)
    status = build_status(connection)
    dates = latest_dates(connection)
    attempts = connection.execute(
        "select run_id, status from ops.build_attempts order by started_at"
    ).fetchall()
    refused = refusals(connection, D2)
    connection.close()
    assert status["is_consistent"] is True and status["failed_run_id"] is None
    assert status["status"] == "consistent" and status["incomplete_dates"] == []
    assert status["message"] == f"every mart was built for {D2}"
    assert set(dates.values()) == {D2} and "fct_account_aging" in dates  # one date everywhere
    assert [status for _, status in attempts] == ["succeeded", "failed", "succeeded"]
    assert attempts[2][0] == resumed.run_id
    assert refused == []  # gate 2 and the steps after it go ahead on D2


def test_a_build_that_never_finished_stays_in_doubt_until_a_build_succeeds(warehouse) -> None:
    """A run killed while dbt ran leaves its attempt `building`: the same as a failure."""
    record_build(warehouse, D1)
    start_build(warehouse, "dead0000-run", D2)  # and the process is killed

    attempt = unfinished_build(warehouse)
    assert attempt is not None and (attempt.run_id, attempt.status) == ("dead0000-run", "building")
    status = build_status(warehouse)
    assert (status["is_consistent"], status["status"]) == (False, "building")
    assert "run dead0000" in status["message"] and "did not finish" in status["message"]
    assert len(refusals(warehouse, D1)) == 2

    # the next run goes back to D1 and builds it whole: consistent, though D2 stays incomplete
    start_build(warehouse, "next0000-run", D1)
    finish_build(warehouse, "next0000-run", D1)
    assert unfinished_build(warehouse) is None and refusals(warehouse, D1) == []
    status = build_status(warehouse)
    assert (status["is_consistent"], status["built_as_of_date"]) == (True, D1)
    assert status["incomplete_dates"] == [D2]  # its rows in the history marts may be partial


def test_a_failure_keeps_what_dbt_said_and_a_later_failure_replaces_it(warehouse) -> None:
    record_build(warehouse, D1)
    start_build(warehouse, "first000-run", D2)
    error = DbtFailed(
        "dbt build failed",
        failed_nodes=("test.recoup.not_null_fct_account_stage_stage.5f2c",),
        rebuilt_models=("model.recoup.fct_account_stage",),
        not_rebuilt_models=("model.recoup.fct_account_aging",),
    )
    attempt = fail_build(warehouse, "first000-run", error)
    assert attempt is not None and attempt.warning() == (
        f"the last build (run first000, for {D2}) failed at not_null_fct_account_stage_stage: "
        f"the marts may mix {D2} and {D1}"
    )
    start_build(warehouse, "second00-run", D2)
    fail_build(warehouse, "second00-run", DbtFailed("dbt could not run: IOException: disk full"))
    status = build_status(warehouse)
    assert status["failed_run_id"] == "second00-run"
    assert status["failed_nodes"] == [] and status["rebuilt_models"] is None  # no results
    assert "failed before dbt finished" in status["message"]
    assert status["incomplete_dates"] == [D2]


def test_a_resume_after_the_build_builds_again_when_a_later_build_failed(
    warehouse, monkeypatch
) -> None:
    """A run for D1 failed at email; then a build for D2 failed. Resuming D1 must not send on
    marts that mix D2 and D1: it starts again at gate_raw, building D1 whole."""
    import flows.daily_dunning as module

    monkeypatch.setattr(module, "get_run_logger", lambda: logging.getLogger("test"))
    ensure_runs_table(warehouse)
    record_build(warehouse, D1)
    done = [{"step": step, "status": "done", "seconds": 0.1}
            for step in ("ingest", "gate_raw", "build", "gate_warehouse", "plan")]  # fmt: skip
    warehouse.execute(
        "insert into ops.runs values ('d1000000-run', 'daily-dunning', ?, false, '{}', "
        "'failed', 'email', 'SendAborted', now(), now(), ?)",
        [D1, json.dumps({"choices": {}, "steps": done})],
    )
    no_choices: dict[str, object] = {"only": None, "skip": None, "segment": None, "accounts": None}
    assert module._resume_point(warehouse, D1, dict(no_choices))[:2] == ("email", True)

    start_build(warehouse, "d2000000-run", D2)
    fail_build(warehouse, "d2000000-run", DbtFailed("dbt build failed"))
    assert module._resume_point(warehouse, D1, dict(no_choices))[:2] == ("gate_raw", False)
