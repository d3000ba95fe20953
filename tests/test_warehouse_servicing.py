"""Issue 10 in the warehouse: the payment discrepancy queue and the refund queue, built by dbt.

One crafted day holds a small account per case (each discrepancy type with a near miss that
is not flagged, and the refund eligibility edges), so dbt builds once; then one follow-up batch
fixes every case in the billing data (and the remittance data), dbt builds the same day again,
and every item has left its queue."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.dbt_build import build_warehouse
from flows.lib.loader import load_batch
from flows.lib.placements import placement_id
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = dt.date(2026, 3, 31)


def ago(days: int) -> str:
    """The date `days` days before the as-of date (negative: after it)."""
    return (AS_OF - dt.timedelta(days=days)).isoformat()


def account(account_id: str, status: str = "active", currency: str = "USD") -> dict:
    return row("accounts", account_id=account_id, status=status, currency=currency)


def invoice(invoice_id: str, account_id: str, amount: str, issued: int, due: int) -> dict:
    return row(
        "invoices",
        invoice_id=invoice_id,
        account_id=account_id,
        invoice_number=f"N-{invoice_id}",
        amount=amount,
        issue_date=ago(issued),
        due_date=ago(due),
    )


def payment(
    payment_id: str,
    account_id: str,
    amount: str,
    received: int,
    method: str = "card",
    invoice_id: str = "",
    reverses: str = "",
    currency: str = "USD",
) -> dict:
    return row(
        "payments",
        payment_id=payment_id,
        account_id=account_id,
        amount=amount,
        received_date=ago(received),
        method=method,
        invoice_id=invoice_id,
        reverses_payment_id=reverses,
        currency=currency,
    )


def adjustment(
    adjustment_id: str,
    account_id: str,
    kind: str,
    amount: str,
    effective: int,
    invoice_id: str = "",
    currency: str = "USD",
) -> dict:
    return row(
        "adjustments",
        adjustment_id=adjustment_id,
        account_id=account_id,
        kind=kind,
        amount=amount,
        effective_date=ago(effective),
        invoice_id=invoice_id,
        currency=currency,
    )


def dispute(
    dispute_id: str,
    account_id: str,
    invoice_id: str = "",
    amount: str = "",
    resolved: int | None = None,
    resolution: str = "",
) -> dict:
    return row(
        "disputes",
        dispute_id=dispute_id,
        account_id=account_id,
        invoice_id=invoice_id,
        amount=amount,
        opened_date=ago(50),
        resolved_date="" if resolved is None else ago(resolved),
        resolution=resolution,
    )


def installment(plan_id: str, account_id: str, kind: str, number: int, due: int, **dates) -> dict:
    return row(
        "payment_plans",
        plan_id=plan_id,
        account_id=account_id,
        kind=kind,
        installment_no=str(number),
        due_date=ago(due),
        amount=dates.pop("amount", "50.00"),
        **dates,
    )


ACCOUNTS = [
    # refund queue
    "R-AT",  # credit held exactly refund_hold_days (30): eligible
    "R-SHORT",  # one day short: not yet
    "R-DISPUTE",  # an open dispute: not
    "R-NEWINV",  # a new invoice larger than the credit: open items, no credit
    "R-NEWINV2",  # a new invoice smaller than the credit: the hold restarts
    "R-METHOD",  # the latest payment was reversed: the method of the one before
    "R-NOPAY",  # credit from a credit note only: check
    "R-REFUND",  # eligible; the follow-up's refund closes it
    "R-FRAUD",  # a fraud flag: not
    # discrepancies
    "EXCESS",
    "UNISSUED",
    "PLAN",
    "PLANX",
    "DUP",
    "DUP2",
    "REV",
    "REV2",
    "CUR",
    "SHORT",
    "UPHELD",
    "REMIT",
    "REMIT2",
    "REMIT3",
]

BATCH = {
    "customers": [row("customers", customer_id="C1")],
    "accounts": [account(name) for name in ACCOUNTS] + [account("CLOSED", status="closed")],
    "invoices": [
        invoice("RAT-1", "R-AT", "100.00", 90, 60),
        invoice("RSH-1", "R-SHORT", "100.00", 90, 60),
        invoice("RNI-1", "R-NEWINV", "100.00", 5, -25),
        invoice("RN2-1", "R-NEWINV2", "100.00", 5, -25),
        invoice("CL-1", "CLOSED", "100.00", 200, 170),
        invoice("EX-1", "EXCESS", "100.00", 100, 70),
        invoice("EX-2", "EXCESS", "100.00", 100, 70),
        invoice("UN-1", "UNISSUED", "100.00", -5, -35),  # issued after the as-of date
        invoice("PLN-1", "PLAN", "300.00", 120, 90),
        invoice("PX-1", "PLANX", "300.00", 120, 90),
        invoice("DU-1", "DUP", "500.00", 100, 70),
        invoice("DI-1", "DUP2", "50.00", 40, 10),
        invoice("DI-2", "DUP2", "50.00", 40, 10),
        invoice("RV-1", "REV", "500.00", 100, 70),
        invoice("RV2-1", "REV2", "500.00", 100, 70),
        invoice("UP-1", "UPHELD", "100.00", 90, 60),
        invoice("UP-2", "UPHELD", "100.00", 90, 60),
        invoice("UP-3", "UPHELD", "100.00", 90, 60),
        invoice("RM-1", "REMIT", "500.00", 100, 70),
        invoice("RM2-1", "REMIT2", "500.00", 100, 70),
        invoice("RM3-1", "REMIT3", "500.00", 100, 70),
    ],
    "payments": [
        payment("P-RAT1", "R-AT", "100.00", 45, "card"),
        payment("P-RAT2", "R-AT", "30.00", 30, "ach"),
        payment("P-RSH", "R-SHORT", "130.00", 29, "wire"),
        payment("P-RDI", "R-DISPUTE", "40.00", 60),
        payment("P-RNI", "R-NEWINV", "40.00", 60),
        payment("P-RN2", "R-NEWINV2", "200.00", 60),
        payment("P-RM1", "R-METHOD", "80.00", 70, "card"),
        payment("P-RM2", "R-METHOD", "80.00", 65, "wire"),
        payment("P-RM2R", "R-METHOD", "80.00", 40, "wire", reverses="P-RM2"),
        payment("P-RRF", "R-REFUND", "70.00", 50, "ach"),
        payment("P-RFD", "R-FRAUD", "60.00", 50),
        # closed: the old payment paid the invoice; the new one is unapplied cash
        payment("P-CL1", "CLOSED", "100.00", 150),
        payment("P-CL2", "CLOSED", "40.00", 10),
        payment("P-CL3", "CLOSED", "15.00", -2),  # after the as-of date: not a fact yet
        # EX-1 is overpaid by its second payment; EX-2's excess comes from a later credit note
        payment("P-EX1", "EXCESS", "60.00", 60, invoice_id="EX-1"),
        payment("P-EX2", "EXCESS", "60.00", 20, invoice_id="EX-1"),
        payment("P-EX3", "EXCESS", "100.00", 75, invoice_id="EX-2"),
        payment("P-UN", "UNISSUED", "100.00", 2, "ach", invoice_id="UN-1"),
        # PL-A runs from day 60 to its last due date + grace; 50 each, 150 in all
        payment("P-PL0", "PLAN", "33.00", 70),  # before the plan
        payment("P-PL1", "PLAN", "50.00", 29),  # an installment's amount
        payment("P-PL2", "PLAN", "45.00", 3),  # flagged
        payment("P-PL3", "PLAN", "150.00", 1),  # the plan's total
        payment("P-PX1", "PLANX", "80.00", 30),  # flagged: PL-B expects 100
        payment("P-PX2", "PLANX", "70.00", 10),  # after PL-B was cancelled
        payment("P-D1", "DUP", "75.00", 7, "card"),
        payment("P-D2", "DUP", "75.00", 7, "ach"),
        payment("P-D3", "DUP", "75.00", 6),  # another day
        payment("P-D4", "DUP", "75.00", 7),  # same day, but reversed
        payment("P-D4R", "DUP", "75.00", 5, reverses="P-D4"),
        payment("P-DI1", "DUP2", "50.00", 3, invoice_id="DI-1"),  # two invoices, two payments
        payment("P-DI2", "DUP2", "50.00", 3, invoice_id="DI-2"),
        payment("P-RO", "REV", "60.00", 10),
        payment("P-RR", "REV", "60.00", 12, reverses="P-RO"),  # before its original
        payment("P-RF", "REV", "30.00", -3),
        payment("P-RFR", "REV", "30.00", 1, reverses="P-RF"),  # original after the as-of date
        payment("P-RX", "REV", "20.00", 30),
        payment("P-RXR", "REV", "20.00", 20, reverses="P-RX"),
        payment("P-RXRR", "REV", "20.00", 15, reverses="P-RXR"),  # reverses a reversal
        payment("P-RN", "REV", "10.00", 20),
        payment("P-RNR", "REV", "10.00", 10, reverses="P-RN"),  # a good reversal
        payment("P-A", "REV2", "25.00", 20),
        payment("P-AR", "REV2", "25.00", 10, reverses="P-A"),
        payment("P-CUR", "CUR", "10.00", 5),
        payment("P-SH", "SHORT", "50.00", 20),
    ],
    "adjustments": [
        adjustment("ADJ-RNP", "R-NOPAY", "credit_note", "25.00", 60),
        adjustment("ADJ-EX", "EXCESS", "credit_note", "30.00", 70, invoice_id="EX-2"),
        adjustment("ADJ-CUR", "CUR", "fee", "5.00", 5),
        adjustment("ADJ-SH", "SHORT", "refund", "80.00", 10),
        adjustment("ADJ-UP2", "UPHELD", "credit_note", "40.00", 25, invoice_id="UP-2"),
    ],
    "disputes": [
        dispute("D-RDI", "R-DISPUTE"),  # account level, open
        dispute("D-UP1", "UPHELD", "UP-1", "40.00", 20, "upheld"),  # no credit note
        dispute("D-UP2", "UPHELD", "UP-2", "40.00", 20, "upheld"),  # credited
        dispute("D-UP3", "UPHELD", "UP-3", "40.00", 20, "rejected"),
    ],
    "payment_plans": [
        installment("PL-A", "PLAN", "installment_plan", 1, 30, created_date=ago(60)),
        installment("PL-A", "PLAN", "installment_plan", 2, 0, created_date=ago(60)),
        installment("PL-A", "PLAN", "installment_plan", 3, -30, created_date=ago(60)),
        installment(
            "PL-B",
            "PLANX",
            "promise_to_pay",
            1,
            5,
            amount="100.00",
            created_date=ago(40),
            cancelled_date=ago(20),
        ),
    ],
    "account_flags": [
        row(
            "account_flags",
            customer_id="C1",
            account_id="R-FRAUD",
            flag="fraud",
            start_date=ago(100),
        )
    ],
}

# loaded before the first build: a later batch changes what earlier rows were checked against
LATER_BATCH = {
    "accounts": [account("CUR", currency="EUR")],
    "payments": [payment("P-A", "REV2", "35.00", 20)],
}

# the billing export corrects every case
FIX_BATCH = {
    "invoices": [invoice("UN-1", "UNISSUED", "100.00", 10, -20)],
    "payments": [
        payment("P-EX2", "EXCESS", "40.00", 20, invoice_id="EX-1"),
        payment("P-PL2", "PLAN", "50.00", 3),
        payment("P-PX1R", "PLANX", "80.00", 0, reverses="P-PX1"),
        payment("P-D2R", "DUP", "75.00", 0, "ach", reverses="P-D2"),
        payment("P-RR", "REV", "60.00", 9, reverses="P-RO"),
        payment("P-RF", "REV", "30.00", 2),
        payment("P-RXRR", "REV", "20.00", 15),  # a re-presented payment, not a reversal
        payment("P-A", "REV2", "25.00", 20),
        payment("P-CUR", "CUR", "10.00", 5, currency="EUR"),
    ],
    "adjustments": [
        adjustment("ADJ-CL", "CLOSED", "refund", "40.00", 0),
        adjustment("ADJ-RRF", "R-REFUND", "refund", "70.00", 0),  # exactly the credit
        adjustment("ADJ-CUR", "CUR", "fee", "5.00", 5, currency="EUR"),
        adjustment("ADJ-SH", "SHORT", "refund", "50.00", 10),
        adjustment("ADJ-UP1", "UPHELD", "credit_note", "40.00", 0, invoice_id="UP-1"),
    ],
}


def place(
    connection: duckdb.DuckDBPyConnection,
    account_id: str,
    currency: str = "USD",
    recalled: str | None = None,
) -> str:
    """One placement row as the placement step writes it; returns its id."""
    placed = AS_OF - dt.timedelta(days=60)
    identifier = placement_id(account_id, "northwind", placed)
    connection.execute(
        """
        insert into ops.placements (placement_id, account_id, customer_id, agency_id, status,
            placed_date, placed_run_id, recalled_date, recall_reason, currency, placed_balance,
            commission_rate)
        values (?, ?, 'C1', 'northwind', ?, ?, 'test-run', ?, ?, ?, 500.00, 0.25)
        """,
        [
            identifier,
            account_id,
            "recalled" if recalled else "open",
            placed,
            recalled,
            "paid" if recalled else None,
            currency,
        ],
    )
    return identifier


def remit(
    connection: duckdb.DuckDBPyConnection, remittance_id: str, account_id: str, placement: str, **kw
) -> None:
    """One remittance line as the import writes it (the import's own checks are tested in
    tests/test_remittances.py; a line it lets through can still disagree with the account)."""
    connection.execute(
        """
        insert into ops.remittances values (?, 'northwind', ?, ?, ?, ?, ?, 0.00, ?,
            'northwind.csv', 2, now())
        """,
        [
            f"northwind:{remittance_id}",
            remittance_id,
            placement,
            account_id,
            ago(10),
            Decimal(kw.get("amount", "30.00")),
            kw.get("currency", "USD"),
        ],
    )


def read(warehouse: Path, table: str, order: str) -> list[dict]:
    connection = open_warehouse(warehouse, read_only=True)
    cursor = connection.execute(f"select * from marts.{table} order by {order}")
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    connection.close()
    return rows


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("servicing")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    for name, files in (("batch", BATCH), ("later", LATER_BATCH)):
        assert load_batch(connection, write_batch(root / name, **files)).rows_quarantined == 0
    remit(connection, "R1", "REMIT", place(connection, "REMIT", "CAD"), currency="CAD", amount="50")
    recalled = place(connection, "REMIT2", recalled=ago(15))
    remit(connection, "R2", "REMIT2", recalled, amount="40")
    remit(connection, "R3", "REMIT3", place(connection, "REMIT3"))  # nothing wrong with it
    connection.close()
    build_warehouse(warehouse, root / "state", AS_OF)
    before = {
        "discrepancies": read(warehouse, "fct_payment_discrepancies", "reason, item_id"),
        "refunds": read(warehouse, "fct_refund_queue", "account_id"),
    }
    connection = open_warehouse(warehouse)
    assert load_batch(connection, write_batch(root / "fix", **FIX_BATCH)).rows_quarantined == 0
    # the agency corrects its line's currency; the recall was really dated after the payment
    connection.execute("update ops.remittances set currency = 'USD' where remittance_id = 'R1'")
    connection.execute(
        "update ops.placements set recalled_date = ? where placement_id = ?", [ago(5), recalled]
    )
    connection.close()
    build_warehouse(warehouse, root / "state", AS_OF)
    after = {
        "discrepancies": read(warehouse, "fct_payment_discrepancies", "reason, item_id"),
        "refunds": read(warehouse, "fct_refund_queue", "account_id"),
    }
    return {"before": before, "after": after}


EXPECTED_DISCREPANCIES = [
    # reason, item_type, item_id, account_id, item_date (days ago), amount, currency, detail
    (
        "currency_mismatch", "adjustment", "ADJ-CUR", "CUR", 5, "5.00", "USD",
        "fee in USD on an account in EUR",
    ),
    (
        "currency_mismatch", "payment", "P-CUR", "CUR", 5, "10.00", "USD",
        "payment in USD on an account in EUR",
    ),
    (
        "payment_exceeds_invoice", "payment", "P-EX2", "EXCESS", 20, "20.00", "USD",
        "payment exceeds what was left to pay on invoice N-EX-1 by 20.00; the excess is "
        "unapplied cash",
    ),
    (
        "payment_to_closed_account", "payment", "P-CL2", "CLOSED", 10, "40.00", "USD",
        "payment received on a closed account; 40.00 of it is unapplied cash in the "
        "account's credit balance",
    ),
    (
        "payment_to_unissued_invoice", "payment", "P-UN", "UNISSUED", 2, "100.00", "USD",
        "payment names invoice N-UN-1, not issued until 2026-04-05; until then it is "
        "unallocated credit",
    ),
    (
        "plan_installment_mismatch", "payment", "P-PL2", "PLAN", 3, "45.00", "USD",
        "payment of 45.00 matches no installment amount (nor the total) of plan PL-A, "
        "running on its date",
    ),
    (
        "plan_installment_mismatch", "payment", "P-PX1", "PLANX", 30, "80.00", "USD",
        "payment of 80.00 matches no installment amount (nor the total) of plan PL-B, "
        "running on its date",
    ),
    (
        "refund_exceeds_credit", "adjustment", "ADJ-SH", "SHORT", 10, "30.00", "USD",
        "refund of 80.00 exceeds the credit available by 30.00",
    ),
    (
        "remittance_currency_mismatch", "remittance", "northwind:R1", "REMIT", 10, "50.00", "CAD",
        "agency northwind remitted in CAD; the account is in USD",
    ),
    (
        "remittance_paid_after_recall", "remittance", "northwind:R2", "REMIT2", 10, "40.00",
        "USD", "agency northwind collected after the placement was recalled",
    ),
    (
        "reversal_without_original", "payment", "P-AR", "REV2", 10, "25.00", "USD",
        "reverses payment P-A of 35.00, not of 25.00",
    ),
    (
        "reversal_without_original", "payment", "P-RFR", "REV", 1, "30.00", "USD",
        "reverses payment P-RF, not received by the as-of date",
    ),
    (
        "reversal_without_original", "payment", "P-RR", "REV", 12, "60.00", "USD",
        "received before payment P-RO, which it reverses (received 2026-03-21)",
    ),
    (
        "reversal_without_original", "payment", "P-RXRR", "REV", 15, "20.00", "USD",
        "reverses P-RXR, itself a reversal: it undoes no payment",
    ),
    (
        "suspected_duplicate_payment", "payment", "P-D1", "DUP", 7, "75.00", "USD",
        "same account, amount and received date as payment P-D2",
    ),
    (
        "suspected_duplicate_payment", "payment", "P-D2", "DUP", 7, "75.00", "USD",
        "same account, amount and received date as payment P-D1",
    ),
    (
        "upheld_dispute_without_credit_note", "dispute", "D-UP1", "UPHELD", 20, "40.00", "USD",
        "dispute upheld with no credit note for its amount on invoice N-UP-1",
    ),
]  # fmt: skip


def as_expected(found: dict) -> tuple:
    return (
        found["reason"],
        found["item_type"],
        found["item_id"],
        found["account_id"],
        found["age_days"],
        str(found["amount"]),
        found["currency"],
        found["detail"],
    )


def test_each_discrepancy_type_is_detected_and_near_misses_are_not(queues) -> None:
    found = queues["before"]["discrepancies"]
    assert sorted(as_expected(item) for item in found) == sorted(EXPECTED_DISCREPANCIES)


def test_a_discrepancy_has_a_stable_key_an_owner_and_an_age(queues) -> None:
    for item in queues["before"]["discrepancies"]:
        text = "|".join((item["reason"], item["item_type"], item["item_id"]))
        assert item["discrepancy_key"] == hashlib.md5(text.encode()).hexdigest()
        assert (item["owner"], item["customer_id"], item["as_of_date"]) == (
            "billing-ops",
            "C1",
            AS_OF,
        )
        assert item["item_date"] == AS_OF - dt.timedelta(days=item["age_days"])


def test_every_discrepancy_leaves_the_queue_when_the_data_is_fixed(queues) -> None:
    assert queues["before"]["discrepancies"]
    assert queues["after"]["discrepancies"] == []  # a refund equal to the credit is not flagged


def refund_key(account_id: str, amount: str) -> str:
    return hashlib.md5(f"{account_id}|{amount}|{AS_OF.isoformat()}".encode()).hexdigest()


def refund(account_id: str, amount: str, method: str, held: int) -> dict:
    return {
        "account_id": account_id,
        "customer_id": "C1",
        "as_of_date": AS_OF,
        "currency": "USD",
        "amount": Decimal(amount),
        "method": method,
        "credit_since": AS_OF - dt.timedelta(days=held),
        "days_held": held,
        "refund_key": refund_key(account_id, amount),
    }


def test_refund_queue_holds_credit_balances_past_the_hold_with_the_last_method(queues) -> None:
    # R-AT: held exactly 30 days; R-METHOD: the latest payment was reversed (the reversal
    # restarts the hold), the card payment before it is the way back; R-NOPAY: no payment.
    # Not here: R-SHORT (29 days), R-DISPUTE (open dispute), R-NEWINV (open items),
    # R-NEWINV2 (the invoice restarts the hold), R-FRAUD (flag), and the discrepancy accounts
    # whose credit is recent (CLOSED, EXCESS, UNISSUED, CUR).
    assert queues["before"]["refunds"] == [
        refund("R-AT", "30.00", "ach", 30),
        refund("R-METHOD", "80.00", "card", 40),
        refund("R-NOPAY", "25.00", "check", 60),
        refund("R-REFUND", "70.00", "ach", 50),
    ]


def test_a_refund_in_the_billing_export_closes_the_item(queues) -> None:
    assert [item["account_id"] for item in queues["after"]["refunds"]] == [
        "R-AT",
        "R-METHOD",
        "R-NOPAY",
    ]
