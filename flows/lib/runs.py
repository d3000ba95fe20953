"""The record of every daily run: its steps, their timings and outcome, in `ops.runs`.

A run is a sequence of steps. Users name them in groups (`recoup run --only gates`,
`--skip ingest`, `--resume`):

| group | steps | what it does |
|---|---|---|
| ingest | ingest | load the batches waiting in the inbox |
| gates | gate_raw, gate_warehouse | the data gates (gate_warehouse runs after build) |
| build | build | dbt: balances, aging, holds, stages for the as-of date |
| events | events | import SendGrid events and opt-outs |
| contact | plan, recheck, email, letters, queue | plan the day's contacts and send them |
| agencies | agencies | recall from and place with collection agencies; their files |
| servicing | servicing, skip_trace | refund and discrepancy queues; skip-trace requests |
| report | report | the run report (JSON, HTML, Prefect artifact) |

Every step is recorded as done, failed or skipped with its seconds. A failed run keeps the
step it failed in; `--resume` starts again from that step's group, skipping what came before
(everything after it is idempotent: the ledger never sends a key twice).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import duckdb

from flows.lib import faults

StepGroup = Literal[
    "ingest",
    "gates",
    "build",
    "events",
    "contact",
    "agencies",
    "handoffs",
    "servicing",
    "report",
]
GROUPS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest",),
    "gates": ("gate_raw", "gate_warehouse"),
    "build": ("build",),
    "events": ("events",),
    "contact": ("offers", "plan", "recheck", "email", "letters", "queue"),
    "agencies": ("agencies",),
    "handoffs": ("write_offs", "legal", "credit_holds"),
    "servicing": ("servicing", "skip_trace"),
    "report": ("report",),
}
# the order steps run in (gate_raw before build, gate_warehouse after it)
STEPS: tuple[str, ...] = (
    "ingest",
    "gate_raw",
    "build",
    "gate_warehouse",
    "events",
    "offers",
    "plan",
    "recheck",
    "email",
    "letters",
    "queue",
    "agencies",
    "write_offs",
    "legal",
    "credit_holds",
    "servicing",
    "skip_trace",
    "report",
)
GROUP_OF = {step: group for group, steps in GROUPS.items() for step in steps}

RUNS_DDL = """
create table if not exists ops.runs (
    run_id VARCHAR PRIMARY KEY,
    flow VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    dry_run BOOLEAN NOT NULL,
    scope VARCHAR,
    status VARCHAR NOT NULL,
    failed_step VARCHAR,
    error VARCHAR,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    summary JSON
)
"""


class StepSelectionError(ValueError):
    """--only, --skip or --resume asked for something a run cannot do."""


class NothingToResume(StepSelectionError):
    """--resume, but no run of that date failed."""


@dataclass
class StepRecord:
    step: str
    status: Literal["done", "failed", "skipped"]
    seconds: float = 0.0
    started_at: str | None = None  # UTC, to the millisecond; None for a skipped step


@dataclass
class RunRecord:
    run_id: str
    flow: str
    as_of: dt.date
    dry_run: bool
    scope: dict[str, object]
    selected: frozenset[str]
    choices: dict[str, object] = field(default_factory=dict)  # only, skip, segment, accounts
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    steps: list[StepRecord] = field(default_factory=list)
    status: Literal["running", "succeeded", "failed", "interrupted"] = "running"
    failed_step: str | None = None
    error: str | None = None
    finished_at: dt.datetime | None = None
    # saves the steps so far in ops.runs after each step (set by the flow while it holds a
    # connection): a run killed later is then known to have stopped in the step it was in
    on_step_done: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def runs(self, step: str) -> bool:
        """Whether this run does `step`; a step it does not do is recorded as skipped."""
        if step in self.selected:
            return True
        self.steps.append(StepRecord(step, "skipped"))
        return False

    def skip(self, step: str) -> None:
        self.steps.append(StepRecord(step, "skipped"))

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; a step that raises is the run's failed step."""
        faults.at_step(name)  # test-only: RECOUP_FAULT_KILL_AT=step:<name> (flows/lib/faults.py)
        started = time.perf_counter()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        try:
            yield
        except BaseException as error:
            seconds = round(time.perf_counter() - started, 3)
            self.steps.append(StepRecord(name, "failed", seconds, started_at))
            self.status, self.failed_step = "failed", name
            self.error = f"{type(error).__name__}: {error}"[:2000]
            raise
        seconds = round(time.perf_counter() - started, 3)
        self.steps.append(StepRecord(name, "done", seconds, started_at))
        if self.on_step_done is not None:
            self.on_step_done()

    def fail_between_steps(self, error: BaseException) -> None:
        """An error outside any step (opening the warehouse, writing the dry run's files):
        the run failed at the first selected step that did not finish."""
        if self.status != "running":
            return
        finished = {step.step for step in self.steps}
        pending = [step for step in STEPS if step in self.selected and step not in finished]
        self.status, self.failed_step = "failed", (pending[0] if pending else "report")
        self.error = f"{type(error).__name__}: {error}"[:2000]

    def finish(self) -> None:
        self.finished_at = dt.datetime.now(dt.UTC)
        if self.status == "running":
            self.status = "succeeded"

    def summary_header(self) -> dict[str, object]:
        """The part of the run summary that describes the run itself."""
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "scope": self.scope,
            "status": self.status,
            "failed_step": self.failed_step,
            "error": self.error,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds")
            if self.finished_at
            else None,
            "steps": [vars(step) for step in self.steps],
            "selected": [step for step in STEPS if step in self.selected],
        }


