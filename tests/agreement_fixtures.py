"""Small builders for agreement tests: settings for a test home, the aging the checks read an
agreement's balance from, agreements as a collector states them, and agreement files."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb

from flows.lib.agreements import LAYOUT, Agreement, Installment
from flows.lib.config import Settings

FILE_COLUMNS = list(LAYOUT.column_names)


def settings_for(home: Path) -> Settings:
    """The built-in defaults (negotiation.offers: `default` and `enterprise`) for a test home."""
    return Settings(home=home)


def aging(
    connection: duckdb.DuckDBPyConnection,
    rows: list[tuple[str, dt.date, str, int]],
) -> None:
    """marts.fct_account_aging as a build leaves it, reduced to what agreements read: one row
    per (account_id, as_of_date, collectible_amount, max_days_past_due)."""
    connection.execute("create schema if not exists marts")
    connection.execute(
        "create table if not exists marts.fct_account_aging (account_id VARCHAR, "
        "as_of_date DATE, collectible_amount DECIMAL(18,2), max_days_past_due INTEGER)"
    )
    connection.executemany("insert into marts.fct_account_aging values (?, ?, ?, ?)", rows)


def an_agreement(
    account_id: str,
    kind: str,
    agreed_date: dt.date,
    schedule: list[tuple[dt.date, str]],
    **options: str | None,
) -> Agreement:
    return Agreement(
        account_id=account_id,
        kind=kind,
        agreed_date=agreed_date,
        installments=tuple(Installment(due, Decimal(amount)) for due, amount in schedule),
        **options,  # type: ignore[arg-type]
    )


def monthly(first_due: dt.date, *amounts: str) -> list[tuple[dt.date, str]]:
    """Installments 30 days apart from `first_due`."""
    return [(first_due + dt.timedelta(days=30 * n), amount) for n, amount in enumerate(amounts)]


def agreement_lines(
    agreement_id: str,
    account_id: str,
    kind: str,
    agreed_date: str,
    schedule: list[tuple[str, str]],
    **overrides: str,
) -> list[dict[str, str]]:
    """The lines of one agreement in a file: installment_no 1, 2, ... unless overridden."""
    return [
        {
            "agreement_id": agreement_id,
            "account_id": account_id,
            "kind": kind,
            "agreed_date": agreed_date,
            "installment_no": str(number),
            "due_date": due,
            "amount": amount,
            "approved_by": "",
            "notes": "",
            **overrides,
        }
        for number, (due, amount) in enumerate(schedule, start=1)
    ]


def agreement_file(
    path: Path, lines: list[dict[str, str]], columns: list[str] | None = None
) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns or FILE_COLUMNS, lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(lines)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path
