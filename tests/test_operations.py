"""Operating recoup: dry runs and their diff, resuming a failed run, the run lock, the run
record and the run's own log, through the Prefect flow on the test API."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from flows.lib.run_lock import LockBusy, run_lock
from flows.lib.runs import NothingToResume
from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D1 = dt.date(2026, 11, 3)  # a Tuesday
D2 = D1 + dt.timedelta(days=14)


def day(offset: int, base: dt.date = D1) -> str:
    return (base + dt.timedelta(days=offset)).isoformat()


def first_batch(folder: Path) -> Path:
    """A and B one day past due on D1 (reminder_1); C due ten days after D1."""
    customers = [
        row("customers", customer_id=c, email=f"{c.lower()}@example.com", full_name=f"Client {c}")
        for c in ("CA", "CB", "CC")
    ]
    accounts = [row("accounts", account_id=a, customer_id=f"C{a}") for a in ("A", "B", "C")]
    invoices = [
        row("invoices", invoice_id=f"I{a}", account_id=a, issue_date="2026-10-01", due_date=due)
        for a, due in (("A", day(-1)), ("B", day(-1)), ("C", day(10)))
    ]
    fresh = [row("payments", payment_id="P0", account_id="C", amount="1.00",
                 received_date=day(-1))]  # fmt: skip
    return base_batch(folder, customers=customers, accounts=accounts, invoices=invoices,
                      payments=fresh)  # fmt: skip


def ledger(home: Path) -> list[tuple]:
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    rows = connection.execute(
        "select account_id, stage, as_of_date, status from ops.action_ledger order by 1, 2"
    ).fetchall()
    connection.close()
    return rows


def runs(home: Path) -> list[tuple]:
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    rows = connection.execute(
        "select as_of_date, dry_run, status, failed_step, summary from ops.runs order by started_at"
    ).fetchall()
    connection.close()
    return rows


def test_a_dry_run_sends_nothing_and_diffs_against_the_previous_run(
    prefect_api, recoup_home: Path
) -> None:
    from flows.daily_dunning import daily_dunning

    first_batch(recoup_home / "inbox" / "01")
    daily_dunning(as_of=D1)
    assert [(a, s, st) for a, s, _, st in ledger(recoup_home)] == [
        ("A", "reminder_1", "sent"), ("B", "reminder_1", "sent"),
    ]  # fmt: skip
    # before D2: B pays in full
    paid = row(
        "payments", payment_id="PB", account_id="B", amount="120.00", received_date=day(-1, D2)
    )
    write_batch(recoup_home / "inbox" / "02", payments=[paid])

    dry = daily_dunning(as_of=D2, dry_run=True)

    assert ledger(recoup_home) == [
        ("A", "reminder_1", D1, "sent"),
        ("B", "reminder_1", D1, "sent"),
    ]  # fmt: skip  (nothing planned or sent for D2)
    assert not (recoup_home / "outbox" / D2.isoformat()).exists()
    contacts = {row["what"]: (row["previous_run"], row["this_run"], row["change"])
                for row in dry.diff["contacts"]}  # fmt: skip
    assert contacts == {
        "reminder_1 emails": (2, 1, "-1"),  # C is past due now; A and B were last time
        "reminder_2 emails": (0, 1, "+1"),  # A is 15 days past due
    }
    accounts = {row["what"]: row["accounts"] for row in dry.diff["accounts"]}
    assert accounts["paid since (no balance left)"] == 1  # B
    assert accounts["moved up the ladder"] == 1  # A
    assert accounts["entered the ladder (courtesy reminders included)"] == 1  # C
    plan_file = (
        recoup_home / "out" / "reports" / D2.isoformat() / f"dry_run_{dry.run_id[:8]}_plan.csv"
    )
    assert plan_file.read_text(encoding="utf-8").count("\n") == 3  # header, A, C
    [_, (as_of, is_dry, status, _, summary)] = runs(recoup_home)
    assert (as_of, is_dry, status) == (D2, True, "succeeded")
    steps = {step["step"]: step["status"] for step in json.loads(summary)["steps"]}
    assert steps["email"] == "skipped" and steps["plan"] == "done"
    # it worked on a scratch copy: the warehouse later runs decide from is as it was
    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb", read_only=True)
    history = connection.execute(
        "select distinct as_of_date from marts.fct_account_stage_history"
    ).fetchall()
    batches = connection.execute("select count(*) from raw.load_batches").fetchall()
    connection.close()
    assert history == [(D1,)] and batches == [(1,)]  # inbox/02 waits for the real run
    assert not list((recoup_home / "state" / "dry_runs").iterdir())


def test_a_failed_run_resumes_from_the_failed_step_with_its_own_scope(
    prefect_api, recoup_home: Path, httpserver: HTTPServer, monkeypatch
) -> None:
    from flows.daily_dunning import daily_dunning
    from flows.lib.messages import SendAborted
    from flows.lib.runs import StepSelectionError

    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    monkeypatch.setenv("SENDGRID_API_HOST", httpserver.url_for("").rstrip("/"))
    first_batch(recoup_home / "inbox" / "01")
    httpserver.expect_ordered_request("/v3/mail/send").respond_with_json(
        {"errors": [{"message": "authorization required"}]}, status=401
    )
    with pytest.raises(SendAborted):
        daily_dunning(as_of=D1, accounts=["A"])  # a run for account A only
    [(_, _, status, failed_step, _)] = runs(recoup_home)
    assert (status, failed_step) == ("failed", "email")
    assert (recoup_home / "out" / "reports" / D1.isoformat()).is_dir()  # a failed run reports too

    # meanwhile the marts were built for another date: the resume must build D1 again
    daily_dunning(as_of=D2, only=["build"])
    with pytest.raises(StepSelectionError, match="a resume takes the failed run's segment"):
        daily_dunning(as_of=D1, resume=True, segment="smb")

    httpserver.expect_ordered_request("/v3/mail/send").respond_with_response(
        Response(status=202, headers={"X-Message-Id": "m1"})
    )
    resumed = daily_dunning(as_of=D1, resume=True)
    steps = {s.step: s.status for s in resumed.record.steps}
    assert steps["ingest"] == "skipped"
    assert steps["gate_raw"] == steps["build"] == steps["gate_warehouse"] == "done"
    assert steps["plan"] == steps["email"] == "done"
    # the failed run's scope: account A only, B never contacted
    assert [(account, status) for account, _, _, status in ledger(recoup_home)] == [("A", "sent")]
    with pytest.raises(NothingToResume, match="succeeded; there is nothing to resume"):
        daily_dunning(as_of=D1, resume=True)


def test_a_report_that_cannot_be_written_fails_the_run(
    prefect_api, recoup_home, monkeypatch
) -> None:
    import flows.daily_dunning as module

    def broken(*_args, **_kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(module, "write_the_run_report", broken)
    first_batch(recoup_home / "inbox" / "01")
    summary = module.daily_dunning(as_of=D1)
    assert (summary.record.status, summary.record.failed_step) == ("failed", "report")
    [(_, _, status, failed_step, _)] = runs(recoup_home)
    assert (status, failed_step) == ("failed", "report")


def test_a_second_run_is_refused_naming_the_running_one(
    prefect_api, recoup_home: Path, monkeypatch
) -> None:
    from flows.daily_dunning import daily_dunning

    monkeypatch.setenv("RECOUP_INGEST__LOCK_WAIT_SECONDS", "0")
    holder = {"run_id": "1234abcd-0000", "as_of": "2026-11-03"}
    with (
        run_lock(recoup_home / "state", "run", 0, holder),
        pytest.raises(LockBusy, match=r"recoup run. \(run 1234abcd for 2026-11-03, pid"),
    ):
        daily_dunning(as_of=D1)
    assert not (recoup_home / "warehouse").exists()  # refused before touching anything


def test_a_killed_run_leaves_no_lock_behind(prefect_api, recoup_home: Path) -> None:
    from flows.daily_dunning import daily_dunning

    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from flows.lib.run_lock import run_lock\n"
            "with run_lock(Path(sys.argv[1]), 'run', 0, {'run_id': 'dead0000'}):\n"
            "    print('locked', flush=True); time.sleep(60)\n"
        ), str(recoup_home / "state")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    time.sleep(0.1)
    first_batch(recoup_home / "inbox" / "01")
    summary = daily_dunning(as_of=D1)  # the OS released the dead run's lock
    assert summary.record.status == "succeeded"


def test_the_run_log_has_the_run_id_on_every_line_and_no_addresses(
    prefect_api, recoup_home: Path
) -> None:
    from flows.daily_dunning import daily_dunning

    first_batch(recoup_home / "inbox" / "01")
    summary = daily_dunning(as_of=D1)
    log = recoup_home / "state" / "logs" / D1.isoformat() / f"{summary.run_id}.jsonl"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(lines) > 5
    assert {line["run_id"] for line in lines} == {summary.run_id}
    text = log.read_text(encoding="utf-8")
    assert "gate_raw passed" in text and "emails via outbox" in text
    for address in ("ca@example.com", "cb@example.com", "cc@example.com", "Client CA"):
        assert address not in text
