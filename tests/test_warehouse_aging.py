"""SPEC §3 in the warehouse: payment application, aging and disputes, built by dbt.

One batch holds a small account per edge case (so dbt runs once), with the expected numbers
written out; then the demo data is checked against an independent Python reading of §3.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.dbt_build import build_warehouse
from flows.lib.demo_data import generate_demo_export
from flows.lib.loader import load_batch
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch
from tests.reference_aging import reference_account_aging

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = dt.date(2026, 3, 31)


def day(offset: int) -> str:
    """The date `offset` days before the as-of date."""
    return (AS_OF - dt.timedelta(days=offset)).isoformat()


def account(account_id: str, currency: str = "USD", customer_id: str = "C1") -> dict:
    return row("accounts", account_id=account_id, customer_id=customer_id, currency=currency)


def invoice(
    invoice_id: str,
    account_id: str,
    amount: str,
    due: str,
    issued: str | None = None,
    currency: str = "USD",
) -> dict:
    return row(
        "invoices",
        invoice_id=invoice_id,
        account_id=account_id,
        amount=amount,
        due_date=due,
        issue_date=issued or "2025-01-01",
        currency=currency,
    )


def payment(
    payment_id: str,
    account_id: str,
    amount: str,
    received: str,
    invoice_id: str = "",
    reverses: str = "",
    currency: str = "USD",
) -> dict:
    return row(
        "payments",
        payment_id=payment_id,
        account_id=account_id,
        amount=amount,
        received_date=received,
        invoice_id=invoice_id,
        reverses_payment_id=reverses,
        currency=currency,
    )


def adjustment(
    adjustment_id: str,
    account_id: str,
    kind: str,
    amount: str,
    effective: str,
    invoice_id: str = "",
) -> dict:
    return row(
        "adjustments",
        adjustment_id=adjustment_id,
        account_id=account_id,
        kind=kind,
        amount=amount,
        effective_date=effective,
        invoice_id=invoice_id,
    )


def dispute(
    dispute_id: str,
    account_id: str,
    opened: str,
    invoice_id: str = "",
    amount: str = "",
    resolved: str = "",
    resolution: str = "",
) -> dict:
    return row(
        "disputes",
        dispute_id=dispute_id,
        account_id=account_id,
        invoice_id=invoice_id,
        amount=amount,
        opened_date=opened,
        resolved_date=resolved,
        resolution=resolution,
    )


BOUNDARY_DAYS = [0, 1, 30, 31, 60, 61, 90, 91, 120, 121, 150, 151, 180, 181]

SCENARIO = {
    "customers": [row("customers", customer_id="C1")],
    "accounts": [
        account("PARTIAL"),
        account("OVERPAY"),
        account("BIGPAY"),
        account("REVERSED"),
        account("REVERSED-LATER"),
        account("CREDIT-NOTE-EARLY"),
        account("FEE-ON-PAID"),
        account("REFUND-TOO-BIG"),
        account("FUTURE"),
        account("BOUNDARIES"),
        account("TWO-USD"),
        account("TWO-CAD", currency="CAD"),
        account("DISPUTE-REJECTED"),
        account("DISPUTE-PART"),
        account("DISPUTE-ACCOUNT"),
        account("FEE-ITEM"),
        account("TIE"),
        account("WRITE-OFF-BIG"),
        account("REVERSED-FIFO"),
        account("UPHELD-SHORT"),
        account("UPHELD-ACCOUNT"),
    ],
    "invoices": [
        invoice("PARTIAL-1", "PARTIAL", "100.00", day(59)),
        invoice("PARTIAL-2", "PARTIAL", "100.00", day(30)),
        invoice("OVERPAY-1", "OVERPAY", "100.00", day(30)),
        invoice("BIGPAY-1", "BIGPAY", "50.00", day(40)),
        invoice("BIGPAY-2", "BIGPAY", "50.00", day(10)),
        invoice("REVERSED-1", "REVERSED", "100.00", day(58)),
        invoice("REVERSED-LATER-1", "REVERSED-LATER", "100.00", day(58)),
        invoice(
            "CREDIT-NOTE-EARLY-1", "CREDIT-NOTE-EARLY", "100.00", "2026-04-15", issued="2026-03-15"
        ),
        invoice("FEE-ON-PAID-1", "FEE-ON-PAID", "100.00", day(58)),
        invoice("REFUND-TOO-BIG-1", "REFUND-TOO-BIG", "100.00", day(30)),
        invoice("FUTURE-1", "FUTURE", "100.00", "2026-05-05", issued="2026-04-05"),
        *[
            invoice(f"BOUNDARIES-{d:03d}", "BOUNDARIES", f"{d + 1}.00", day(d))
            for d in BOUNDARY_DAYS
        ],
        invoice("TWO-USD-1", "TWO-USD", "100.00", day(10)),
        invoice("TWO-CAD-1", "TWO-CAD", "70.00", day(10), currency="CAD"),
        invoice("DISPUTE-REJECTED-1", "DISPUTE-REJECTED", "100.00", day(58)),
        invoice("DISPUTE-PART-1", "DISPUTE-PART", "100.00", day(58)),
        invoice("DISPUTE-ACCOUNT-1", "DISPUTE-ACCOUNT", "100.00", day(58)),
        invoice("I-B", "TIE", "50.00", day(20)),
        invoice("WRITE-OFF-BIG-1", "WRITE-OFF-BIG", "100.00", day(20)),
        invoice("REVERSED-FIFO-1", "REVERSED-FIFO", "60.00", day(50)),
        invoice("REVERSED-FIFO-2", "REVERSED-FIFO", "60.00", day(20)),
        invoice("UPHELD-SHORT-1", "UPHELD-SHORT", "100.00", day(58)),
        invoice("UPHELD-ACCOUNT-1", "UPHELD-ACCOUNT", "100.00", day(58)),
    ],
    "payments": [
        payment(
            "PARTIAL-P", "PARTIAL", "150.00", day(5)
        ),  # unlinked: pays PARTIAL-1, half of PARTIAL-2
        payment("OVERPAY-P", "OVERPAY", "130.00", day(25), invoice_id="OVERPAY-1"),  # 30 excess
        payment("BIGPAY-P", "BIGPAY", "200.00", day(5)),  # more than everything owed
        payment("REVERSED-P", "REVERSED", "100.00", day(50)),
        payment("REVERSED-R", "REVERSED", "100.00", day(21), reverses="REVERSED-P"),  # NSF
        payment("REVERSED-LATER-P", "REVERSED-LATER", "100.00", day(50)),
        payment(
            "REVERSED-LATER-R",
            "REVERSED-LATER",
            "100.00",
            "2026-04-05",
            reverses="REVERSED-LATER-P",
        ),
        payment("FEE-ON-PAID-P", "FEE-ON-PAID", "100.00", day(60), invoice_id="FEE-ON-PAID-1"),
        payment("REFUND-TOO-BIG-P", "REFUND-TOO-BIG", "50.00", day(20)),
        payment(
            "FUTURE-P", "FUTURE", "20.00", day(1), invoice_id="FUTURE-1"
        ),  # invoice not issued yet
        payment("FEE-ITEM-P", "FEE-ITEM", "10.00", day(5)),
        payment("TIE-P", "TIE", "50.00", day(5)),
        payment("REVERSED-FIFO-P", "REVERSED-FIFO", "90.00", day(40)),  # paid item 1 and half of 2
        payment("REVERSED-FIFO-R", "REVERSED-FIFO", "90.00", day(10), reverses="REVERSED-FIFO-P"),
    ],
    "adjustments": [
        adjustment(
            "CN-SHORT", "UPHELD-SHORT", "credit_note", "10.00", day(25), invoice_id="UPHELD-SHORT-1"
        ),
        adjustment("CN-ACCOUNT", "UPHELD-ACCOUNT", "credit_note", "60.00", day(25)),
        adjustment(
            "CN-EARLY",
            "CREDIT-NOTE-EARLY",
            "credit_note",
            "40.00",
            "2026-03-20",
            invoice_id="CREDIT-NOTE-EARLY-1",
        ),
        adjustment("FEE-PAID", "FEE-ON-PAID", "fee", "15.00", day(44), invoice_id="FEE-ON-PAID-1"),
        adjustment("REFUND-BIG", "REFUND-TOO-BIG", "refund", "80.00", day(10)),
        adjustment("FEE-ALONE", "FEE-ITEM", "fee", "20.00", day(30)),  # an open item of its own
        adjustment(
            "ADJ-A", "TIE", "interest", "50.00", day(20)
        ),  # same date as I-B; 'ADJ-A' < 'I-B'
        adjustment(
            "WO-BIG", "WRITE-OFF-BIG", "write_off", "150.00", day(10), invoice_id="WRITE-OFF-BIG-1"
        ),
    ],
    "disputes": [
        # upheld for 60 but credited 10 only: the discrepancy queue must see it
        dispute(
            "UP-SHORT",
            "UPHELD-SHORT",
            day(50),
            invoice_id="UPHELD-SHORT-1",
            amount="60.00",
            resolved=day(20),
            resolution="upheld",
        ),
        # upheld at account level and settled by an unlinked credit note of the full 60
        dispute(
            "UP-ACCOUNT",
            "UPHELD-ACCOUNT",
            day(50),
            amount="60.00",
            resolved=day(20),
            resolution="upheld",
        ),
        dispute(
            "DR",
            "DISPUTE-REJECTED",
            day(50),
            invoice_id="DISPUTE-REJECTED-1",
            resolved=day(16),
            resolution="rejected",
        ),
        dispute("DP", "DISPUTE-PART", day(50), invoice_id="DISPUTE-PART-1", amount="30.00"),
        dispute("DA", "DISPUTE-ACCOUNT", day(50)),  # account level, no amount: the whole balance
    ],
}

EXPECTED = {
    # account: (total_open, disputed, credit_balance, max_days_past_due, {bucket: amount})
    "PARTIAL": ("50.00", "0.00", "0.00", 30, {"dpd_1_30": "50.00"}),
    "OVERPAY": ("0.00", "0.00", "30.00", 0, {}),
    "BIGPAY": ("0.00", "0.00", "100.00", 0, {}),
    "REVERSED": ("100.00", "0.00", "0.00", 58, {"dpd_31_60": "100.00"}),
    "CREDIT-NOTE-EARLY": ("60.00", "0.00", "0.00", 0, {"current": "60.00"}),
    "FEE-ON-PAID": ("15.00", "0.00", "0.00", 58, {"dpd_31_60": "15.00"}),
    "REFUND-TOO-BIG": ("100.00", "0.00", "0.00", 30, {"dpd_1_30": "100.00"}),
    "FUTURE": ("0.00", "0.00", "20.00", 0, {}),
    "TWO-USD": ("100.00", "0.00", "0.00", 10, {"dpd_1_30": "100.00"}),
    "TWO-CAD": ("70.00", "0.00", "0.00", 10, {"dpd_1_30": "70.00"}),
    "DISPUTE-REJECTED": ("100.00", "0.00", "0.00", 58, {"dpd_31_60": "100.00"}),
    "DISPUTE-PART": ("100.00", "30.00", "0.00", 58, {"dpd_31_60": "100.00"}),
    "DISPUTE-ACCOUNT": ("100.00", "100.00", "0.00", 58, {"dpd_31_60": "100.00"}),
    "FEE-ITEM": ("10.00", "0.00", "0.00", 30, {"dpd_1_30": "10.00"}),
    "TIE": ("50.00", "0.00", "0.00", 20, {"dpd_1_30": "50.00"}),
    "WRITE-OFF-BIG": ("0.00", "0.00", "50.00", 0, {}),
    "REVERSED-FIFO": ("120.00", "0.00", "0.00", 50, {"dpd_31_60": "60.00", "dpd_1_30": "60.00"}),
}
BUCKET_COLUMNS = [
    "current",
    "dpd_1_30",
    "dpd_31_60",
    "dpd_61_90",
    "dpd_91_120",
    "dpd_121_150",
    "dpd_151_180",
    "dpd_181_plus",
]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp("scenario")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    outcome = load_batch(connection, write_batch(root / "batch", **SCENARIO))
    assert outcome.rows_quarantined == 0
    connection.close()
    build_warehouse(warehouse, root / "state", AS_OF)
    connection = open_warehouse(warehouse, read_only=True)
    yield connection
    connection.close()


def aging_row(connection: duckdb.DuckDBPyConnection, account_id: str) -> dict | None:
    cursor = connection.execute(
        "select * from marts.fct_account_aging where account_id = ? and as_of_date = ?",
        [account_id, AS_OF],
    )
    names = [column[0] for column in cursor.description]
    found = cursor.fetchall()
    return dict(zip(names, found[0], strict=True)) if found else None


@pytest.mark.parametrize("account_id", list(EXPECTED))
def test_account_aging_edge_cases(scenario, account_id: str) -> None:
    total, disputed, credit, max_dpd, buckets = EXPECTED[account_id]
    got = aging_row(scenario, account_id)
    assert got is not None, f"{account_id} missing from fct_account_aging"
    assert got["total_open"] == Decimal(total)
    assert got["disputed_amount"] == Decimal(disputed)
    assert got["collectible_amount"] == Decimal(total) - Decimal(disputed)
    assert got["credit_balance"] == Decimal(credit)
    assert got["max_days_past_due"] == max_dpd
    assert {c: got[c] for c in BUCKET_COLUMNS if got[c]} == {
        c: Decimal(v) for c, v in buckets.items()
    }


def test_a_reversal_after_the_as_of_date_is_ignored(scenario) -> None:
    assert aging_row(scenario, "REVERSED-LATER") is None  # paid, nothing open, no credit


def test_a_refund_beyond_the_credit_is_flagged_never_negative(scenario) -> None:
    got = aging_row(scenario, "REFUND-TOO-BIG")
    assert got["refund_shortfall"] == Decimal("30.00")
    assert (
        scenario.execute("select min(credit_balance) from marts.fct_account_aging").fetchall()[0][0]
        >= 0
    )


def test_every_bucket_boundary(scenario) -> None:
    items = dict(
        scenario.execute(
            "select invoice_id, aging_bucket from marts.fct_invoice_aging where account_id = 'BOUNDARIES'"
        ).fetchall()
    )
    expected = {
        0: "current",
        1: "1_30",
        30: "1_30",
        31: "31_60",
        60: "31_60",
        61: "61_90",
        90: "61_90",
        91: "91_120",
        120: "91_120",
        121: "121_150",
        150: "121_150",
        151: "151_180",
        180: "151_180",
        181: "181_plus",
    }
    assert items == {f"BOUNDARIES-{d:03d}": bucket for d, bucket in expected.items()}
    got = aging_row(scenario, "BOUNDARIES")
    assert sum(got[c] for c in BUCKET_COLUMNS) == got["total_open"]


def test_currencies_are_never_summed_across_accounts(scenario) -> None:
    rows = scenario.execute(
        "select account_id, currency, total_open from marts.fct_account_aging "
        "where account_id in ('TWO-USD', 'TWO-CAD') order by 1"
    ).fetchall()
    assert rows == [("TWO-CAD", "CAD", Decimal("70.00")), ("TWO-USD", "USD", Decimal("100.00"))]


def test_an_upheld_dispute_needs_a_credit_note_for_its_amount(scenario) -> None:
    flags = dict(
        scenario.execute(
            "select dispute_id, upheld_without_credit_note from marts.fct_disputes "
            "where dispute_id in ('UP-SHORT', 'UP-ACCOUNT')"
        ).fetchall()
    )
    assert flags == {"UP-SHORT": True, "UP-ACCOUNT": False}


def test_the_tie_on_due_date_is_broken_by_item_id(scenario) -> None:
    open_items = scenario.execute(
        "select item_id, item_type from marts.fct_invoice_aging where account_id = 'TIE'"
    ).fetchall()
    assert open_items == [("I-B", "invoice")]  # ADJ-A sorts first and took the payment


def test_the_demo_data_matches_an_independent_reading_of_the_spec(tmp_path: Path) -> None:
    """Every account, at three as-of dates, against tests/reference_aging.py."""
    warehouse = tmp_path / "warehouse.duckdb"
    export = generate_demo_export(
        tmp_path / "batch", accounts=1_500, as_of=dt.date(2026, 11, 23), seed=11
    )
    connection = open_warehouse(warehouse)
    load_batch(connection, export.folder)
    connection.close()
    columns = [
        *BUCKET_COLUMNS,
        "total_open",
        "disputed_amount",
        "collectible_amount",
        "credit_balance",
        "oldest_due_date",
        "max_days_past_due",
        "refund_shortfall",
    ]
    for as_of in (dt.date(2026, 11, 23), dt.date(2026, 6, 30), dt.date(2025, 12, 31)):
        build_warehouse(warehouse, tmp_path / "state", as_of)
        connection = open_warehouse(warehouse, read_only=True)
        expected = reference_account_aging(connection, as_of)
        cursor = connection.execute(
            f"select account_id, {', '.join(columns)} from marts.fct_account_aging "
            "where as_of_date = ?",
            [as_of],
        )
        got = {
            values[0]: dict(zip(columns, values[1:], strict=True)) for values in cursor.fetchall()
        }
        connection.close()
        assert set(got) == set(expected), f"{as_of}: accounts differ"
        mismatched = {
            a: (got[a], expected[a])
            for a in got
            if any(got[a][c] != expected[a][c] for c in columns)
        }
        assert not mismatched, (
            f"{as_of}: {len(mismatched)} accounts differ, e.g. {next(iter(mismatched.items()))}"
        )


def test_the_dbt_unit_tests_pass(tmp_path: Path) -> None:
    """dbt's own unit tests (beside the models' YAML) on a fresh, empty warehouse."""
    warehouse = tmp_path / "warehouse.duckdb"
    open_warehouse(warehouse).close()  # the raw schema the staging views read
    build_warehouse(warehouse, tmp_path / "state", AS_OF)  # every model, on no data
    outcome = build_warehouse(warehouse, tmp_path / "state", AS_OF, unit_tests_only=True)
    assert outcome.nodes >= 3
