"""Tiny billing-export batches for tests: one default row per entity, override what matters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flows.lib.contract import ENTITY_BY_NAME

DEFAULTS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "C1",
        "customer_type": "consumer",
        "full_name": "Ann Lee",
        "email": "ann@example.com",
        "phone": "",
        "address_line1": "1 Main St",
        "address_line2": "",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78701",
        "country": "US",
        "timezone": "America/Chicago",
        "date_of_birth": "1980-01-02",
        "ssn": "900123456",
        "language": "",
        "created_at": "2024-01-01T09:00:00-06:00",
    },
    "accounts": {
        "account_id": "A1",
        "customer_id": "C1",
        "currency": "USD",
        "segment": "residential",
        "opened_date": "2024-01-01",
        "status": "active",
        "credit_limit": "",
    },
    "invoices": {
        "invoice_id": "I1",
        "account_id": "A1",
        "invoice_number": "N-1",
        "issue_date": "2026-01-01",
        "due_date": "2026-01-31",
        "amount": "120.00",
        "currency": "USD",
        "description": "",
    },
    "payments": {
        "payment_id": "P1",
        "account_id": "A1",
        "invoice_id": "",
        "received_date": "2026-02-01",
        "amount": "50.00",
        "currency": "USD",
        "method": "card",
        "reverses_payment_id": "",
    },
    "adjustments": {
        "adjustment_id": "ADJ1",
        "account_id": "A1",
        "invoice_id": "",
        "kind": "fee",
        "amount": "15.00",
        "currency": "USD",
        "effective_date": "2026-02-15",
        "reason": "",
    },
    "disputes": {
        "dispute_id": "D1",
        "account_id": "A1",
        "invoice_id": "I1",
        "amount": "",
        "opened_date": "2026-02-10",
        "resolved_date": "",
        "resolution": "",
    },
    "payment_plans": {
        "plan_id": "PL1",
        "account_id": "A1",
        "kind": "promise_to_pay",
        "installment_no": "1",
        "due_date": "2026-03-01",
        "amount": "60.00",
        "created_date": "2026-02-20",
        "cancelled_date": "",
    },
    "account_flags": {
        "customer_id": "C1",
        "account_id": "",
        "flag": "do_not_call",
        "start_date": "2026-01-01",
        "end_date": "",
    },
}


def row(entity: str, **overrides: str) -> dict[str, str]:
    """The default row of `entity` with some fields changed."""
    unknown = set(overrides) - set(DEFAULTS[entity])
    assert not unknown, f"{entity} has no column {unknown}"
    return {**DEFAULTS[entity], **overrides}


def csv_text(entity: str, rows: list[dict[str, str]], newline: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(DEFAULTS[entity]), lineterminator=newline)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_batch(folder: Path, **entities: list[dict[str, str]] | str) -> Path:
    """Write one file per entity: a list of rows (CSV is built) or the literal file text."""
    folder.mkdir(parents=True, exist_ok=True)
    for entity, content in entities.items():
        assert entity in ENTITY_BY_NAME, entity
        text = content if isinstance(content, str) else csv_text(entity, content)
        (folder / f"{entity}.csv").write_text(text, encoding="utf-8", newline="")
    return folder


def base_batch(folder: Path, **extra: list[dict[str, str]] | str) -> Path:
    """One customer C1 with one USD account A1, plus the given files."""
    files: dict[str, list[dict[str, str]] | str] = {
        "customers": [row("customers")],
        "accounts": [row("accounts")],
    }
    files.update(extra)
    return write_batch(folder, **files)
