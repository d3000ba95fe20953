"""A small warehouse for the Metro 2 tests: the tables the bureau file reads, written directly
(no dbt), so each status rule can be set up in a few lines and checked exactly.

`World` collects accounts (with their customer), daily aging rows, payments, adjustments,
flags, disputes, placements and contacts, then `write(connection)` creates the tables as the
build leaves them. Defaults: a consumer in Chicago, USD, opened 2025-01-15, a valid SSN.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from flows.lib.config import BureauSettings, CompanySettings, Settings
from flows.lib.pii import Keyring, decode_key

TABLES: dict[str, dict[str, str]] = {
    "marts.dim_accounts": {
        "account_id": "VARCHAR", "customer_id": "VARCHAR", "currency": "VARCHAR",
        "segment": "VARCHAR", "account_status": "VARCHAR", "credit_limit": "DECIMAL(18,2)",
        "opened_date": "DATE",
    },
    "marts.dim_customers": {
        "customer_id": "VARCHAR", "customer_type": "VARCHAR", "full_name": "VARCHAR",
        "email": "VARCHAR", "phone": "VARCHAR", "address_line1": "VARCHAR",
        "address_line2": "VARCHAR", "city": "VARCHAR", "state": "VARCHAR",
        "postal_code": "VARCHAR", "country": "VARCHAR", "ssn_last4": "VARCHAR",
        "date_of_birth": "DATE", "billing_phone": "VARCHAR", "billing_address_line1": "VARCHAR",
        "billing_address_line2": "VARCHAR", "billing_city": "VARCHAR", "billing_state": "VARCHAR",
        "billing_postal_code": "VARCHAR", "billing_country": "VARCHAR",
    },
    "raw.customers_latest": {"customer_id": "VARCHAR", "ssn": "VARCHAR", "date_of_birth": "VARCHAR"},
    "marts.fct_account_aging": {
        "account_id": "VARCHAR", "customer_id": "VARCHAR", "as_of_date": "DATE",
        "currency": "VARCHAR", "current": "DECIMAL(18,2)", "dpd_1_30": "DECIMAL(18,2)",
        "dpd_31_60": "DECIMAL(18,2)", "dpd_61_90": "DECIMAL(18,2)",
        "dpd_91_120": "DECIMAL(18,2)", "dpd_121_150": "DECIMAL(18,2)",
        "dpd_151_180": "DECIMAL(18,2)", "dpd_181_plus": "DECIMAL(18,2)",
        "total_open": "DECIMAL(18,2)",
        "credit_balance": "DECIMAL(18,2)", "oldest_due_date": "DATE",
        "max_days_past_due": "INTEGER", "stage": "VARCHAR",
    },
    "staging.stg_billing__payments": {
        "payment_id": "VARCHAR", "account_id": "VARCHAR", "reverses_payment_id": "VARCHAR",
        "amount": "DECIMAL(18,2)", "is_reversal": "BOOLEAN", "received_date": "DATE",
    },
    "staging.stg_billing__adjustments": {
        "adjustment_id": "VARCHAR", "account_id": "VARCHAR", "adjustment_kind": "VARCHAR",
        "reason": "VARCHAR", "amount": "DECIMAL(18,2)", "effective_date": "DATE",
    },
    "staging.stg_billing__account_flags": {
        "customer_id": "VARCHAR", "account_id": "VARCHAR", "flag": "VARCHAR",
        "start_date": "DATE", "end_date": "DATE",
    },
    "marts.fct_disputes": {
        "dispute_id": "VARCHAR", "account_id": "VARCHAR", "opened_date": "DATE",
        "resolved_date": "DATE", "dispute_status": "VARCHAR",
    },
    "marts.fct_remittance_reconciliation": {
        "account_id": "VARCHAR", "paid_date": "DATE", "collected_amount": "DECIMAL(18,2)",
        "reconciliation_status": "VARCHAR",
    },
    "marts.fct_contact_log": {
        "account_id": "VARCHAR", "channel": "VARCHAR", "is_contacted": "BOOLEAN",
        "sent_at": "TIMESTAMPTZ", "bounced_at": "TIMESTAMPTZ", "dropped_at": "TIMESTAMPTZ",
    },
}  # fmt: skip

VALID_SSN = "123456789"
PII_KEY = "/kMlKdB1rlah5eR4EH05Dshr1TNv+nLiZyEbF9grSpM="  # a test key; bureau_settings sets it
KEYRING = Keyring((decode_key(PII_KEY, "the test key"),))


@dataclass
class World:
    accounts: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    ssns: list[dict[str, Any]] = field(default_factory=list)
    aging: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    builds: set[dt.date] = field(default_factory=set)  # beyond the dates of the aging rows

    def built(self, day: dt.date) -> None:
        """The marts were built for `day` (whether or not anyone owed anything)."""
        self.builds.add(day)

    def account(
        self,
        account_id: str,
        *,
        full_name: str = "Ann Lee",
        ssn: str | None = VALID_SSN,
        date_of_birth: dt.date | None = dt.date(1980, 5, 17),
        customer_type: str = "consumer",
        currency: str = "USD",
        country: str = "US",
        state: str = "IL",
        postal_code: str = "60601",
        opened: dt.date = dt.date(2025, 1, 15),
        phone: str | None = "+1 312 555 0142",
        status: str = "active",
        segment: str = "residential",
    ) -> str:
        customer_id = f"C-{account_id}"
        self.accounts.append({
            "account_id": account_id, "customer_id": customer_id, "currency": currency,
            "segment": segment, "account_status": status, "opened_date": opened,
        })  # fmt: skip
        self.customers.append({
            "customer_id": customer_id, "customer_type": customer_type, "full_name": full_name,
            "phone": phone, "address_line1": "1557 Main St", "address_line2": "Apt 4",
            "city": "Chicago", "state": state, "postal_code": postal_code, "country": country,
            "ssn_last4": ssn[-4:] if ssn else None, "date_of_birth": date_of_birth,
        })  # fmt: skip
        self.customers[-1] |= {  # what billing sent: the bureau file reports these
            f"billing_{column}": self.customers[-1][column]
            for column in ("phone", "address_line1", "address_line2", "city", "state",
                           "postal_code", "country")
        }  # fmt: skip
        if ssn or date_of_birth:  # encrypted, as ingest stores them (flows/lib/pii.py)
            born = date_of_birth.isoformat() if date_of_birth else None
            self.ssns.append({
                "customer_id": customer_id,
                "ssn": KEYRING.encrypt(customer_id, "ssn", ssn) if ssn else None,
                "date_of_birth": KEYRING.encrypt(customer_id, "date_of_birth", born) if born else None,
            })  # fmt: skip
        return account_id

    def owes(
        self,
        account_id: str,
        on: dt.date,
        total_open: str,
        days_past_due: int,
        *,
        current: str = "0",
        recent: str = "0",
        stage: str = "reminder_1",
    ) -> None:
        """An aging row: on `on` the account owes `total_open`, its oldest item that late;
        `current` of it is not due yet, `recent` is 1-30 days past due, and the rest sits in
        the bucket of `days_past_due`."""
        rest = Decimal(total_open) - Decimal(current) - Decimal(recent)
        bucket = next(
            name
            for low, name in ((181, "dpd_181_plus"), (151, "dpd_151_180"), (121, "dpd_121_150"),
                              (91, "dpd_91_120"), (61, "dpd_61_90"), (31, "dpd_31_60"),
                              (1, "dpd_1_30"), (-10**6, "current"))
            if days_past_due >= low
        )  # fmt: skip
        amounts = {"current": Decimal(current), "dpd_1_30": Decimal(recent)}
        amounts[bucket] = amounts.get(bucket, Decimal(0)) + rest
        self.aging.append({
            **amounts,
            "account_id": account_id, "customer_id": f"C-{account_id}", "as_of_date": on,
            "currency": "USD", "total_open": Decimal(total_open),
            "credit_balance": Decimal("0"),
            "oldest_due_date": on - dt.timedelta(days=days_past_due),
            "max_days_past_due": days_past_due, "stage": stage,
        })  # fmt: skip

    def paid(self, account_id: str, on: dt.date, amount: str) -> None:
        self.payments.append({
            "payment_id": f"P{len(self.payments) + 1}", "account_id": account_id,
            "amount": Decimal(amount), "is_reversal": False, "received_date": on,
        })  # fmt: skip

    def adjusted(
        self, account_id: str, on: dt.date, amount: str, kind: str = "write_off", reason: str = ""
    ) -> None:
        self.adjustments.append({
            "adjustment_id": f"J{len(self.adjustments) + 1}", "account_id": account_id,
            "adjustment_kind": kind, "reason": reason, "amount": Decimal(amount),
            "effective_date": on,
        })  # fmt: skip

    def flagged(self, account_id: str, flag: str, start: dt.date) -> None:
        self.flags.append({
            "customer_id": f"C-{account_id}", "account_id": account_id, "flag": flag,
            "start_date": start,
        })  # fmt: skip

    def disputed(
        self,
        account_id: str,
        opened: dt.date,
        resolved: dt.date | None = None,
        status: str = "open",
    ) -> None:
        self.disputes.append({
            "dispute_id": f"D{len(self.disputes) + 1}", "account_id": account_id,
            "opened_date": opened, "resolved_date": resolved, "dispute_status": status,
        })  # fmt: skip

    def contacted(
        self, account_id: str, at: dt.datetime, channel: str = "letter", bounced: bool = False
    ) -> None:
        self.contacts.append({
            "account_id": account_id, "channel": channel, "is_contacted": True, "sent_at": at,
            "bounced_at": at + dt.timedelta(hours=1) if bounced else None,
        })  # fmt: skip

    def placed(self, account_id: str, on: dt.date) -> None:
        self.placements.append({"account_id": account_id, "placed_date": on})

    def write(self, connection: duckdb.DuckDBPyConnection) -> None:
        """(Re)create every table from what was collected."""
        from flows.lib.bureau_records import ensure_bureau_schema

        for schema in ("marts", "raw", "staging"):
            connection.execute(f"create schema if not exists {schema}")
        data = {
            "marts.dim_accounts": self.accounts,
            "marts.dim_customers": self.customers,
            "raw.customers_latest": self.ssns,
            "marts.fct_account_aging": self.aging,
            "staging.stg_billing__payments": self.payments,
            "staging.stg_billing__adjustments": self.adjustments,
            "staging.stg_billing__account_flags": self.flags,
            "marts.fct_disputes": self.disputes,
            "marts.fct_remittance_reconciliation": [],
            "marts.fct_contact_log": self.contacts,
        }
        for name, columns in TABLES.items():
            definition = ", ".join(f'"{column}" {kind}' for column, kind in columns.items())
            connection.execute(f"create or replace table {name} ({definition})")
            rows = data[name]
            if rows:
                connection.executemany(
                    f"insert into {name} values ({', '.join('?' for _ in columns)})",
                    [[each.get(column) for column in columns] for each in rows],
                )
        ensure_bureau_schema(connection)
        connection.execute("delete from ops.builds")
        for day in sorted(self.builds | {row["as_of_date"] for row in self.aging}):
            connection.execute("insert into ops.builds values (?, now())", [day])
        connection.execute("delete from ops.placements")
        for number, placement in enumerate(self.placements, start=1):
            connection.execute(
                "insert into ops.placements (placement_id, account_id, customer_id, agency_id, "
                "status, placed_date, placed_run_id, currency, placed_balance, principal, fees, "
                "interest, payments_since, credits_since, itemization_date, days_past_due, "
                "commission_rate, placement_file) values (?, ?, ?, 'summit', 'open', ?, 'run', "
                "'USD', 1, 1, 0, 0, 0, 0, ?, 90, 0.25, 'f.csv')",
                [f"PL{number}", placement["account_id"], f"C-{placement['account_id']}",
                 placement["placed_date"], placement["placed_date"]],
            )  # fmt: skip


def bureau_settings(home: Path, **bureau: Any) -> Settings:
    """Settings for a test home: the demo company, these bureau settings, first party unless
    `collector_type` says otherwise."""
    collector_type = bureau.pop("collector_type", "first_party")
    company = CompanySettings(creditor_name="Acme Utilities")
    return Settings(
        pii_key=PII_KEY,
        home=home,
        company=company,
        collector_type=collector_type,
        bureau=BureauSettings(**bureau),
    )
