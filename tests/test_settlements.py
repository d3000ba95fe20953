"""Agreements recorded in recoup, through dbt: they hold the account like billing's plans, a
broken one lets the ladder resume from the stage the account had reached, a settlement holds
while it runs and settles the account for good once paid, and a paid settlement becomes one
write-off recommendation for billing, exactly once (issue 13).

One billing batch, built by dbt for two run dates (D0, then D1 = D0 + 10), as the daily run
would; the agreements are recorded through flows/lib/agreements.py in between, the way
collectors record them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from flows.lib.agreements import AgreementError, cancel_agreement, record_agreement
from flows.lib.contact_data import MartsNotForDate
from flows.lib.dbt_build import build_warehouse
from flows.lib.gates import record_build
from flows.lib.loader import load_batch
from flows.lib.planner import ContactScope
from flows.lib.settlements import WRITE_OFF_COLUMNS, recommend_write_offs, recommendation_id
from flows.lib.warehouse import open_warehouse
from tests.agreement_fixtures import aging, an_agreement, settings_for
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D0 = dt.date(2026, 3, 31)
D1 = D0 + dt.timedelta(days=10)


def day(offset: int) -> dt.date:
    return D0 + dt.timedelta(days=offset)


def invoice(account_id: str, due_offset: int, amount: str) -> dict:
    return row(
        "invoices",
        invoice_id=f"{account_id}-1",
        account_id=account_id,
        amount=amount,
        issue_date="2025-06-01",
        due_date=day(due_offset).isoformat(),
    )


def payment(account_id: str, offset: int, amount: str, number: int = 1) -> dict:
    return row(
        "payments",
        payment_id=f"{account_id}-P{number}",
        account_id=account_id,
        amount=amount,
        received_date=day(offset).isoformat(),
    )


# account: invoice (days from D0 to its due date, amount), and why it is here
ACCOUNTS = {
    "RESUME": (-100, "1000.00"),  # final notice on D0; a plan agreed on D0 + 1 breaks
    "HELD": (-40, "600.00"),  # a plan agreed before D0, its first installment paid
    "CANCELLED": (-40, "400.00"),  # a plan cancelled the day before D0
    "SETTLING": (-130, "1000.00"),  # a settlement of 800 due after D1: holds
    "SETTLED": (-200, "1000.00"),  # a settlement of 700 paid before D0: 300 to write off
    "LATE": (-100, "500.00"),  # a settlement of 450 paid on D0 + 1 and D0 + 5: 50 on D1
    "PAID-ALL": (-100, "300.00"),  # a settlement of 270, but the customer paid all 300
    "BILLING": (-20, "100.00"),  # billing's own promise
}
PAYMENTS = [
    payment("HELD", 3, "200.00"),
    payment("SETTLED", -12, "700.00"),
    payment("LATE", 1, "225.00"),
    payment("LATE", 5, "225.00", 2),
    payment("PAID-ALL", -12, "300.00"),
]
# (account, kind, agreed on, [(due, amount)]), recorded before the first build
EARLIER_AGREEMENTS = [
    ("HELD", "installment_plan", -5, [(5, "200.00"), (35, "200.00"), (65, "200.00")]),
    ("CANCELLED", "installment_plan", -10, [(5, "134.00"), (35, "133.00"), (65, "133.00")]),
    ("SETTLING", "settlement", -2, [(20, "800.00")]),
    ("SETTLED", "settlement", -20, [(-10, "700.00")]),
    ("LATE", "settlement", -5, [(1, "225.00"), (6, "225.00")]),
    ("PAID-ALL", "settlement", -20, [(-10, "270.00")]),
]


def agreement_of(account: str, kind: str, agreed: int, schedule: list[tuple[int, str]]):
    return an_agreement(
        account, kind, day(agreed), [(day(due), amount) for due, amount in schedule],
        agreement_id=f"AG-{account}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The batch, the agreements of the days before D0, the build of D0 and its write-offs, the
    plan RESUME agrees on D0 + 1, the build of D1 and its write-offs."""
    root = tmp_path_factory.mktemp("settlements")
    settings = settings_for(root / "home")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    batch = write_batch(
        root / "batch",
        customers=[row("customers")],
        accounts=[row("accounts", account_id=account) for account in ACCOUNTS],
        invoices=[invoice(account, due, amount) for account, (due, amount) in ACCOUNTS.items()],
        payments=PAYMENTS,
        payment_plans=[
            row("payment_plans", plan_id="BP1", account_id="BILLING", kind="promise_to_pay",
                due_date=day(10).isoformat(), amount="100.00", created_date=day(-3).isoformat())
        ],
    )  # fmt: skip
    assert load_batch(connection, batch).rows_quarantined == 0
    # the agreements of the days before D0 were judged on those days' aging (the balance on
    # the agreed date, and its days past due); the aging goes before dbt builds its own
    owed = {
        "HELD": ("600.00", 35),
        "CANCELLED": ("400.00", 30),
        "SETTLING": ("1000.00", 128),
        "SETTLED": ("1000.00", 180),
        "LATE": ("500.00", 95),
        "PAID-ALL": ("300.00", 80),
    }
    aging(connection, [(account, day(agreed), *owed[account])
                       for account, _, agreed, _ in EARLIER_AGREEMENTS])  # fmt: skip
    for agreement in EARLIER_AGREEMENTS:
        outcome = record_agreement(
            connection, settings, agreement_of(*agreement), recorded_by="ann"
        )
        assert outcome.policy_breaches == (), agreement
    cancel_agreement(connection, "AG-CANCELLED", day(-1), "ann")
    connection.execute("drop schema marts cascade")
    connection.close()

    build_warehouse(warehouse, root / "state", D0, variables=settings.dbt_vars())
    connection = open_warehouse(warehouse)
    record_build(connection, D0)
    days: dict[str, object] = {"D0 stages": stages_on(connection, D0)}
    days["D0 dry run"] = recommend_write_offs(connection, settings, D0, "run-0", dry_run=True)
    days["D0 after dry run"] = recommendations(connection)
    days["D0 scoped"] = recommend_write_offs(
        connection, settings, D0, "run-s", scope=ContactScope(account_ids=("PAID-ALL", "LATE"))
    )
    days["D0 after scoped"] = recommendations(connection)
    days["D0"] = recommend_write_offs(connection, settings, D0, "run-1")
    days["D0 file"] = Path(days["D0"].files[0]).read_bytes()  # type: ignore[attr-defined]
    days["D0 rerun"] = recommend_write_offs(connection, settings, D0, "run-2")
    days["D0 rerun file"] = Path(days["D0"].files[0]).read_bytes()  # type: ignore[attr-defined]
    days["D0 recommendations"] = recommendations(connection)
    # RESUME agrees a plan the day after D0, on the balance of D0 (the latest the marts hold)
    resume = an_agreement("RESUME", "installment_plan", day(1),
                          [(day(2), "400.00"), (day(32), "300.00"), (day(62), "300.00")],
                          agreement_id="AG-RESUME")  # fmt: skip
    days["RESUME agreed"] = record_agreement(connection, settings, resume, recorded_by="bob")
    connection.close()

    build_warehouse(warehouse, root / "state", D1, variables=settings.dbt_vars())
    connection = open_warehouse(warehouse)
    record_build(connection, D1)
    days["D1 stages"] = stages_on(connection, D1)
    days["D1 plans"] = dict(
        connection.execute(
            "select plan_id, (plan_source, plan_kind, plan_status) from marts.fct_payment_plans"
        ).fetchall()
    )
    days["D1"] = recommend_write_offs(connection, settings, D1, "run-3")
    days["D1 recommendations"] = recommendations(connection)
    days.update(settings=settings, warehouse=warehouse, connection=connection, out=root / "home")
    yield days
    connection.close()


