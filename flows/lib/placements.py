"""The agency ledger: which accounts are placed with which collection agency, and what the
agencies collected. Exactly-once lives here, as the action ledger does for contacts.

- `ops.placements`: one row per placement. Its id hashes account, agency and placement date, so
  a rerun of the day writes no second placement. An account has at most one open placement; a
  recall closes it (status `recalled`, with the date, the reason and the recall file).
- `ops.placement_log`: every placement and recall, append-only.
- `ops.remittances`: what agencies report they collected, one row per remittance line
  (agency and its line id: a line loaded twice is one row).
- `ops.remittance_files`: every remittance file loaded (by content hash: loading the same file
  twice changes nothing).
- `ops.remittance_quarantine`: remittance lines that broke the layout's rules, with file, line
  and a reason a person can act on.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

PLACEMENTS_DDL = """
create table if not exists ops.placements (
    placement_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    agency_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    placed_date DATE NOT NULL,
    placed_run_id VARCHAR NOT NULL,
    recalled_date DATE,
    recall_reason VARCHAR,
    currency VARCHAR NOT NULL,
    placed_balance DECIMAL(18,2) NOT NULL,
    principal DECIMAL(18,2),
    fees DECIMAL(18,2),
    interest DECIMAL(18,2),
    payments_since DECIMAL(18,2),
    credits_since DECIMAL(18,2),
    itemization_date DATE,
    first_delinquency_date DATE,
    last_payment_date DATE,
    days_past_due INTEGER,
    commission_rate DECIMAL(6,4) NOT NULL,
    placement_file VARCHAR,
    recall_file VARCHAR
)
"""

PLACEMENT_LOG_DDL = """
create table if not exists ops.placement_log (
    placement_id VARCHAR NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR,
    event VARCHAR NOT NULL,
    event_date DATE NOT NULL,
    reason VARCHAR
)
"""

REMITTANCES_DDL = """
create table if not exists ops.remittances (
    remittance_key VARCHAR PRIMARY KEY,
    agency_id VARCHAR NOT NULL,
    remittance_id VARCHAR NOT NULL,
    placement_id VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    paid_date DATE NOT NULL,
    collected_amount DECIMAL(18,2) NOT NULL,
    commission_amount DECIMAL(18,2) NOT NULL,
    currency VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    line_number BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
)
"""

REMITTANCE_FILES_DDL = """
create table if not exists ops.remittance_files (
    agency_id VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    lines_read BIGINT NOT NULL,
    lines_loaded BIGINT NOT NULL,
    lines_quarantined BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agency_id, content_hash)
)
"""

REMITTANCE_QUARANTINE_DDL = """
create table if not exists ops.remittance_quarantine (
    agency_id VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    line_number BIGINT NOT NULL,
    remittance_id VARCHAR,
    reason_codes VARCHAR[] NOT NULL,
    reasons VARCHAR NOT NULL,
    row_json JSON,
    quarantined_at TIMESTAMPTZ NOT NULL
)
"""

COMMENTS = {
    "ops.placements": "Accounts placed with a collection agency: one row per placement "
    "(status open or recalled, with the recall date and reason). At most one open per account.",
    "ops.placement_log": "Every placement and recall, append-only.",
    "ops.remittances": "What agencies collected, one row per remittance line (agency, line id).",
    "ops.remittance_files": "Every remittance file loaded, by content hash.",
    "ops.remittance_quarantine": "Remittance lines that broke the layout, with file, line, reason.",
}


def ensure_agency_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The agency tables (idempotent)."""
    connection.execute("create schema if not exists ops")
    for ddl in (
        PLACEMENTS_DDL,
        PLACEMENT_LOG_DDL,
        REMITTANCES_DDL,
        REMITTANCE_FILES_DDL,
        REMITTANCE_QUARANTINE_DDL,
    ):
        connection.execute(ddl)
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")


def placement_id(account_id: str, agency_id: str, placed_date: dt.date) -> str:
    """The placement's id; `PLACEMENT_ID_SQL` computes the same in SQL."""
    text = "|".join((account_id, agency_id, placed_date.isoformat()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


PLACEMENT_ID_SQL = (
    "left(sha256(concat_ws('|', account_id, agency_id, strftime(placed_date, '%Y-%m-%d'))), 24)"
)
