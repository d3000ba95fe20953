"""Crash safety: `recoup run` killed (SIGKILL) at every step boundary and in the middle of
sending emails, then run again (issue #12, part 1).

One home lives through two days of a small export. Each run of `CHAIN` is killed where the
test-only fault injection tells it to (RECOUP_FAULT_KILL_AT, flows/lib/faults.py), and the
next run is its rerun, killed in turn one point further on; the last run of each day completes.
After every run the test takes a snapshot of the ledger, ops.runs and every file under out/ and
outbox/. What a kill must leave behind:

- no output file with a temporary name or half written (write to a temporary name, then
  rename: every CSV parses whole, every PDF runs from %PDF to %%EOF, every .eml is complete);
- a rerun that goes on (it is killed at its own point or completes; it never fails), and the
  killed run recorded as `interrupted` in the step it was in, which is where `--resume` starts;
- no contact claimed for a provider twice, and no .eml written twice;
- an email that was `sending` at the kill is `maybe_sent` after it and never sent again
  (recheck.recover_interrupted); and, after each day's last run, every planned contact went
  out exactly once and both gates passed.

The children run `flows.cli.main` (the `recoup` console script) in processes forked from a
forkserver that imported recoup, Prefect and Great Expectations once, against the session's
Prefect test API: a fresh `recoup` process pays about 8 s of imports and API start-up before
it does anything, and the chain has 17 runs. dbt builds in four of them: each day's first
build, the rebuild a resume from gate_warehouse does, and the plain rerun after the mid-send
kill. The chain takes about 100 s on a shared 2-core machine, most of it in those builds.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
import json
import multiprocessing
import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from flows.lib import faults
from flows.lib.config import load_settings
from flows.lib.faults import KILL_AT
from flows.lib.runs import (
    STEPS,
    RunRecord,
    StepRecord,
    mark_interrupted,
    record_run,
    run_to_resume,
    select_steps,
)
from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row

D0 = dt.date(2026, 11, 3)  # a Tuesday
D1 = D0 + dt.timedelta(days=7)
KILLED = -signal.SIGKILL  # how multiprocessing reports a child that SIGKILL ended
CHILD_TIMEOUT_SECONDS = 300


def day(offset: int) -> str:
    return (D0 + dt.timedelta(days=offset)).isoformat()


def two_days_of_contacts(inbox: Path) -> Path:
    """Who is contacted on D0 and on D1 = D0 + 7 (the policy in dbt_project/seeds):

    - E1, E2, E3 one day past due on D0: a reminder_1 email each on D0;
    - G1 24 days past due on D0: a reminder_2 email on D0, a final_notice letter on D1;
    - L1 35 and Q1 44 days past due on D0: a final_notice letter each on D0; on D1 Q1 has been
      a week in final_notice at 51 days: manager_review, a call in the work queue;
    - F1, F2, F3 one day past due on D1 (not yet in the ladder on D0): a reminder_1 email each
      on D1. F1 and F2 share a household address, and an address appears once per request:
      the email step hands the sender two requests, and `send:1` kills it between them.
    """
    due = {"E1": -1, "E2": -1, "E3": -1, "G1": -24, "L1": -35, "Q1": -44}
    due |= {"F1": 6, "F2": 6, "F3": 6}
    address = {"F1": "household@example.com", "F2": "household@example.com"}
    customers = [
        row("customers", customer_id=f"C{name}", full_name=f"Client {name}",
            email=address.get(name, f"{name.lower()}@example.com"), phone="+15125550100",
            ssn="", date_of_birth="")  # no credit-bureau data: not what this test is about
        for name in due
    ]  # fmt: skip
    accounts = [row("accounts", account_id=f"A{name}", customer_id=f"C{name}") for name in due]
    invoices = [
        row("invoices", invoice_id=f"I{name}", account_id=f"A{name}", issue_date="2026-09-01",
            due_date=day(offset))
        for name, offset in due.items()
    ]  # fmt: skip
    fresh = [
        row("payments", payment_id="P0", account_id="AE1", amount="1.00", received_date=day(-1))
    ]
    return base_batch(inbox, customers=customers, accounts=accounts, invoices=invoices,
                      payments=fresh)  # fmt: skip


@dataclass(frozen=True)
class ChainRun:
    """One `recoup run` of the chain: its date, plain or --resume, and where it is killed."""

    day: dt.date
    resume: bool
    kill_at: str | None

    @property
    def argv(self) -> list[str]:
        return ["run", "--as-of", self.day.isoformat(), *(["--resume"] if self.resume else [])]

    @property
    def label(self) -> str:
        how = "recoup run --resume" if self.resume else "recoup run"
        return f"{how} {self.day}" + (f" killed at {self.kill_at}" if self.kill_at else "")


# each run is the rerun of the kill before it
CHAIN = (
    ChainRun(D0, resume=False, kill_at="step:ingest"),
    ChainRun(D0, resume=False, kill_at="step:gate_raw"),
    ChainRun(D0, resume=True, kill_at="step:build"),
    ChainRun(D0, resume=True, kill_at="step:events"),  # resumes a build that never ran
    ChainRun(D0, resume=True, kill_at=None),
    ChainRun(D1, resume=False, kill_at="step:gate_warehouse"),
    ChainRun(D1, resume=True, kill_at="step:offers"),
    ChainRun(D1, resume=True, kill_at="step:plan"),
    ChainRun(D1, resume=True, kill_at="step:recheck"),  # from plan: it runs no gates
    ChainRun(D1, resume=True, kill_at="step:email"),  # resumes a resume that ran no gates
    ChainRun(D1, resume=True, kill_at="send:1"),  # after the first of two email requests
    ChainRun(D1, resume=False, kill_at="step:letters"),  # a plain rerun after a mid-send kill
    ChainRun(D1, resume=True, kill_at="step:queue"),
    ChainRun(D1, resume=True, kill_at="step:agencies"),
    ChainRun(D1, resume=True, kill_at="step:write_offs"),
    ChainRun(D1, resume=True, kill_at="step:legal"),
    ChainRun(D1, resume=True, kill_at="step:credit_holds"),
    ChainRun(D1, resume=True, kill_at="step:servicing"),
    ChainRun(D1, resume=True, kill_at="step:skip_trace"),
    ChainRun(D1, resume=True, kill_at="step:report"),
    ChainRun(D1, resume=True, kill_at=None),
)
KILLS = [index for index, run in enumerate(CHAIN) if run.kill_at is not None]
SEND_KILL = next(index for index, run in enumerate(CHAIN) if run.kill_at == "send:1")


# --- the child process ------------------------------------------------------------------------


def recoup_in_child(home: str, argv: list[str], kill_at: str | None) -> None:
    """`recoup <argv>` with RECOUP_HOME=home, killed at `kill_at` (a forkserver child)."""
    for name in [name for name in os.environ if name.startswith(("RECOUP_", "SENDGRID_"))]:
        del os.environ[name]  # outbox mode, built-in settings and home's recoup.yaml only
    os.environ["RECOUP_HOME"] = home
    if kill_at is not None:
        os.environ[KILL_AT] = kill_at
    os.chdir(home)
    from flows.cli import main

    main(argv)


def run_in_child(context: multiprocessing.context.BaseContext, home: Path, run: ChainRun) -> int:
    child = context.Process(target=recoup_in_child, args=(str(home), run.argv, run.kill_at))
    child.start()
    child.join(CHILD_TIMEOUT_SECONDS)
    if child.exitcode is None:
        child.kill()
        child.join()
        raise AssertionError(f"{run.label}: still running after {CHILD_TIMEOUT_SECONDS} s")
    return child.exitcode


# --- what a run left behind -------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    run_id: str
    as_of: dt.date
    status: str
    failed_step: str | None
    done: tuple[str, ...]  # the steps it recorded as done, in order


@dataclass(frozen=True)
class Snapshot:
    exit_code: int
    # action_key → (account_id, stage, channel, status, reason)
    ledger: dict[str, tuple[str, str, str, str, str | None]]
    claims: Counter[str]  # action_key → times it moved to `sending` (claimed for a provider)
    runs: list[RunRow]  # oldest first
    files: dict[str, tuple[int, int]]  # path under the home → (inode, mtime in ns)
    damaged: list[str]  # files with a temporary name, or not whole

    def with_status(self, status: str, channel: str | None = None) -> set[str]:
        return {
            key
            for key, (_, _, each_channel, each_status, _) in self.ledger.items()
            if each_status == status and channel in (None, each_channel)
        }


def take_snapshot(home: Path, exit_code: int) -> Snapshot:
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    try:
        ledger = {
            key: (account, stage, channel, status, reason)
            for key, account, stage, channel, status, reason in _rows(
                connection,
                "select action_key, account_id, stage, channel, status, reason "
                "from ops.action_ledger",
            )
        }
        claims = Counter(
            key
            for (key,) in _rows(
                connection, "select action_key from ops.action_log where to_status = 'sending'"
            )
        )
        runs = [
            RunRow(run_id, as_of, status, failed_step, _done_steps(summary))
            for run_id, as_of, status, failed_step, summary in _rows(
                connection,
                "select run_id, as_of_date, status, failed_step, summary from ops.runs "
                "order by started_at",
            )
        ]
    finally:
        connection.close()
    files = {
        str(path.relative_to(home)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for top in ("out", "outbox")
        for path in sorted((home / top).rglob("*"))
        if path.is_file()
    }
    return Snapshot(exit_code, ledger, claims, runs, files, damaged_files(home))


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    try:
        return connection.execute(sql).fetchall()
    except duckdb.CatalogException:  # killed before the step that creates the table
        return []


def _done_steps(summary: str | None) -> tuple[str, ...]:
    steps = json.loads(summary or "{}").get("steps", [])
    return tuple(step["step"] for step in steps if step["status"] == "done")


def damaged_files(home: Path) -> list[str]:
    """Files under out/ and outbox/ that a reader must never see: a temporary name, or a
    file that is not whole."""
    damaged = []
    for top in ("out", "outbox"):
        for path in sorted((home / top).rglob("*")):
            if not path.is_file():
                continue
            where = str(path.relative_to(home))
            if path.name.startswith(".") or path.name.endswith(".tmp"):
                damaged.append(f"{where}: a temporary name")
            elif problem := incomplete(path):
                damaged.append(f"{where}: {problem}")
    return damaged


def incomplete(path: Path) -> str | None:
    """What is wrong with a file that should be whole, or None."""
    data = path.read_bytes()
    if not data:
        return "empty"
    if path.suffix == ".pdf":
        whole = data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        return None if whole else "not a whole PDF"
    if path.suffix == ".csv":
        records = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        ragged = any(len(record) != len(records[0]) for record in records)
        return "not a whole CSV" if ragged or not data.endswith(b"\n") else None
    if path.suffix == ".eml":
        message = email.message_from_bytes(data, policy=email.policy.default)
        closing = f"--{message.get_boundary()}--".encode()
        whole = message["X-Recoup-Outbox-Id"] == path.stem and data.rstrip().endswith(closing)
        return None if whole else "not a whole email"
    if path.suffix == ".json":
        try:
            json.loads(data)
        except ValueError:
            return "not whole JSON"
    if path.suffix == ".html" and not data.rstrip().endswith(b"</html>"):
        return "not a whole HTML page"
    return None


# --- the chain --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("crash-home")
    two_days_of_contacts(home / "inbox" / "01")
    # the export arrives once: on D1 its newest payment is eight days old
    (home / "recoup.yaml").write_text(
        "gates:\n  freshness_days: 30\n  dbt_data_tests: false\n", encoding="utf-8"
    )
    return home


@pytest.fixture(scope="module")
def chain(prefect_api, home: Path) -> list[Snapshot]:
    """Run the whole chain; the snapshot after each run, in order."""
    from prefect.settings import PREFECT_API_URL

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["flows.cli", "flows.daily_dunning", "great_expectations"])
    snapshots = []
    with pytest.MonkeyPatch.context() as patch:
        # the forkserver, started by the first child, inherits this: every child uses the
        # session's test API instead of starting an ephemeral one
        patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
        for run in CHAIN:
            snapshots.append(take_snapshot(home, run_in_child(context, home, run)))
    return snapshots


ON_D0 = {
    ("AE1", "reminder_1", "email"), ("AE2", "reminder_1", "email"),
    ("AE3", "reminder_1", "email"), ("AG1", "reminder_2", "email"),
    ("AL1", "final_notice", "letter"), ("AQ1", "final_notice", "letter"),
}  # fmt: skip
ON_D1 = {
    ("AF1", "reminder_1", "email"), ("AF2", "reminder_1", "email"),
    ("AF3", "reminder_1", "email"), ("AG1", "final_notice", "letter"),
    ("AQ1", "manager_review", "phone"),
}  # fmt: skip
DAY_ENDS = {D0: 4, D1: len(CHAIN) - 1}  # the run that completes each day


class TestTheFaultPointsAndTheRunRecord:
    """The fault injection, and the run record's fixes the chain found, on their own."""

    pytestmark = pytest.mark.unit

    def test_the_chain_kills_at_every_step_a_run_does_and_in_the_middle_of_sending(self) -> None:
        points = {run.kill_at for run in CHAIN}
        assert points >= {f"step:{step}" for step in STEPS}, "a step the crash test never kills"
        assert "send:1" in points

    def test_a_fault_point_does_nothing_anywhere_else(self, monkeypatch) -> None:
        monkeypatch.delenv(KILL_AT, raising=False)
        faults.at_step("email")
        faults.after_handed(1_000_000)
        monkeypatch.setenv(KILL_AT, "step:letters")
        faults.at_step("email")
        faults.after_handed(3)
        monkeypatch.setenv(KILL_AT, "send:5")
        faults.at_step("email")
        faults.after_handed(4)  # still alive: the kill itself is what the chain shows
        monkeypatch.setenv(KILL_AT, "send:one")
        with pytest.raises(ValueError, match="RECOUP_FAULT_KILL_AT='send:one': use send:<n>"):
            faults.after_handed(1)

    def test_the_fault_variable_is_not_taken_for_a_setting(self, tmp_path: Path) -> None:
        settings = load_settings({"RECOUP_HOME": str(tmp_path), KILL_AT: "step:email"})
        assert settings.home == tmp_path.resolve()

    def test_each_finished_step_is_saved_so_a_killed_run_is_known_to_have_stopped_in_the_next(
        self, warehouse: duckdb.DuckDBPyConnection
    ) -> None:
        record = RunRecord("run-1", "daily-dunning", D0, False, {}, frozenset(STEPS))
        record_run(warehouse, record, record.summary_header())
        record.on_step_done = lambda: record_run(warehouse, record, record.summary_header())
        for step in ("ingest", "gate_raw"):
            with record.step(step):
                pass
        # killed as the build starts: nothing more is written (before the fix, the row still
        # had no steps, and the run was taken to have stopped in ingest)
        assert mark_interrupted(warehouse) == 1
        assert warehouse.execute("select status, failed_step from ops.runs").fetchall() == [
            ("interrupted", "build")
        ]

    @pytest.mark.parametrize(
        ("resume_from", "done", "passed"),
        [
            pytest.param(None, ("ingest", "gate_raw", "build", "gate_warehouse", "events"), True,
                         id="a run that passed both gates"),
            pytest.param(None, ("ingest", "gate_raw", "build"), False,
                         id="a run stopped before gate 2"),
            pytest.param("plan", ("plan",), True,
                         id="a resume that contacted on the gates of the run it resumed"),
            pytest.param("servicing", ("servicing",), False,
                         id="a resume with nothing outbound left"),
        ],
    )  # fmt: skip
    def test_a_resume_of_a_resume_keeps_the_gates_its_first_run_passed(
        self,
        warehouse: duckdb.DuckDBPyConnection,
        resume_from: str | None,
        done: tuple[str, ...],
        passed: bool,
    ) -> None:
        selected = select_steps(None, None, resume_from=resume_from, gates_passed=True)
        record = RunRecord("run-1", "daily-dunning", D0, False, {}, selected)
        record.steps = [StepRecord(step, "done") for step in done]
        record.status, record.failed_step = "failed", STEPS[STEPS.index(done[-1]) + 1]
        record_run(warehouse, record, record.summary_header())
        assert run_to_resume(warehouse, D0).gates_passed is passed


