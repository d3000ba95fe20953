"""Small warehouses for agency placement: the marts the placement step reads (stage history,
aging, itemization, disputes, customers) for one as-of date, built from one dict per account,
and agency settings with just the rules a test is about. Each test states the fields that
matter; the rest are defaults."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb

from flows.lib.config import AgencySettings, Settings, load_settings
from flows.lib.gates import record_build

AS_OF = dt.date(2026, 3, 31)

ACCOUNT_DEFAULTS: dict[str, object] = {
    "account_id": "A1",
    "customer_id": "C1",
    "segment": "residential",
    "currency": "USD",
    "stage": "agency_placement",
    "stage_channel": "agency",
    "is_held": False,
    "hold_reason": None,
    "contact_restrictions": "",
    "total_open": Decimal("400.00"),
    "disputed_amount": Decimal("0.00"),
    "collectible_amount": Decimal("400.00"),
    "max_days_past_due": 95,
    "oldest_due_date": dt.date(2025, 12, 26),
    "itemization_date": dt.date(2026, 2, 1),
    "amount_on_itemization_date": Decimal("380.00"),
    "interest_since": Decimal("5.00"),
    "fees_since": Decimal("25.00"),
    "payments_since": Decimal("10.00"),
    "credits_since": Decimal("0.00"),
    "has_aging": True,  # False: the account owes nothing that day (no aging row)
}
CUSTOMER_DEFAULTS: dict[str, object] = {
    "customer_id": "C1",
    "customer_type": "consumer",
    "full_name": "Ann Lee",
    "email": "ann@example.com",
    "phone": "+15125550100",
    "address_line1": "1 Main St",
    "address_line2": None,
    "city": "Austin",
    "state": "TX",
    "postal_code": "78701",
    "country": "US",
    "language": "en",
}
DISPUTE_DEFAULTS: dict[str, object] = {
    "dispute_id": "D1",
    "account_id": "A1",
    "dispute_status": "open",
    "opened_date": dt.date(2026, 3, 20),
    "disputed_amount": Decimal("50.00"),
}

STAGE_COLUMNS = {
    "as_of_date": "DATE",
    "account_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "segment": "VARCHAR",
    "currency": "VARCHAR",
    "stage": "VARCHAR",
    "stage_channel": "VARCHAR",
    "is_held": "BOOLEAN",
    "hold_reason": "VARCHAR",
    "contact_restrictions": "VARCHAR",
    "total_open": "DECIMAL(18,2)",
    "disputed_amount": "DECIMAL(18,2)",
    "collectible_amount": "DECIMAL(18,2)",
    "max_days_past_due": "BIGINT",
}
AGING_COLUMNS = {
    "as_of_date": "DATE",
    "account_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "currency": "VARCHAR",
    "total_open": "DECIMAL(18,2)",
    "disputed_amount": "DECIMAL(18,2)",
    "collectible_amount": "DECIMAL(18,2)",
    "oldest_due_date": "DATE",
    "max_days_past_due": "BIGINT",
}
ITEMIZATION_COLUMNS = {
    "as_of_date": "DATE",
    "account_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "currency": "VARCHAR",
    "itemization_date": "DATE",
    "amount_on_itemization_date": "DECIMAL(18,2)",
    "interest_since": "DECIMAL(18,2)",
    "fees_since": "DECIMAL(18,2)",
    "payments_since": "DECIMAL(18,2)",
    "credits_since": "DECIMAL(18,2)",
    "current_amount": "DECIMAL(18,2)",
}
DISPUTE_COLUMNS = {
    "dispute_id": "VARCHAR",
    "account_id": "VARCHAR",
    "as_of_date": "DATE",
    "dispute_status": "VARCHAR",
    "opened_date": "DATE",
    "disputed_amount": "DECIMAL(18,2)",
}
CUSTOMER_COLUMNS = {name: "VARCHAR" for name in CUSTOMER_DEFAULTS}


def an_account(account_id: str = "A1", **overrides: object) -> dict[str, object]:
    """One account in the agency stage on the day, with its balance and itemization."""
    return {**ACCOUNT_DEFAULTS, "account_id": account_id, **overrides}


def paid(account_id: str = "A1", **overrides: object) -> dict[str, object]:
    """An account that owes nothing that day: no aging or itemization row, stage none."""
    nothing_owed: dict[str, object] = {
        "stage": "none",
        "stage_channel": None,
        "total_open": Decimal("0.00"),
        "collectible_amount": Decimal("0.00"),
        "max_days_past_due": 0,
        "has_aging": False,
    }
    return an_account(account_id, **{**nothing_owed, **overrides})


def held(reason: str, account_id: str = "A1", **overrides: object) -> dict[str, object]:
    """An account held that day (the stage freezes, so it can still read agency_placement)."""
    return an_account(account_id, **{"is_held": True, "hold_reason": reason, **overrides})


def a_customer(customer_id: str = "C1", **overrides: object) -> dict[str, object]:
    return {**CUSTOMER_DEFAULTS, "customer_id": customer_id, **overrides}


def a_dispute(**overrides: object) -> dict[str, object]:
    return {**DISPUTE_DEFAULTS, **overrides}


def make_agency_marts(
    connection: duckdb.DuckDBPyConnection,
    accounts: list[dict[str, object]],
    *,
    as_of: dt.date = AS_OF,
    customers: list[dict[str, object]] | None = None,
    disputes: list[dict[str, object]] | None = None,
) -> None:
    """The marts as the day's build leaves them: one stage-history row per account, an aging
    and itemization row per account that owes something, these disputes, and the customers
    (by default one per customer id of the accounts, with the default identity); the build is
    recorded for `as_of`, as the build step records it."""
    connection.execute("create schema if not exists marts")
    owing = [account for account in accounts if account["has_aging"]]
    day = {"as_of_date": as_of}
    _table(connection, "marts.fct_account_stage_history", STAGE_COLUMNS, [
        {**account, **day} for account in accounts
    ])  # fmt: skip
    _table(connection, "marts.fct_account_aging", AGING_COLUMNS, [
        {**account, **day} for account in owing
    ])  # fmt: skip
    _table(connection, "marts.fct_account_itemization", ITEMIZATION_COLUMNS, [
        {**account, **day, "current_amount": account["total_open"]} for account in owing
    ])  # fmt: skip
    _table(connection, "marts.fct_disputes", DISPUTE_COLUMNS, [
        {**DISPUTE_DEFAULTS, **dispute, **day} for dispute in disputes or []
    ])  # fmt: skip
    if customers is None:
        ids = sorted({str(account["customer_id"]) for account in accounts})
        customers = [a_customer(customer_id) for customer_id in ids]
    _table(connection, "marts.dim_customers", CUSTOMER_COLUMNS, customers)
    record_build(connection, as_of)


def _table(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    columns: dict[str, str],
    rows: list[dict[str, object]],
) -> None:
    definition = ", ".join(f"{column} {sql_type}" for column, sql_type in columns.items())
    connection.execute(f"create or replace table {name} ({definition})")
    if rows:
        connection.executemany(
            f"insert into {name} values ({', '.join('?' for _ in columns)})",
            [[row.get(column) for column in columns] for row in rows],
        )


def an_agency(agency_id: str = "alpha", **overrides: object) -> AgencySettings:
    """An agency that takes every account (no rules), at 25 %, share 1."""
    values: dict[str, object] = {
        "id": agency_id,
        "name": f"{agency_id.title()} Collections",
        "commission_rate": Decimal("0.25"),
        "recall_contact": f"recalls@{agency_id}.example",
    }
    return AgencySettings(**{**values, **overrides})


def settings_with(home: Path, *agencies: AgencySettings, split: str = "share") -> Settings:
    """The default settings under `home`, with these agencies (default: the two demo ones)."""
    settings = load_settings({"RECOUP_HOME": str(home)})
    if not agencies:
        return settings
    placement = settings.placement.model_copy(update={"agencies": list(agencies), "split": split})
    return settings.model_copy(update={"placement": placement})
