"""Which steps a run does (--only, --skip, --resume), and when the next one is scheduled."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.lib.runs import STEPS, StepSelectionError, select_steps
from flows.lib.schedule import next_scheduled_run

pytestmark = pytest.mark.unit
CONTACT = {"plan", "recheck", "email", "letters", "queue"}


@pytest.mark.parametrize(
    ("only", "skip", "resume_from", "expected"),
    [
        pytest.param(None, None, None, set(STEPS), id="everything"),
        pytest.param(["gates"], None, None, {"gate_raw", "gate_warehouse"}, id="only the gates"),
        pytest.param(None, ["ingest"], None, set(STEPS) - {"ingest"}, id="skip the inbox"),
        pytest.param(["gates", "contact"], None, None, {"gate_raw", "gate_warehouse"} | CONTACT,
                     id="gates and contacts on the warehouse as built"),
        pytest.param(None, None, "email", CONTACT | {"report"},
                     id="resume a run that failed sending"),
        pytest.param(None, None, "gate_warehouse", set(STEPS) - {"ingest"},
                     id="resume a failed gate: build again, then the rest"),
    ],
)  # fmt: skip
def test_select_steps(only, skip, resume_from, expected) -> None:
    assert select_steps(only, skip, resume_from=resume_from) == expected


@pytest.mark.parametrize(
    ("only", "skip", "message"),
    [
        pytest.param(["gate"], None, "gate: not a step of the run; steps are ingest, gates",
                     id="a typo"),
        pytest.param(None, ["gates"], "contacting needs both data gates", id="contact unchecked"),
        pytest.param(["contact"], None, "contacting needs both data gates", id="only contact"),
    ],
)  # fmt: skip
def test_a_wrong_selection_is_refused_with_the_reason(only, skip, message) -> None:
    with pytest.raises(StepSelectionError, match=message):
        select_steps(only, skip)


def test_the_next_scheduled_run_comes_from_prefect_yaml() -> None:
    noon_utc = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)  # 06:00 in Chicago has passed
    assert next_scheduled_run(noon_utc).startswith("2026-12-02 06:00 America/Chicago")
    assert next_scheduled_run(noon_utc, "ingest") == "none: the ingest deployment has no schedule"