@pytest.mark.integration
@pytest.mark.slow
class TestKilledAndRunAgain:
    """The chain: every kill, its rerun, and how each day ends."""

    @pytest.mark.parametrize("index", KILLS, ids=[CHAIN[i].kill_at for i in KILLS])
    def test_after_a_kill_nothing_is_half_written_and_the_rerun_goes_on(
        self, chain: list[Snapshot], index: int
    ) -> None:
        killed, rerun = chain[index], chain[index + 1]
        kill_at = CHAIN[index].kill_at or ""
        assert killed.exit_code == KILLED, f"{CHAIN[index].label}: exit code {killed.exit_code}"
        assert killed.runs[-1].status == "running"  # it never got to record an outcome
        assert killed.damaged == []
        # the rerun is killed at its own point, or completes; it never fails
        expected = KILLED if CHAIN[index + 1].kill_at else 0
        assert rerun.exit_code == expected, f"{CHAIN[index + 1].label}: exit {rerun.exit_code}"
        assert rerun.damaged == []
        # the killed run is recorded as stopped in the step it was in: --resume starts there
        stopped_in = "email" if kill_at.startswith("send:") else kill_at.removeprefix("step:")
        assert (rerun.runs[-2].status, rerun.runs[-2].failed_step) == ("interrupted", stopped_in)
        # nothing is claimed for a provider twice, and no email or letter is written again
        assert max(rerun.claims.values(), default=0) <= 1
        handed_over = {
            path: stamp
            for path, stamp in killed.files.items()
            if path.startswith(("outbox/", "out/letters/"))
        }
        assert {path: rerun.files.get(path) for path in handed_over} == handed_over

    def test_a_resume_starts_in_the_step_the_run_was_killed_in(self, chain: list[Snapshot]) -> None:
        done = [snapshot.runs[-1].done for snapshot in chain]
        after = {run.kill_at: done[index + 1] for index, run in enumerate(CHAIN[:-1])}
        assert done[2] == ("gate_raw",)  # killed as gate_raw started: resumed there
        # killed as the build started: the resume checks the raw data again, builds and
        # checks the marts (it used to be refused: a resume from `build` ran no gate_raw)
        assert done[3] == ("gate_raw", "build", "gate_warehouse")
        assert done[4][0] == "events"  # D0's marts are built and checked: on from there
        # a resume of a resume: the gates passed two runs back, on this build (it used to be
        # refused: the resumed run had run no gates itself)
        assert after["step:recheck"][:3] == ("offers", "plan", "recheck")
        assert after["step:skip_trace"] == ("servicing", "skip_trace")  # killed in its group
        assert after["step:report"] == ("report",)  # killed as the report started: only that

    def test_an_email_interrupted_mid_send_is_maybe_sent_and_never_sent_again(
        self, chain: list[Snapshot]
    ) -> None:
        killed, rerun, last = chain[SEND_KILL], chain[SEND_KILL + 1], chain[-1]
        sending = killed.with_status("sending", "email")
        waiting = killed.with_status("planned", "email")
        # F1 and F2 share an address, so two requests: the first came back and the kill came
        # before the ledger recorded it; the second was never handed over
        assert (len(sending), len(waiting)) == (2, 1)
        emails = {path for path in killed.files if path.startswith(f"outbox/{D1}/")}
        assert emails == {f"outbox/{D1}/{key}.eml" for key in sending}
        # the plain rerun settles them as maybe_sent (a provider may have them), sends the other
        assert rerun.with_status("maybe_sent", "email") == sending
        assert {rerun.ledger[key][4] for key in sending} == {"interrupted_while_sending"}
        assert rerun.with_status("sent", "email") >= waiting
        for key in sending:
            path = f"outbox/{D1}/{key}.eml"
            assert last.files[path] == killed.files[path]  # never written again
            assert last.claims[key] == 1
        assert last.with_status("maybe_sent") == sending  # and no later run changed that

    @pytest.mark.parametrize("date", list(DAY_ENDS), ids=str)
    def test_each_day_ends_with_every_planned_contact_sent_exactly_once(
        self, chain: list[Snapshot], home: Path, date: dt.date
    ) -> None:
        last = chain[DAY_ENDS[date]]
        assert last.exit_code == 0 and last.runs[-1].status == "succeeded"
        contacts = {
            (account, stage, channel) for account, stage, channel, _, _ in last.ledger.values()
        }
        assert contacts == (ON_D0 if date == D0 else ON_D0 | ON_D1)
        interrupted = chain[SEND_KILL].with_status("sending") if date == D1 else set()
        assert last.with_status("sent") == set(last.ledger) - interrupted
        assert last.with_status("maybe_sent") == interrupted
        assert last.claims == Counter(set(last.ledger))  # each claimed for a provider once
        assert last.damaged == []
        # what was handed over lists each contact once: outbox, print manifests, work queue
        emails = sorted(Path(path).stem for path in last.files if path.startswith("outbox/"))
        assert emails == sorted(last.with_status("sent", "email") | interrupted)
        letters = last.with_status("sent", "letter")
        pdfs = {Path(path).stem for path in last.files if path.endswith(".pdf")}
        assert pdfs == letters
        assert listed(home, last, "print_manifest_", "letter_id") == Counter(letters)
        queued = last.with_status("sent", "phone")
        assert listed(home, last, "work_queue_", "item_id") == Counter(queued)

    def test_every_gate_of_every_run_passed(self, home: Path, chain: list[Snapshot]) -> None:
        connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
        results = connection.execute(
            "select run_id, gate, check_name, success from ops.gate_results"
        ).fetchall()
        connection.close()
        assert [result for result in results if not result[3]] == []
        plain_rerun = chain[SEND_KILL + 1].runs[-1].run_id  # it checked both, then contacted
        gates = {gate for run_id, gate, _, _ in results if run_id == plain_rerun}
        assert gates >= {"gate_raw", "gate_warehouse"}


def listed(home: Path, snapshot: Snapshot, prefix: str, column: str) -> Counter[str]:
    """How often each id appears across the hand-off files whose names start with `prefix`."""
    found: Counter[str] = Counter()
    for path in snapshot.files:
        if Path(path).name.startswith(prefix):
            with (home / path).open(encoding="utf-8", newline="") as stream:
                found.update(record[column] for record in csv.DictReader(stream))
    return found