def select_steps(
    only: list[str] | None,
    skip: list[str] | None,
    *,
    resume_from: str | None = None,
    gates_passed: bool = False,
) -> frozenset[str]:
    """The steps a run does: every step, or the groups in `only`, less the groups in `skip`;
    `resume_from` (a step) keeps that step's group and everything after it. Contacting needs
    both gates in the run, unless `gates_passed`: the resumed run passed them on this build."""
    unknown = sorted({*(only or ()), *(skip or ())} - set(GROUPS))
    if unknown:
        raise StepSelectionError(
            f"{', '.join(unknown)}: not a step of the run; steps are {', '.join(GROUPS)}"
        )
    groups = set(only) if only else set(GROUPS)
    groups -= set(skip or ())
    selected = {step for group in groups for step in GROUPS[group]}
    if resume_from is not None:
        first = STEPS.index(GROUPS[GROUP_OF[resume_from]][0])
        selected &= set(STEPS[first:])
    gates = {"gate_raw", "gate_warehouse"}
    outbound = selected & {"plan", "agencies"}
    if outbound and not gates <= selected and not gates_passed:
        raise StepSelectionError(
            "contacting and agency placement need both data gates: a run on bad data is worse "
            "than no run. Drop --skip gates, or add gates to --only"
        )
    return frozenset(selected)


def ensure_runs_table(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("create schema if not exists ops")
    connection.execute(RUNS_DDL)


def record_run(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, summary: dict[str, object]
) -> None:
    """Insert or update the run's row (a run writes it when it starts and when it ends)."""
    ensure_runs_table(connection)
    connection.execute(
        """
        insert or replace into ops.runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            run.run_id,
            run.flow,
            run.as_of,
            run.dry_run,
            json.dumps(run.scope),
            run.status,
            run.failed_step,
            run.error,
            run.started_at,
            run.finished_at,
            json.dumps(summary, default=str),
        ],
    )


@dataclass(frozen=True)
class Resumable:
    """What a resume takes over from the run it resumes."""

    run_id: str
    failed_step: str
    only: list[str] | None
    skip: list[str] | None
    segment: str | None
    accounts: list[str] | None
    gates_passed: bool
    built_for: str | None  # the as-of date of the build the failed run used


def mark_interrupted(connection: duckdb.DuckDBPyConnection) -> int:
    """Runs still `running` when a new run holds the lock were killed: mark them
    `interrupted`, failed at the first step they had not finished."""
    ensure_runs_table(connection)
    rows = connection.execute(
        "select run_id, summary from ops.runs where status = 'running'"
    ).fetchall()
    for run_id, summary in rows:
        document = json.loads(summary or "{}")
        finished = {step["step"] for step in document.get("steps", [])}
        selected = document.get("selected") or list(STEPS)
        pending = [step for step in STEPS if step in selected and step not in finished]
        connection.execute(
            "update ops.runs set status = 'interrupted', failed_step = ?, "
            "error = 'the run was stopped (killed or crashed) before it finished' "
            "where run_id = ?",
            [pending[0] if pending else "report", run_id],
        )
    return len(rows)


def run_to_resume(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> Resumable:
    """The latest real run for `as_of`, when it failed or was interrupted."""
    ensure_runs_table(connection)
    rows = connection.execute(
        """
        select run_id, status, failed_step, summary from ops.runs
        where as_of_date = ? and not dry_run
        order by started_at desc limit 1
        """,
        [as_of],
    ).fetchall()
    if not rows:
        raise NothingToResume(f"no run for {as_of} to resume; run it without --resume")
    run_id, status, failed_step, summary = rows[0]
    if status not in ("failed", "interrupted") or failed_step is None:
        raise NothingToResume(
            f"the last run for {as_of} ({run_id[:8]}) {status}; there is nothing to resume"
        )
    document = json.loads(summary or "{}")
    choices = document.get("choices") or {}
    done = {step["step"] for step in document.get("steps", []) if step["status"] == "done"}
    selected = set(document.get("selected") or STEPS)
    gates = set(GROUPS["gates"])
    # a resume that contacted without running the gates was let through only because the run
    # it resumed had passed them on this build (select_steps): resumed again, that still holds
    resumed_past_gates = not gates & selected and bool(selected & {"plan", "agencies"})
    return Resumable(
        run_id=run_id,
        failed_step=failed_step,
        only=choices.get("only"),
        skip=choices.get("skip"),
        segment=choices.get("segment"),
        accounts=choices.get("accounts"),
        gates_passed=gates <= done or resumed_past_gates,
        built_for=as_of.isoformat() if "build" in done else None,
    )


def recent_runs(connection: duckdb.DuckDBPyConnection, limit: int = 5) -> list[dict[str, object]]:
    """The latest runs, newest first: date, outcome, failed step, seconds (none before the
    first run; the connection may be read-only)."""
    exists = connection.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'ops' and table_name = 'runs'"
    ).fetchall()[0][0]
    if not exists:
        return []
    rows = connection.execute(
        """
        select
            run_id, as_of_date, dry_run, status, failed_step, started_at,
            date_diff('second', started_at, finished_at) as seconds
        from ops.runs order by started_at desc limit ?
        """,
        [limit],
    ).fetchall()
    return [
        {
            "run": run_id[:8],
            "as of": as_of,
            "kind": "dry run" if dry else "run",
            "outcome": status + (f" at {failed}" if failed else ""),
            "started (UTC)": f"{started:%Y-%m-%d %H:%M}",
            "seconds": seconds,
        }
        for run_id, as_of, dry, status, failed, started, seconds in rows
    ]
