"""Which steps a run does (--only, --skip, --resume), and when the next one is scheduled."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.lib.runs import STEPS, StepSelectionError, select_steps
from flows.lib.schedule import next_scheduled_run

pytestmark = pytest.mark.unit
CONTACT = {"offers", "plan", "recheck", "email", "letters", "queue"}


@pytest.mark.parametrize(
    ("only", "skip", "resume_from", "expected"),
    [
        pytest.param(None, None, None, set(STEPS), id="everything"),
        pytest.param(["gates"], None, None, {"gate_raw", "gate_warehouse"}, id="only the gates"),
        pytest.param(None, ["ingest"], None, set(STEPS) - {"ingest"}, id="skip the inbox"),
        pytest.param(["gates", "contact"], None, None, {"gate_raw", "gate_warehouse"} | CONTACT,
                     id="gates and contacts on the warehouse as built"),
        pytest.param(None, None, "email",
                     CONTACT | {"agencies", "write_offs", "legal", "credit_holds", "servicing", "skip_trace", "report"},
                     id="resume a run that failed sending"),
        pytest.param(None, None, "gate_warehouse", set(STEPS) - {"ingest"},
                     id="resume a failed gate: build again, then the rest"),
    ],
)  # fmt: skip
def test_select_steps(only, skip, resume_from, expected) -> None:
    passed = resume_from == "email"  # that run passed both gates before it failed sending
    assert select_steps(only, skip, resume_from=resume_from, gates_passed=passed) == expected


def test_a_resume_contacts_without_gates_only_when_the_resumed_run_passed_them() -> None:
    with pytest.raises(StepSelectionError, match="need both data gates"):
        select_steps(None, ["gates"], resume_from="ingest")
    with pytest.raises(StepSelectionError, match="need both data gates"):
        select_steps(None, None, resume_from="email", gates_passed=False)


@pytest.mark.parametrize(
    ("only", "skip", "message"),
    [
        pytest.param(["gate"], None, "gate: not a step of the run; steps are ingest, gates",
                     id="a typo"),
        pytest.param(None, ["gates"], "need both data gates", id="contact unchecked"),
        pytest.param(["contact"], None, "need both data gates", id="only contact"),
        pytest.param(["agencies"], None, "need both data gates", id="only agencies"),
    ],
)  # fmt: skip
def test_a_wrong_selection_is_refused_with_the_reason(only, skip, message) -> None:
    with pytest.raises(StepSelectionError, match=message):
        select_steps(only, skip)


def test_the_next_scheduled_run_comes_from_prefect_yaml() -> None:
    noon_utc = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)  # 06:00 in Chicago has passed
    assert next_scheduled_run(noon_utc).startswith("2026-12-02 06:00 America/Chicago")
    assert next_scheduled_run(noon_utc, "ingest") == "none: the ingest deployment has no schedule"


# --- the run record in the warehouse -----------------------------------------------------------

D = dt.date(2026, 11, 3)


def a_run(run_id: str, *, day: dt.date = D, status: str = "running", done: tuple = (),
          plan: list | None = None, dry: bool = False) -> tuple:  # fmt: skip
    from flows.lib.runs import RunRecord, StepRecord

    record = RunRecord(run_id, "daily-dunning", day, dry, {}, frozenset(STEPS))
    record.status = status  # type: ignore[assignment]
    record.steps = [StepRecord(step, "done", 1.0) for step in done]
    summary = {**record.summary_header(), "plan": plan or []}
    return record, summary


@pytest.mark.integration
def test_a_run_killed_midway_is_interrupted_and_can_be_resumed(warehouse) -> None:
    from flows.lib.runs import mark_interrupted, record_run, run_to_resume

    record_run(warehouse, *a_run("killed-1", done=("ingest", "gate_raw", "build")))
    assert mark_interrupted(warehouse) == 1
    rows = warehouse.execute("select status, failed_step from ops.runs").fetchall()
    assert rows == [("interrupted", "gate_warehouse")]
    resumable = run_to_resume(warehouse, D)
    assert (resumable.failed_step, resumable.gates_passed) == ("gate_warehouse", False)


@pytest.mark.unit
def test_a_step_records_when_it_started_and_how_long_it_took() -> None:
    record, _ = a_run("r")
    before = dt.datetime.now(dt.UTC)
    with record.step("ingest"):
        pass
    with pytest.raises(RuntimeError), record.step("gate_raw"):
        raise RuntimeError("bad rows")
    record.skip("build")

    done, failed, skipped = record.steps
    assert dt.datetime.fromisoformat(done.started_at) >= before.replace(microsecond=0)
    assert dt.datetime.fromisoformat(failed.started_at) >= dt.datetime.fromisoformat(
        done.started_at
    )
    assert (failed.status, skipped.status, skipped.started_at) == ("failed", "skipped", None)
    assert record.summary_header()["steps"][0]["started_at"] == done.started_at


@pytest.mark.unit
def test_an_error_between_steps_fails_the_run_at_the_next_step() -> None:
    record, _ = a_run("r", done=("ingest", "gate_raw"))
    record.fail_between_steps(OSError("disk full"))
    assert (record.status, record.failed_step, record.error) == (
        "failed",
        "build",
        "OSError: disk full",
    )
    record.finish()
    assert record.status == "failed"


@pytest.mark.integration
def test_the_dry_run_diff_compares_with_every_run_of_the_last_day_that_planned(warehouse) -> None:
    from flows.lib.dry_run import previous_run
    from flows.lib.runs import record_run

    plan = lambda n: [{"channel": "email", "stage": "reminder_1", "status": "planned",  # noqa: E731
                       "reason": None, "count": n}]  # fmt: skip
    record_run(warehouse, *a_run("first", status="succeeded", done=("plan",), plan=plan(30)))
    record_run(warehouse, *a_run("second", status="succeeded", done=("plan",), plan=plan(4)))
    later = D + dt.timedelta(days=7)  # failed at gate 1: it never planned
    record_run(warehouse, *a_run("gate-failed", day=later, status="failed", done=("ingest",)))
    record_run(warehouse, *a_run("dry", day=later, status="succeeded", done=("plan",),
                                 plan=plan(999), dry=True))  # fmt: skip
    ids, day, rows = previous_run(warehouse, later + dt.timedelta(days=1))
    assert (ids, day) == ("first, second", D)
    assert sum(row["count"] for row in rows) == 34


@pytest.mark.integration
def test_status_reports_the_latest_build_not_the_latest_date(warehouse) -> None:
    from flows.lib.gates import latest_build

    warehouse.execute("delete from ops.builds")  # the warehouse creates the table, empty
    warehouse.execute(
        "insert into ops.builds values ('2026-12-03', '2026-12-01 10:00+00'), "
        "('2026-12-02', '2026-12-01 11:00+00')"
    )
    assert latest_build(warehouse) == dt.date(2026, 12, 2)


@pytest.mark.integration
def test_a_reader_holds_the_run_lock_until_it_closes(recoup_home) -> None:
    from flows.cli import _read_only
    from flows.lib.config import load_settings
    from flows.lib.run_lock import LockBusy, run_lock
    from flows.lib.warehouse import open_warehouse

    open_warehouse(recoup_home / "warehouse" / "recoup.duckdb").close()
    settings = load_settings()
    reader = _read_only(settings)
    with pytest.raises(LockBusy, match="recoup read"), run_lock(recoup_home / "state", "run", 0):
        pass
    reader.close()
    with run_lock(recoup_home / "state", "run", 0):
        pass  # free again
