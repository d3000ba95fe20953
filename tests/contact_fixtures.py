"""Small warehouses for the contact steps: the stage decisions and customers the planner reads,
ledger rows of earlier contacts, and raw facts that arrive after planning. Each test states the
rows that matter; the rest are defaults."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb

from flows.lib.contract import ENTITY_BY_NAME
from flows.lib.ledger import action_key
from flows.lib.warehouse import mark_superseded

AS_OF = dt.date(2026, 3, 31)
POLICY = "2026.1"

STAGE_DEFAULTS: dict[str, object] = {
    "as_of_date": AS_OF,
    "account_id": "A1",
    "customer_id": "C1",
    "segment": "residential",
    "currency": "USD",
    "policy_version": POLICY,
    "stage_order": 2,
    "stage": "reminder_1",
    "stage_entered_date": AS_OF,
    "stage_channel": "email",
    "stage_template": "reminder_1",
    "is_held": False,
    "hold_reason": "",
    "contact_restrictions": "",
    "next_action_due_date": None,
    "total_open": Decimal("120.00"),
    "disputed_amount": Decimal("0.00"),
    "collectible_amount": Decimal("120.00"),
    "max_days_past_due": 3,
}
STAGE_TYPES = {
    "as_of_date": "DATE",
    "stage_order": "INTEGER",
    "stage_entered_date": "DATE",
    "is_held": "BOOLEAN",
    "next_action_due_date": "DATE",
    "total_open": "DECIMAL(18,2)",
    "disputed_amount": "DECIMAL(18,2)",
    "collectible_amount": "DECIMAL(18,2)",
    "max_days_past_due": "INTEGER",
}
CHANNEL_OF = {
    "courtesy_reminder": ("email", 1),
    "reminder_1": ("email", 2),
    "reminder_2": ("email", 3),
    "final_notice": ("letter", 4),
    "manager_review": ("phone", 5),
    "pre_placement": ("letter", 6),
    "write_off_recommendation": ("manager", 9),
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
    "date_of_birth": None,
    "ssn_last4": None,
    "email_updated_on": None,
    "address_updated_on": None,
    "phone_updated_on": None,
    "email_updated_at": None,
    "address_updated_at": None,
    "phone_updated_at": None,
    "is_address_returned": False,
    "is_phone_invalid": False,
}
CUSTOMER_TYPES = {
    "date_of_birth": "DATE",
    "email_updated_on": "DATE",
    "address_updated_on": "DATE",
    "phone_updated_on": "DATE",
    "email_updated_at": "TIMESTAMPTZ",
    "address_updated_at": "TIMESTAMPTZ",
    "phone_updated_at": "TIMESTAMPTZ",
    "is_address_returned": "BOOLEAN",
    "is_phone_invalid": "BOOLEAN",
}


def a_stage(stage: str = "reminder_1", **overrides: object) -> dict[str, object]:
    """One account's stage decision on one day; the channel and order follow the stage."""
    channel, order = CHANNEL_OF[stage]
    row = {
        **STAGE_DEFAULTS,
        "stage": stage,
        "stage_template": stage,
        "stage_channel": channel,
        "stage_order": order,
    }
    return {**row, **overrides}


def no_stage(**overrides: object) -> dict[str, object]:
    """An account in no stage that day (current, or paid)."""
    row = {**a_stage(), "stage": "none", "stage_order": 0, "stage_channel": None}
    return {**row, "stage_template": None, **overrides}


def a_customer(**overrides: object) -> dict[str, object]:
    for group in ("email", "address", "phone"):  # accepted at noon of the day, unless told
        day = overrides.get(f"{group}_updated_on")
        if day is not None and f"{group}_updated_at" not in overrides:
            overrides[f"{group}_updated_at"] = _noon(day)
    return {**CUSTOMER_DEFAULTS, **overrides}


def make_marts(
    connection: duckdb.DuckDBPyConnection,
    stages: list[dict[str, object]],
    customers: list[dict[str, object]] | None = None,
) -> None:
    """marts.fct_account_stage_history and marts.dim_customers holding just these rows."""
    connection.execute("create schema if not exists marts")
    _table(connection, "marts.fct_account_stage_history", STAGE_DEFAULTS, STAGE_TYPES, stages)
    _table(
        connection,
        "marts.dim_customers",
        CUSTOMER_DEFAULTS,
        CUSTOMER_TYPES,
        customers if customers is not None else [a_customer()],
    )


def contacted(
    connection: duckdb.DuckDBPyConnection,
    *,
    account_id: str = "A1",
    stage: str = "reminder_1",
    day: dt.date,
    status: str = "sent",
    entered: dt.date | None = None,
    customer_id: str = "C1",
) -> str:
    """A contact an earlier run made (or planned): one ledger row. Returns its key."""
    channel, order = CHANNEL_OF[stage]
    entered = entered or day
    key = action_key(account_id, stage, channel, POLICY, entered)
    connection.execute(
        """
        insert into ops.action_ledger (
            action_key, account_id, customer_id, stage, stage_order, channel, template,
            policy_version, stage_entered_date, as_of_date, run_id, segment, currency,
            total_open, collectible_amount, status, reason, times_planned, attempts,
            planned_at, status_at, sent_at
        ) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'earlier-run', 'residential', 'USD',
                  120.00, 120.00, ?, null, 1, 1, ?, ?, ?)
        """,
        [
            key, account_id, customer_id, stage, order, channel, stage, POLICY, entered, day,
            status, _noon(day), _noon(day), _noon(day) if status == "sent" else None,
        ],
    )  # fmt: skip
    return key


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), dt.UTC)


def _table(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    defaults: dict[str, object],
    types: dict[str, str],
    rows: list[dict[str, object]],
) -> None:
    columns = list(defaults)
    definition = ", ".join(f"{column} {types.get(column, 'VARCHAR')}" for column in columns)
    connection.execute(f"create or replace table {name} ({definition})")
    if not rows:
        return
    connection.executemany(
        f"insert into {name} values ({', '.join('?' for _ in columns)})",
        [[row.get(column, defaults[column]) for column in columns] for row in rows],
    )


def a_raw_fact(
    connection: duckdb.DuckDBPyConnection,
    entity: str,
    *,
    loaded_at: dt.datetime,
    batch_id: int = 1,
    **values: str,
) -> None:
    """One loaded row of a billing entity, as ingest stores it (empty strings are NULL)."""
    from tests.builders import row

    fields = {key: (value or None) for key, value in row(entity, **values).items()}
    fields |= {
        "_batch_id": batch_id,
        "_file_name": f"{entity}.csv",
        "_line_number": 2,
        "_loaded_at": loaded_at,
    }
    names = ", ".join(fields)
    marks = ", ".join("?" for _ in fields)
    connection.execute(
        f"insert into raw.{entity} by name select * from (values ({marks})) as v({names})",
        list(fields.values()),
    )
    mark_superseded(connection, ENTITY_BY_NAME[entity], batch_id=batch_id)  # as a load does


def manual_holds(connection: duckdb.DuckDBPyConnection, *rows: tuple) -> None:
    """policy.manual_holds as the dbt seed makes it: (account_id, reason, start, end, by)."""
    connection.execute("create schema if not exists policy")
    connection.execute(
        "create or replace table policy.manual_holds (account_id VARCHAR, reason VARCHAR, "
        "start_date DATE, end_date DATE, entered_by VARCHAR)"
    )
    for each in rows:
        connection.execute("insert into policy.manual_holds values (?, ?, ?, ?, ?)", list(each))