def stages_on(connection, as_of: dt.date) -> dict[str, tuple]:
    rows = connection.execute(
        "select account_id, stage, is_held, hold_reason, previous_stage "
        "from marts.fct_account_stage_history where as_of_date = ?",
        [as_of],
    ).fetchall()
    return {account: tuple(values) for account, *values in rows}


def recommendations(connection) -> list[tuple]:
    return connection.execute(
        "select agreement_id, account_id, recommended_on, settled_amount, paid_amount, "
        "write_off_amount, currency, reason from ops.write_off_recommendations order by 1"
    ).fetchall()


def file_lines(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# --- holds and the ladder -------------------------------------------------------------------


def test_a_recorded_plan_holds_the_account_and_a_cancelled_one_holds_nothing(world) -> None:
    for stages in (world["D0 stages"], world["D1 stages"]):
        assert stages["HELD"][1:3] == (True, "installment_plan")
        assert stages["BILLING"][1:3] == (True, "promise_to_pay")  # billing's, as before
        assert stages["CANCELLED"][1] is False
    assert world["D0 stages"]["CANCELLED"][0] == "final_notice"  # 40 days late, not held
    assert world["D1 plans"]["AG-HELD"] == ("recoup", "installment_plan", "active")
    assert world["D1 plans"]["AG-CANCELLED"] == ("recoup", "installment_plan", "cancelled")
    assert world["D1 plans"]["BP1"] == ("billing", "promise_to_pay", "active")


def test_a_broken_plan_lets_the_ladder_resume_from_the_stage_it_had_reached(world) -> None:
    assert world["D0 stages"]["RESUME"] == ("final_notice", False, "", None)
    assert world["RESUME agreed"].balance_date == D0  # the latest aging the marts held
    # installment 1 was due on D0 + 2: unpaid after the grace days, the plan broke and holds
    # no more; the account goes on from the final notice to the pre-placement notice, where
    # an account new to the ladder would start again with the final notice
    assert world["D1 plans"]["AG-RESUME"] == ("recoup", "installment_plan", "broken")
    assert world["D1 stages"]["RESUME"] == ("pre_placement", False, "", "final_notice")


def test_a_settlement_holds_while_it_runs_and_settles_the_account_for_good(world) -> None:
    for stages in (world["D0 stages"], world["D1 stages"]):
        assert stages["SETTLING"][1:3] == (True, "settlement")
        assert stages["SETTLED"][1:3] == (True, "settled")  # 300 still open: never escalated
    assert world["D0 stages"]["LATE"][1:3] == (True, "settlement")
    assert world["D1 stages"]["LATE"][1:3] == (True, "settled")
    assert world["D1 plans"]["AG-LATE"] == ("recoup", "settlement", "kept")
    assert world["D1 plans"]["AG-SETTLING"] == ("recoup", "settlement", "active")


# --- write-off recommendations --------------------------------------------------------------


def test_a_dry_run_counts_and_writes_nothing(world) -> None:
    dry = world["D0 dry run"]
    assert (dry.kept, dry.recommended, dry.nothing_left) == (2, 1, 1)
    assert dry.amounts == {"USD": Decimal("300.00")} and dry.files == ()
    assert "would recommend 1 write-offs" in str(dry)
    assert world["D0 after dry run"] == []


def test_a_scoped_run_only_looks_at_its_accounts(world) -> None:
    scoped = world["D0 scoped"]
    assert (scoped.kept, scoped.recommended, scoped.nothing_left) == (1, 0, 1)  # PAID-ALL
    assert world["D0 after scoped"] == []


def test_a_paid_settlement_is_recommended_for_write_off_once(world) -> None:
    first, rerun = world["D0"], world["D0 rerun"]
    assert (first.recommended, first.in_file) == (1, 1)
    assert world["D0 recommendations"] == [
        ("AG-SETTLED", "SETTLED", D0, Decimal("700.00"), Decimal("700.00"), Decimal("300.00"),
         "USD", "settled_for_less"),
    ]  # fmt: skip
    path = Path(first.files[0])
    assert path == world["out"] / "out" / "adjustments" / "2026-03-31" / (
        "write_off_recommendations.csv"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [line] = file_lines(world["D0 file"])
    assert list(line) == list(WRITE_OFF_COLUMNS)
    assert line["recommendation_id"] == recommendation_id("AG-SETTLED")
    assert (line["write_off_amount"], line["settled_amount"], line["currency"]) == (
        "300.00", "700.00", "USD",
    )  # fmt: skip
    # a rerun of the day: nothing new, the same file
    assert (rerun.recommended, rerun.in_file) == (0, 1)
    assert world["D0 rerun file"] == world["D0 file"]


def test_a_settlement_kept_with_nothing_left_is_no_adjustment(world) -> None:
    assert all(row[0] != "AG-PAID-ALL" for row in world["D1 recommendations"])
    assert world["D1"].nothing_left == 0  # noted on D0: not looked at again on D1
    settled_on = (
        world["connection"]
        .execute(
            "select agreement_id, settled_on from ops.agreements where settled_on is not null "
            "order by 1"
        )
        .fetchall()
    )
    assert settled_on == [("AG-LATE", D1), ("AG-PAID-ALL", D0), ("AG-SETTLED", D0)]


def test_the_next_day_recommends_only_what_was_paid_since(world) -> None:
    # LATE was not paid up on D0 (a date before it was kept recommends nothing), it is on D1
    assert [row[0] for row in world["D0 recommendations"]] == ["AG-SETTLED"]
    later = world["D1"]
    assert (later.kept, later.recommended, later.in_file) == (1, 1, 1)
    assert world["D1 recommendations"] == [
        ("AG-LATE", "LATE", D1, Decimal("450.00"), Decimal("450.00"), Decimal("50.00"), "USD",
         "settled_for_less"),
        *world["D0 recommendations"],  # as they were
    ]  # fmt: skip
    [line] = file_lines(Path(later.files[0]).read_bytes())
    assert line["agreement_id"] == "AG-LATE"
    assert file_lines(world["D0 file"])[0]["agreement_id"] == "AG-SETTLED"  # D0's file as it was


def test_a_past_date_needs_its_own_build_and_a_recommended_settlement_stays(world) -> None:
    connection, settings = world["connection"], world["settings"]
    with pytest.raises(MartsNotForDate, match="the marts hold 2026-04-10, not 2026-03-31"):
        recommend_write_offs(connection, settings, D0, "run-4")
    with pytest.raises(AgreementError, match="write-off was recommended to billing on 2026-03-31"):
        cancel_agreement(connection, "AG-SETTLED", D1, "ann")
