"""The data gates: each check stops the run when its data is broken, and names itself."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from flows.lib.dbt_build import build_warehouse
from flows.lib.gate_checks import CHECKS
from flows.lib.gates import EXPECTATIONS_DIR, GateFailed, run_gate
from flows.lib.loader import load_batch
from flows.lib.volume_breaker import VolumeRule, check_volumes
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = dt.date(2026, 3, 31)
GOOD = {
    "customers": [row("customers")],
    "accounts": [row("accounts", account_id="A1"), row("accounts", account_id="A2")],
    "invoices": [
        row("invoices", invoice_id="I1", account_id="A1", due_date="2026-02-01"),
        row("invoices", invoice_id="I2", account_id="A2", due_date="2026-03-25"),
    ],
    "payments": [row("payments", payment_id="P1", account_id="A1", received_date="2026-03-28")],
    "adjustments": [
        row("adjustments", adjustment_id="F1", account_id="A1", effective_date="2026-03-01")
    ],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gates")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    load_batch(connection, write_batch(root / "batch", **GOOD))
    connection.close()
    build_warehouse(warehouse, root / "state", AS_OF)
    return warehouse


@pytest.fixture
def warehouse(built: Path, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built, copy)
    connection = open_warehouse(copy)
    yield connection
    connection.close()


def gate(connection: duckdb.DuckDBPyConnection, name: str):
    return run_gate(connection, name, AS_OF, run_id="test-run", freshness_days=7)


def test_the_suites_hold_one_expectation_per_check() -> None:
    for name in ("gate_raw", "gate_warehouse"):
        suite = json.loads((EXPECTATIONS_DIR / "expectations" / f"{name}.json").read_text())
        in_suite = sorted(e["meta"]["check"] for e in suite["expectations"])
        assert in_suite == sorted(c.name for c in CHECKS if c.gate == name)


def test_a_clean_warehouse_passes_and_the_results_are_kept(warehouse) -> None:
    raw = gate(warehouse, "gate_raw")
    marts = gate(warehouse, "gate_warehouse")
    assert raw.success and marts.success
    stored = warehouse.execute(
        "select gate, count(*), bool_and(success) from ops.gate_results group by 1 order by 1"
    ).fetchall()
    assert stored == [("gate_raw", 7, True), ("gate_warehouse", 5, True)]


BREAKERS = [
    # (gate, check, SQL that breaks it: what a bug or a hand edit could do)
    (
        "gate_raw",
        "keys_unique",
        "insert into raw.invoices select * replace (_line_number + 0 as _line_number) from raw.invoices where invoice_id = 'I1'",
    ),
    (
        "gate_raw",
        "required_fields_present",
        "update raw.invoices set invoice_number = null where invoice_id = 'I1'",
    ),
    ("gate_raw", "enums_known", "update raw.payments set method = 'barter'"),
    (
        "gate_raw",
        "due_date_not_before_issue_date",
        "update raw.invoices set due_date = issue_date - 1 where invoice_id = 'I2'",
    ),
    ("gate_raw", "amounts_positive_with_two_decimals", "update raw.adjustments set amount = 0"),
    (
        "gate_raw",
        "currencies_match_accounts",
        "update raw.accounts set currency = 'EUR' where account_id = 'A2'",
    ),
    ("gate_raw", "payments_fresh", "update raw.payments set received_date = date '2026-01-01'"),
    (
        "gate_warehouse",
        "open_amounts_not_negative",
        "update marts.fct_invoice_aging set open_amount = -1",
    ),
    (
        "gate_warehouse",
        "buckets_sum_to_total_open",
        "update marts.fct_account_aging set current = current + 1",
    ),
    (
        "gate_warehouse",
        "ledger_reconciles",
        "update marts.fct_account_aging set total_open = total_open + 1",
    ),
    (
        "gate_warehouse",
        "one_stage_per_account",
        "delete from marts.fct_account_stage_history where account_id = 'A1'",
    ),
    (
        "gate_warehouse",
        "held_accounts_not_advanced",
        "update marts.fct_account_stage_history set is_held = true, previous_stage = 'none', stage = 'reminder_1', stage_entered_date = as_of_date where account_id = 'A1'",
    ),
]


@pytest.mark.parametrize(("gate_name", "check", "breaker"), BREAKERS, ids=[b[1] for b in BREAKERS])
def test_each_check_stops_the_run_and_names_itself(
    warehouse, gate_name: str, check: str, breaker: str
) -> None:
    warehouse.execute(breaker)
    with pytest.raises(GateFailed) as failed:
        gate(warehouse, gate_name)
    message = str(failed.value)
    assert f"{gate_name} failed: nothing will be sent" in message
    assert f"  {check}: " in message and "Sample: [{" in message
    failing = warehouse.execute(
        "select check_name from ops.gate_results where gate = ? and not success", [gate_name]
    ).fetchall()
    assert (check,) in failing


# --- the volume circuit breaker -------------------------------------------------------------

RULE = VolumeRule(factor=3.0, min_actions=50, trailing_runs=7)


def earlier_runs(connection: duckdb.DuckDBPyConnection, emails: list[int]) -> None:
    for days_back, count in enumerate(reversed(emails), start=1):
        check_volumes(
            connection,
            AS_OF - dt.timedelta(days=days_back),
            RULE,
            run_id=f"old-{days_back}",
            override=False,
            planned={"email": count},
        )


def test_normal_variation_passes(warehouse) -> None:
    earlier_runs(warehouse, [100, 120, 90, 110, 130])
    outcome = check_volumes(
        warehouse, AS_OF, RULE, run_id="today", override=False, planned={"email": 180}
    )
    assert outcome.success


def test_a_fivefold_spike_halts_the_run(warehouse) -> None:
    earlier_runs(warehouse, [100, 120, 90, 110, 130])
    with pytest.raises(GateFailed, match="planned_email: 550 offending") as failed:
        check_volumes(
            warehouse, AS_OF, RULE, run_id="today", override=False, planned={"email": 550}
        )
    assert "--allow-volume-spike" in str(failed.value)


def test_an_override_lets_the_spike_through_and_is_recorded(warehouse) -> None:
    earlier_runs(warehouse, [100, 120, 90, 110, 130])
    outcome = check_volumes(
        warehouse, AS_OF, RULE, run_id="today", override=True, planned={"email": 550}
    )
    assert outcome.success
    recorded = warehouse.execute(
        "select check_name, success, overridden from ops.gate_results where run_id = 'today'"
    ).fetchall()
    assert recorded == [("planned_email", True, True)]


def test_too_little_history_or_small_numbers_never_halt(warehouse) -> None:
    earlier_runs(warehouse, [2, 3])  # two runs only
    assert check_volumes(
        warehouse, AS_OF, RULE, run_id="a", override=False, planned={"email": 900}
    ).success
    earlier_runs(warehouse, [2, 3, 2, 3])
    assert check_volumes(
        warehouse, AS_OF, RULE, run_id="b", override=False, planned={"email": 40}
    ).success


def test_a_halted_spike_does_not_raise_the_median(warehouse) -> None:
    earlier_runs(warehouse, [100, 120, 90, 110, 130])
    for days_ahead in range(6):  # the spike goes on; nobody lets it through
        with pytest.raises(GateFailed):
            check_volumes(
                warehouse,
                AS_OF + dt.timedelta(days=days_ahead),
                RULE,
                run_id=f"spike-{days_ahead}",
                override=False,
                planned={"email": 550},
            )
    recorded = warehouse.execute("select max(planned) from ops.run_volumes").fetchall()
    assert recorded == [(130,)]


def test_freshness_is_not_asked_before_the_first_invoice(warehouse) -> None:
    outcome = run_gate(warehouse, "gate_raw", dt.date(2025, 1, 1), run_id="early", freshness_days=7)
    assert outcome.success


def test_gate_two_alone_needs_marts_built_for_its_date(warehouse) -> None:
    from flows.lib.gates import record_build, require_marts_for

    with pytest.raises(
        GateFailed,
        match=re.escape(
            "the marts were never built. Build them first with `recoup run --as-of 2026-03-31`"
        ),
    ):
        require_marts_for(warehouse, AS_OF)
    record_build(warehouse, AS_OF)
    require_marts_for(warehouse, AS_OF)
    with pytest.raises(GateFailed, match="cannot check 2026-04-01: the marts hold 2026-03-31"):
        require_marts_for(warehouse, AS_OF + dt.timedelta(days=1))
