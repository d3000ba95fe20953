"""Right before sending: a planned contact is cancelled when newer facts overtook it, and a
contact a crashed run left `sending` is settled without sending it twice."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from flows.lib.recheck import cancel_outdated, recover_interrupted
from tests.contact_fixtures import (
    AS_OF,
    a_raw_fact,
    a_stage,
    contacted,
    make_marts,
    manual_holds,
)

pytestmark = pytest.mark.integration
PLANNED_AT = dt.datetime.combine(AS_OF, dt.time(12), dt.UTC)  # contacted() plans at noon
BEFORE = PLANNED_AT - dt.timedelta(hours=6)
AFTER = PLANNED_AT + dt.timedelta(hours=2)
TODAY = AS_OF + dt.timedelta(days=1)


@pytest.fixture
def planned(warehouse: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """An email and a letter planned for A1, a manager review for A2."""
    manual_holds(warehouse)
    make_marts(warehouse, [])
    a_raw_fact(warehouse, "customers", loaded_at=BEFORE)
    a_raw_fact(warehouse, "customers", loaded_at=BEFORE, customer_id="C2")
    contacted(warehouse, stage="reminder_1", day=AS_OF, status="planned")
    contacted(warehouse, stage="final_notice", day=AS_OF, status="planned")
    contacted(warehouse, account_id="A2", customer_id="C2", stage="write_off_recommendation",
              day=AS_OF, status="planned")  # fmt: skip
    return warehouse


def cancelled(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    """(account, channel) → reason, after the re-check."""
    cancel_outdated(connection, as_of=AS_OF, today=TODAY, catch_up_days=7, run_id="r")
    rows = connection.execute(
        "select account_id, channel, reason from ops.action_ledger where status = 'cancelled'"
    ).fetchall()
    return {(account, channel): reason for account, channel, reason in rows}


A1_BOTH = {("A1", "email"): "paid_since_planning", ("A1", "letter"): "paid_since_planning"}


@pytest.mark.parametrize(
    ("entity", "values", "loaded_at", "expected"),
    [
        pytest.param("payments", {"received_date": "2026-04-01"}, AFTER, A1_BOTH,
                     id="a payment dated after the as-of date"),
        pytest.param("payments", {"received_date": "2026-03-30"}, AFTER, A1_BOTH,
                     id="a payment loaded after planning"),
        pytest.param("payments", {"received_date": "2026-03-30"}, BEFORE, {},
                     id="a payment the plan already knew"),
        pytest.param("payments", {"received_date": "2026-04-01", "payment_id": "P2",
                                  "reverses_payment_id": "P1"}, AFTER, {},
                     id="a reversal is not money in"),
        pytest.param("adjustments", {"kind": "credit_note", "effective_date": "2026-04-01"},
                     AFTER, A1_BOTH, id="a credit note"),
        pytest.param("adjustments", {"kind": "fee", "effective_date": "2026-04-01"}, AFTER, {},
                     id="a fee is not money in"),
        pytest.param("disputes", {"opened_date": "2026-04-01"}, AFTER,
                     {k: "disputed_since_planning" for k in A1_BOTH}, id="a new dispute"),
        pytest.param("disputes", {"opened_date": "2026-04-01", "resolved_date": "2026-04-01",
                                  "resolution": "rejected"}, AFTER, {},
                     id="a dispute already resolved"),
        pytest.param("payment_plans", {"created_date": "2026-04-01"}, AFTER,
                     {k: "payment_plan_since_planning" for k in A1_BOTH}, id="a new promise"),
        pytest.param("account_flags", {"flag": "bankruptcy", "start_date": "2026-04-01"},
                     AFTER, {k: "hold: bankruptcy" for k in A1_BOTH},
                     id="bankruptcy filed since: every customer channel stops"),
        pytest.param("account_flags", {"flag": "deceased", "start_date": "2026-01-01",
                                       "end_date": "2026-03-15"}, BEFORE, {},
                     id="a flag that ended"),
        pytest.param("account_flags", {"flag": "do_not_email", "start_date": "2026-04-01"},
                     AFTER, {("A1", "email"): "do_not_email"}, id="do_not_email: email only"),
    ],
)  # fmt: skip
def test_newer_facts_cancel_a_planned_contact(
    planned, entity: str, values: dict, loaded_at: dt.datetime, expected: dict
) -> None:
    if "reverses_payment_id" in values:  # the reversed payment came before planning
        a_raw_fact(planned, "payments", loaded_at=BEFORE, received_date="2026-03-01")
    a_raw_fact(planned, entity, loaded_at=loaded_at, **values)
    assert cancelled(planned) == expected


def test_a_full_snapshot_resending_old_payments_cancels_nothing(planned) -> None:
    a_raw_fact(planned, "payments", loaded_at=BEFORE, received_date="2026-03-01")
    a_raw_fact(planned, "payments", loaded_at=AFTER, batch_id=2, received_date="2026-03-01")
    assert cancelled(planned) == {}


def test_a_manual_hold_and_a_suppressed_address_cancel(planned) -> None:
    manual_holds(planned, ("A1", "customer called", "2026-03-01", None, "ops"))
    planned.execute(
        "insert into ops.email_suppressions values ('ann@example.com', 'unsubscribed', now(), null)"
    )
    assert cancelled(planned) == {("A1", "email"): "hold: manual", ("A1", "letter"): "hold: manual"}


def test_an_unsubscribe_alone_cancels_only_the_email(planned) -> None:
    planned.execute(
        "insert into ops.email_suppressions values ('ann@example.com', 'unsubscribed', now(), null)"
    )
    assert cancelled(planned) == {("A1", "email"): "email_unsubscribed"}


def test_a_plan_older_than_the_catch_up_window_is_stale(warehouse) -> None:
    manual_holds(warehouse)
    make_marts(warehouse, [])
    contacted(warehouse, day=AS_OF - dt.timedelta(days=8), status="planned")
    assert cancelled(warehouse) == {("A1", "email"): "stale_plan"}


def test_a_plan_dated_after_the_run_is_left_alone(warehouse) -> None:
    """A rerun for a past date does not touch what a later run planned."""
    manual_holds(warehouse)
    make_marts(warehouse, [])
    contacted(warehouse, day=AS_OF + dt.timedelta(days=3), status="planned")
    a_raw_fact(warehouse, "payments", loaded_at=AFTER, received_date="2026-04-05")
    assert cancelled(warehouse) == {}


def test_a_crashed_runs_sending_email_is_maybe_sent_and_a_letter_is_planned_again(
    warehouse,
) -> None:
    email = contacted(warehouse, stage="reminder_1", day=AS_OF, status="sending")
    letter = contacted(warehouse, stage="final_notice", day=AS_OF, status="sending")
    assert recover_interrupted(warehouse, "next-run") == {"maybe_sent": 1, "sent": 0, "planned": 1}
    rows = dict(warehouse.execute("select action_key, status from ops.action_ledger").fetchall())
    assert rows == {email: "maybe_sent", letter: "planned"}
    log = warehouse.execute("select to_status, reason from ops.action_log order by 1").fetchall()
    assert log == [
        ("maybe_sent", "interrupted_while_sending"),
        ("planned", "interrupted_while_sending"),
    ]


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        pytest.param(a_stage("reminder_1", stage_entered_date=AS_OF - dt.timedelta(days=1)), {},
                     id="still in the same stay: sent"),
        pytest.param(a_stage("reminder_2"), {("A1", "email"): "no_longer_in_stage"},
                     id="moved up since: the old stage's contact is not sent"),
        pytest.param(a_stage("reminder_1", stage_entered_date=AS_OF - dt.timedelta(days=1),
                             is_held=True), {("A1", "email"): "no_longer_in_stage"},
                     id="held since"),
        pytest.param(None, {("A1", "email"): "no_longer_in_stage"}, id="paid off since"),
    ],
)  # fmt: skip
def test_a_contact_planned_by_an_earlier_run_goes_only_while_the_stay_lasts(
    warehouse, today: dict | None, expected: dict
) -> None:
    manual_holds(warehouse)
    make_marts(warehouse, [today] if today else [])
    contacted(warehouse, stage="reminder_1", day=AS_OF - dt.timedelta(days=1), status="planned")
    assert cancelled(warehouse) == expected


def test_a_letter_whose_manifest_was_written_before_the_crash_is_sent_not_printed_again(
    warehouse, tmp_path
) -> None:
    from flows.lib.printing import note_hand_off

    listed = contacted(warehouse, stage="final_notice", day=AS_OF, status="sending")
    unlisted = contacted(warehouse, account_id="A2", stage="final_notice", day=AS_OF,
                         status="sending")  # fmt: skip
    manifest = tmp_path / "print_manifest_run1.csv"
    note_hand_off(
        warehouse, {key: (tmp_path / f"{key}.pdf", manifest) for key in (listed, unlisted)}
    )
    manifest.write_text(f"letter_id,account_id\n{listed},A1\n", encoding="utf-8")
    assert recover_interrupted(warehouse, "next-run") == {"maybe_sent": 0, "sent": 1, "planned": 1}
    rows = dict(warehouse.execute("select action_key, status from ops.action_ledger").fetchall())
    assert rows == {listed: "sent", unlisted: "planned"}


def test_a_placement_since_planning_cancels_the_internal_contact(planned) -> None:
    planned.execute(
        "insert into ops.placements (placement_id, account_id, customer_id, agency_id, status, "
        "placed_date, placed_run_id, currency, placed_balance, commission_rate) values "
        "('p1', 'A1', 'C1', 'summit', 'open', '2026-03-31', 'r0', 'USD', 120.00, 0.28)"
    )
    assert cancelled(planned) == {
        ("A1", "email"): "placed_with_agency",
        ("A1", "letter"): "placed_with_agency",
    }
