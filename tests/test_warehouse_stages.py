"""SPEC §4 in the warehouse: escalation stages, holds, plans, and replaying a past date.

One batch, built by dbt for a sequence of run dates as the daily run would."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.lib.dbt_build import build_warehouse
from flows.lib.loader import load_batch
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D0 = dt.date(2026, 3, 31)  # a Tuesday
RUN_DATES = [
    D0,
    D0 + dt.timedelta(days=1),
    D0 + dt.timedelta(days=10),
    D0 + dt.timedelta(days=11),
    D0 + dt.timedelta(days=24),
]


def day(offset: int) -> str:
    return (D0 + dt.timedelta(days=offset)).isoformat()


def account(account_id: str, segment: str = "residential") -> dict:
    return row("accounts", account_id=account_id, segment=segment)


def invoice(invoice_id: str, account_id: str, due_offset: int, amount: str = "100.00") -> dict:
    return row(
        "invoices",
        invoice_id=invoice_id,
        account_id=account_id,
        amount=amount,
        issue_date="2025-06-01",
        due_date=day(due_offset),
    )


BATCH = {
    "customers": [row("customers", customer_id="C1"), row("customers", customer_id="C2")],
    "accounts": [
        account("STEP"),
        account("PAID"),
        account("PARTIAL"),
        account("BANKRUPT"),
        account("PLAN"),
        account("DISPUTED"),
        account("SMALL"),
        account("COURTESY"),
        account("ENTERPRISE", "enterprise"),
        row("accounts", account_id="OTHER-CUSTOMER", customer_id="C2"),
    ],
    "invoices": [
        invoice("STEP-1", "STEP", -100),
        invoice("PAID-1", "PAID", -40),
        invoice("PARTIAL-1", "PARTIAL", -40),
        invoice("PARTIAL-2", "PARTIAL", -5),
        invoice("BANKRUPT-1", "BANKRUPT", -100),
        invoice("PLAN-1", "PLAN", -50),
        invoice("DISPUTED-1", "DISPUTED", -40),
        invoice("SMALL-1", "SMALL", -40, amount="5.00"),
        invoice("COURTESY-1", "COURTESY", 2),
        invoice("ENTERPRISE-1", "ENTERPRISE", -4),  # Friday 2026-03-27: 2 business days before D0
        invoice("OTHER-1", "OTHER-CUSTOMER", -100),
    ],
    "payments": [
        row(
            "payments",
            payment_id="PAID-P",
            account_id="PAID",
            amount="100.00",
            received_date=day(1),
        ),
        row(
            "payments",
            payment_id="PARTIAL-P",
            account_id="PARTIAL",
            amount="100.00",
            received_date=day(1),
        ),
    ],
    "disputes": [
        row(
            "disputes",
            dispute_id="D1",
            account_id="DISPUTED",
            invoice_id="DISPUTED-1",
            opened_date=day(-20),
        )
    ],
    "payment_plans": [
        row(
            "payment_plans",
            plan_id="PL1",
            account_id="PLAN",
            kind="promise_to_pay",
            installment_no="1",
            due_date=day(5),
            amount="100.00",
            created_date=day(-5),
        ),
    ],
    "account_flags": [
        row(
            "account_flags",
            customer_id="C1",
            account_id="BANKRUPT",
            flag="bankruptcy",
            start_date=day(-200),
        ),
        row(
            "account_flags",
            customer_id="C2",
            account_id="",
            flag="do_not_call",
            start_date=day(-10),
        ),
    ],
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("stages")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    assert load_batch(connection, write_batch(root / "batch", **BATCH)).rows_quarantined == 0
    connection.close()
    for run_date in RUN_DATES:
        build_warehouse(warehouse, root / "state", run_date)
    return {"warehouse": warehouse, "state": root / "state", "stages": read_history(warehouse)}


def read_history(warehouse) -> dict:
    connection = open_warehouse(warehouse, read_only=True)
    cursor = connection.execute(
        "select * from marts.fct_account_stage_history order by as_of_date, account_id"
    )
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    connection.close()
    return {(r["account_id"], r["as_of_date"]): r for r in rows}


def stage(history: dict, account_id: str, offset: int) -> str | None:
    found = history["stages"].get((account_id, D0 + dt.timedelta(days=offset)))
    return found["stage"] if found else None


def test_a_late_account_climbs_one_unskippable_stage_at_a_time(history) -> None:
    # 100 days late matches agency placement, but the final notice and the pre-placement
    # notice may not be skipped, and each waits the policy's minimum stay
    assert [stage(history, "STEP", offset) for offset in (0, 1, 10, 11, 24)] == [
        "final_notice",
        "final_notice",
        "pre_placement",
        "pre_placement",
        "agency_placement",
    ]
    first = history["stages"][("STEP", D0)]
    assert (first["highest_matching_stage_order"], first["previous_stage"]) == (7, None)
    assert history["stages"][("STEP", D0 + dt.timedelta(days=11))]["days_in_stage"] == 1


def test_payment_in_full_leaves_the_ladder_and_a_partial_payment_steps_down(history) -> None:
    assert stage(history, "PAID", 0) == "final_notice"
    assert stage(history, "PAID", 1) is None  # nothing open: not in the aging any more
    assert stage(history, "PARTIAL", 0) == "final_notice"
    assert (
        stage(history, "PARTIAL", 1) == "reminder_1"
    )  # the oldest invoice is paid; 6 days late now


def test_holds_stop_escalation_and_say_why(history) -> None:
    bankrupt = history["stages"][("BANKRUPT", D0)]
    assert (bankrupt["stage"], bankrupt["is_held"], bankrupt["hold_reason"]) == (
        "none",
        True,
        "bankruptcy",
    )
    assert bankrupt["next_action_due_date"] is None
    disputed = history["stages"][("DISPUTED", D0)]
    assert (disputed["is_held"], disputed["hold_reason"], disputed["collectible_amount"]) == (
        True,
        "dispute",
        0,
    )


def test_a_promise_holds_until_it_breaks_then_the_ladder_resumes(history) -> None:
    on_time = history["stages"][("PLAN", D0 + dt.timedelta(days=10))]  # due day 5 + 5 days grace
    assert (on_time["is_held"], on_time["hold_reason"], on_time["stage"]) == (
        True,
        "promise_to_pay",
        "none",
    )
    broken = history["stages"][("PLAN", D0 + dt.timedelta(days=11))]
    assert (broken["is_held"], broken["stage"]) == (False, "final_notice")


def test_small_balances_courtesy_reminders_and_business_days(history) -> None:
    assert stage(history, "SMALL", 0) == "none"  # 5.00 USD is below the 10.00 minimum
    assert stage(history, "COURTESY", 0) == "courtesy_reminder"  # due in 2 days
    enterprise = history["stages"][("ENTERPRISE", D0)]
    assert enterprise["days_past_oldest_collectible_due"] == 4
    assert enterprise["business_days_past_oldest_collectible_due"] == 2  # Monday and Tuesday
    assert enterprise["stage"] == "reminder_1"


def test_customer_wide_flags_restrict_every_account_of_the_customer(history) -> None:
    other = history["stages"][("OTHER-CUSTOMER", D0)]
    assert other["contact_restrictions"] == "do_not_call" and not other["is_held"]


def test_replaying_a_past_date_reproduces_it_and_leaves_later_days_alone(history) -> None:
    replayed_day = D0 + dt.timedelta(days=10)
    build_warehouse(history["warehouse"], history["state"], replayed_day)
    after = read_history(history["warehouse"])
    assert after == history["stages"]


def test_the_stage_mart_is_the_last_runs_slice(history) -> None:
    connection = open_warehouse(history["warehouse"], read_only=True)
    dates = connection.execute("select distinct as_of_date from marts.fct_account_stage").fetchall()
    connection.close()
    assert len(dates) == 1  # only the date of the latest build


def test_dbt_docs_generate_works(history) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from flows.lib.dbt_build import DBT_PROJECT

    target = history["state"] / "docs"
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "docs",
            "generate",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(target),
            "--log-path",
            str(target),
        ],
        env={**os.environ, "RECOUP_WAREHOUSE_PATH": str(history["warehouse"])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:]
    catalog = json.loads((target / "catalog.json").read_text())
    assert "model.recoup.fct_account_aging" in catalog["nodes"]


def small_warehouse(root, **batch) -> object:
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    load_batch(connection, write_batch(root / "b1", **batch))
    connection.close()
    return warehouse


def accounts_on(warehouse, table: str, day: dt.date) -> list[str]:
    connection = open_warehouse(warehouse, read_only=True)
    found = connection.execute(
        f"select account_id from marts.{table} where as_of_date = ? order by 1", [day]
    ).fetchall()
    connection.close()
    return [account_id for (account_id,) in found]


def test_a_rerun_that_now_finds_fewer_accounts_replaces_the_whole_day(tmp_path) -> None:
    warehouse = small_warehouse(
        tmp_path,
        customers=[row("customers")],
        accounts=[account("E"), account("F")],
        invoices=[invoice("E1", "E", -20), invoice("F1", "F", -20)],
    )
    build_warehouse(warehouse, tmp_path / "state", D0)
    assert accounts_on(warehouse, "fct_account_stage_history", D0) == ["E", "F"]
    connection = open_warehouse(warehouse)  # a late payment, dated before D0, settles E
    load_batch(
        connection,
        write_batch(
            tmp_path / "b2",
            payments=[row("payments", account_id="E", amount="100.00", received_date=day(-25))],
        ),
    )
    connection.close()
    build_warehouse(warehouse, tmp_path / "state", D0)
    assert accounts_on(warehouse, "fct_account_stage_history", D0) == ["F"]
    assert accounts_on(warehouse, "fct_account_aging", D0) == ["F"]


def test_backfilling_a_missed_day_works_and_keeps_other_days(tmp_path) -> None:
    warehouse = small_warehouse(
        tmp_path,
        customers=[row("customers")],
        accounts=[account("H")],
        invoices=[invoice("H1", "H", -20), invoice("H2", "H", 0)],
        payments=[row("payments", account_id="H", amount="100.00", received_date=day(1))],
        account_flags=[row("account_flags", account_id="H", flag="bankruptcy", start_date=day(2))],
    )
    state = tmp_path / "state"
    build_warehouse(warehouse, state, D0)
    build_warehouse(warehouse, state, D0 + dt.timedelta(days=2))
    before = read_history(warehouse)
    build_warehouse(warehouse, state, D0 + dt.timedelta(days=1))  # the day the run was skipped
    after = read_history(warehouse)
    assert {
        key: value for key, value in after.items() if key[1] != D0 + dt.timedelta(days=1)
    } == before
    assert accounts_on(warehouse, "fct_account_aging", D0) == ["H"]  # the aging keeps every day


def test_kpis_roll_rates_and_cure_rates_over_the_period(history) -> None:
    later = D0 + dt.timedelta(days=31)  # the period (30 days) starts from the run of D0 + 1
    build_warehouse(history["warehouse"], history["state"], later)
    connection = open_warehouse(history["warehouse"], read_only=True)
    rolls = connection.execute(
        "select from_date, from_bucket, to_bucket, accounts from marts.fct_roll_rates "
        "where from_bucket = '91_120'"
    ).fetchall()
    kpis = connection.execute(
        "select beginning_run_date, dso_days, collection_effectiveness_index "
        "from marts.fct_collection_kpis where currency = 'USD'"
    ).fetchall()
    cures = connection.execute(
        "select stage, accounts, cured from marts.fct_stage_cure_rates"
    ).fetchall()
    connection.close()
    start = D0 + dt.timedelta(days=1)
    # STEP, BANKRUPT and OTHER-CUSTOMER were 101 days late, now 131
    assert rolls == [(start, "91_120", "121_150", 3)]
    [(beginning, dso, cei)] = kpis
    assert beginning == start and dso is None and cei is not None  # no invoice issued in the period
    assert ("final_notice", 2, 0) in cures  # nobody paid
