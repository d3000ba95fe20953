"""A second, plain-Python reading of SPEC §3, written apart from the dbt models, to check
them on generated data. Deliberately simple: loops over a few thousand accounts."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import duckdb

ZERO = Decimal("0.00")
BUCKETS = [
    (0, "current"), (30, "dpd_1_30"), (60, "dpd_31_60"), (90, "dpd_61_90"), (120, "dpd_91_120"),
    (150, "dpd_121_150"), (180, "dpd_151_180"),
]  # fmt: skip


def bucket(days: int) -> str:
    for limit, name in BUCKETS:
        if days <= limit:
            return name
    return "dpd_181_plus"


def rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def reference_account_aging(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date
) -> dict[str, dict]:
    invoices = rows(connection, "select * from raw.invoices_latest")
    payments = rows(connection, "select * from raw.payments_latest")
    adjustments = rows(connection, "select * from raw.adjustments_latest")
    disputes = rows(connection, "select * from raw.disputes_latest")

    issued = {i["invoice_id"]: i for i in invoices if i["issue_date"] <= as_of}
    reversed_ids = {
        p["reverses_payment_id"] for p in payments
        if p["reverses_payment_id"] and p["received_date"] <= as_of
    }  # fmt: skip
    linked_credit: dict[str, Decimal] = defaultdict(lambda: ZERO)
    linked_charge: dict[str, Decimal] = defaultdict(lambda: ZERO)
    unlinked_credit: dict[str, Decimal] = defaultdict(lambda: ZERO)
    refunds: dict[str, Decimal] = defaultdict(lambda: ZERO)
    items: dict[str, list[tuple[dt.date, str, Decimal]]] = defaultdict(list)

    def linked_invoice(row: dict) -> str | None:
        invoice = issued.get(row["invoice_id"]) if row["invoice_id"] else None
        return (
            invoice["invoice_id"]
            if invoice and invoice["account_id"] == row["account_id"]
            else None
        )

    for p in payments:
        if (
            p["reverses_payment_id"]
            or p["received_date"] > as_of
            or p["payment_id"] in reversed_ids
        ):
            continue
        target = linked_invoice(p)
        if target:
            linked_credit[target] += p["amount"]
        else:
            unlinked_credit[p["account_id"]] += p["amount"]
    for a in adjustments:
        if a["effective_date"] > as_of:
            continue
        if a["kind"] == "refund":
            refunds[a["account_id"]] += a["amount"]
            continue
        target = linked_invoice(a)
        if a["kind"] in ("credit_note", "write_off"):
            if target:
                linked_credit[target] += a["amount"]
            else:
                unlinked_credit[a["account_id"]] += a["amount"]
        elif target:
            linked_charge[target] += a["amount"]
        else:
            items[a["account_id"]].append((a["effective_date"], a["adjustment_id"], a["amount"]))

    for invoice_id, invoice in issued.items():
        net = invoice["amount"] + linked_charge[invoice_id] - linked_credit[invoice_id]
        if net > 0:
            items[invoice["account_id"]].append((invoice["due_date"], invoice_id, net))
        else:
            unlinked_credit[invoice["account_id"]] += -net

    open_disputes = [
        d for d in disputes
        if d["opened_date"] <= as_of and (d["resolved_date"] is None or d["resolved_date"] > as_of)
    ]  # fmt: skip
    result: dict[str, dict] = {}
    for account in set(items) | set(unlinked_credit) | set(refunds):
        pool = unlinked_credit[account] - refunds[account]
        shortfall = max(-pool, ZERO)
        pool = max(pool, ZERO)
        row = {name: ZERO for _, name in BUCKETS} | {"dpd_181_plus": ZERO}
        open_by_item: dict[str, Decimal] = {}
        due_by_item: dict[str, dt.date] = {}
        for due, item_id, amount in sorted(items[account], key=lambda item: (item[0], item[1])):
            applied = min(pool, amount)
            pool -= applied
            remaining = amount - applied
            if remaining > 0:
                open_by_item[item_id] = remaining
                due_by_item[item_id] = due
                row[bucket((as_of - due).days)] += remaining
        total = sum(open_by_item.values(), ZERO)
        invoice_disputed = ZERO
        account_level = ZERO
        for item_id, open_amount in open_by_item.items():
            claims = [
                d["amount"] if d["amount"] is not None else open_amount
                for d in open_disputes
                if d["invoice_id"] == item_id
            ]
            if claims:
                invoice_disputed += min(open_amount, sum(claims, ZERO))
        for d in open_disputes:
            if d["account_id"] == account and d["invoice_id"] is None:
                account_level += d["amount"] if d["amount"] is not None else total
        disputed = min(total, invoice_disputed + account_level)
        credit = pool
        if total == 0 and credit == 0:
            continue
        days = [(as_of - due).days for due in due_by_item.values()]
        row.update(
            total_open=total,
            disputed_amount=disputed,
            collectible_amount=total - disputed,
            credit_balance=credit,
            oldest_due_date=min(due_by_item.values()) if due_by_item else None,
            max_days_past_due=max([0, *days]),
            refund_shortfall=shortfall,
        )
        result[account] = row
    return result
