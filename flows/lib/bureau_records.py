"""The bureau ledger: what the credit bureaus were told, per account and period. Exactly-once
for the Metro 2 file lives here, as the action ledger does for contacts.

- `ops.bureau_records`: one row per reported account per period (status, rating, profile,
  codes, amounts, the date of first delinquency, the date of account information; never an
  SSN). The next period starts from the latest earlier row: its DOFD is kept, its status
  decides the paid transitions, its profile and codes continue.
- `ops.bureau_not_reported`: the accounts held back from a period, with the reason.
- `ops.bureau_files`: one row per period generated: the DOAI, the path and the sha256.
"""

from __future__ import annotations

import duckdb

BUREAU_DDL = """
create schema if not exists ops;
create table if not exists ops.bureau_records (
    period VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    identification_number VARCHAR NOT NULL,
    account_status VARCHAR NOT NULL,
    payment_rating VARCHAR,
    payment_history_profile VARCHAR NOT NULL,
    special_comment VARCHAR,
    compliance_condition_code VARCHAR,
    consumer_information_indicator VARCHAR,
    ecoa_code VARCHAR NOT NULL,
    current_balance BIGINT NOT NULL,
    amount_past_due BIGINT NOT NULL,
    highest_credit BIGINT NOT NULL,
    original_charge_off_amount BIGINT NOT NULL,
    date_of_first_delinquency DATE,
    date_of_account_information DATE NOT NULL,
    date_closed DATE,
    date_of_last_payment DATE,
    file_sha256 VARCHAR NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (period, account_id)
);
create table if not exists ops.bureau_not_reported (
    period VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    PRIMARY KEY (period, account_id)
);
create table if not exists ops.bureau_files (
    period VARCHAR NOT NULL PRIMARY KEY,
    date_of_account_information DATE NOT NULL,
    path VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    base_records BIGINT NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL
);
"""
RECORD_COLUMNS = (
    "period", "account_id", "customer_id", "identification_number", "account_status",
    "payment_rating", "payment_history_profile", "special_comment",
    "compliance_condition_code", "consumer_information_indicator", "ecoa_code",
    "current_balance", "amount_past_due", "highest_credit", "original_charge_off_amount",
    "date_of_first_delinquency", "date_of_account_information", "date_closed",
    "date_of_last_payment", "file_sha256", "generated_at",
)  # fmt: skip

# the DOFD of each account's open delinquency, as its latest record before $period reported it
# (NULL when that record closed or never had one: a new delinquency starts a new DOFD).
# Agency placements carry the same date; the validator checks the next record keeps it.
LATEST_DOFD_SQL = """
select
    account_id,
    case
        when account_status in ('71', '78', '80', '82', '83', '84', '93', '97')
            then date_of_first_delinquency
    end as date_of_first_delinquency
from ops.bureau_records
where period < $period
qualify row_number() over (partition by account_id order by period desc) = 1
"""


def ensure_bureau_schema(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(BUREAU_DDL)
    from flows.lib.gates import ensure_builds_table
    from flows.lib.placements import ensure_agency_schema

    ensure_agency_schema(connection)  # the status reads placements
    ensure_builds_table(connection)  # the file's date is the period's last build
