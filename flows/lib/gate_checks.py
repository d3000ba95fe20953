"""The data checks of the two gates, as SQL that finds offending rows.

SQL does the heavy part (a scan of the warehouse that returns only offending rows); Great
Expectations judges the small result: one row per check with its violation count (see
`gates.py` and the suites in `expectations/`). Each query takes the run's as-of date as a
literal and returns offending rows with columns a person can act on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from flows.lib.contract import ENTITIES

GateName = Literal["gate_raw", "gate_warehouse"]


@dataclass(frozen=True)
class Check:
    gate: GateName
    name: str
    description: str
    sql: str  # offending rows; `{as_of}` and `{freshness_days}` are filled in


def _key_duplicates() -> str:
    """One version of a key per batch: the loader quarantines duplicates within a file, so a
    second copy in one batch means the raw tables were written some other way."""
    parts = []
    for entity in ENTITIES:
        key = ", ".join(entity.key)
        parts.append(
            f"select '{entity.name}' as entity, _batch_id as batch_id, "
            f"concat_ws('|', {key}) as record_key, count(*) as copies "
            f"from raw.{entity.name} group by _batch_id, {key} having count(*) > 1"
        )
    return " union all ".join(parts)


def _required_missing() -> str:
    parts = []
    for entity in ENTITIES:
        for column in entity.required_names:
            key = ", ".join(entity.key)
            parts.append(
                f"select '{entity.name}' as entity, '{column}' as column_name, "
                f"concat_ws('|', {key}) as record_key "
                f"from raw.{entity.name}_latest where {column} is null"
            )
    return " union all ".join(parts)


def _enum_violations() -> str:
    parts = []
    for entity in ENTITIES:
        for column in entity.columns:
            if column.kind != "enum":
                continue
            allowed = ", ".join(f"'{value}'" for value in column.values)
            parts.append(
                f"select '{entity.name}' as entity, '{column.name}' as column_name, "
                f"{column.name} as value from raw.{entity.name}_latest "
                f"where {column.name} is not null and {column.name} not in ({allowed})"
            )
    return " union all ".join(parts)


def _amount_violations() -> str:
    parts = []
    for entity in ENTITIES:
        for column in entity.columns:
            if column.kind != "amount":
                continue
            minimum = "< 0" if column.allow_zero else "<= 0"
            key = ", ".join(entity.key)
            parts.append(
                f"select '{entity.name}' as entity, concat_ws('|', {key}) as record_key, "
                f"{column.name} as amount from raw.{entity.name}_latest "
                f"where {column.name} {minimum} "
                f"or {column.name} * 100 <> floor({column.name} * 100)"
            )
    return " union all ".join(parts)


def _currency_mismatches() -> str:
    parts = []
    for entity in ENTITIES:
        if not entity.currency_column:
            continue
        key = ", ".join(f"item.{column}" for column in entity.key)
        parts.append(
            f"select '{entity.name}' as entity, concat_ws('|', {key}) as record_key, "
            f"item.{entity.currency_column} as currency, account.currency as account_currency "
            f"from raw.{entity.name}_latest as item "
            f"inner join raw.accounts_latest as account on item.account_id = account.account_id "
            f"where item.{entity.currency_column} <> account.currency"
        )
    return " union all ".join(parts)


CHECKS: tuple[Check, ...] = (
    # --- gate 1: the raw batch, before dbt ---------------------------------------------
    Check("gate_raw", "keys_unique", "Each key is loaded once per batch.", _key_duplicates()),
    Check(
        "gate_raw", "required_fields_present", "Required fields are filled.", _required_missing()
    ),
    Check("gate_raw", "enums_known", "Enum columns hold allowed values only.", _enum_violations()),
    Check(
        "gate_raw",
        "due_date_not_before_issue_date",
        "No invoice is due before it is issued.",
        "select invoice_id, issue_date, due_date from raw.invoices_latest "
        "where due_date < issue_date",
    ),
    Check(
        "gate_raw",
        "amounts_positive_with_two_decimals",
        "Amounts are greater than 0 (credit limits 0 or more) with at most 2 decimals.",
        _amount_violations(),
    ),
    Check(
        "gate_raw",
        "currencies_match_accounts",
        "Every amount is in its account's currency (latest versions).",
        _currency_mismatches(),
    ),
    Check(
        "gate_raw",
        "payments_fresh",
        "The newest payment is at most gates.freshness_days old on the as-of date: an export "
        "that stopped bringing payments would make every payer look late.",
        "select max(received_date) as newest_payment, "
        "date '{as_of}' - max(received_date) as days_old from raw.payments_latest "
        "where received_date <= date '{as_of}' "
        "having (max(received_date) is null and exists ("
        "select 1 from raw.invoices_latest where issue_date <= date '{as_of}')) "
        "or date '{as_of}' - max(received_date) > {freshness_days}",
    ),
    # --- gate 2: the marts, after dbt ----------------------------------------------------
    Check(
        "gate_warehouse",
        "open_amounts_not_negative",
        "No open item has a negative open amount.",
        "select item_id, account_id, open_amount from marts.fct_invoice_aging "
        "where as_of_date = date '{as_of}' and open_amount < 0",
    ),
    Check(
        "gate_warehouse",
        "buckets_sum_to_total_open",
        "Each account's aging buckets add up to its total_open.",
        "select account_id, total_open, current + dpd_1_30 + dpd_31_60 + dpd_61_90 "
        "+ dpd_91_120 + dpd_121_150 + dpd_151_180 + dpd_181_plus as bucket_sum "
        "from marts.fct_account_aging where as_of_date = date '{as_of}' and total_open <> "
        "current + dpd_1_30 + dpd_31_60 + dpd_61_90 + dpd_91_120 + dpd_121_150 "
        "+ dpd_151_180 + dpd_181_plus",
    ),
    Check(
        "gate_warehouse",
        "ledger_reconciles",
        "Per account and in total per currency: total_open - credit_balance equals invoices "
        "issued + fees and interest + refunds - payments in effect - credit notes and "
        "write-offs - agency collections not in billing (less any refund beyond the credit, "
        "flagged as refund_shortfall).",
        """
        with reversed as (
            select distinct reverses_payment_id as payment_id from raw.payments_latest
            where reverses_payment_id is not null and received_date <= date '{as_of}'
        ),
        movements as (
            select account_id, amount as net from raw.invoices_latest
            where issue_date <= date '{as_of}'
            union all
            select account_id, -amount from raw.payments_latest
            where received_date <= date '{as_of}' and reverses_payment_id is null
                and payment_id not in (select payment_id from reversed)
            union all
            select account_id,
                case when kind in ('credit_note', 'write_off') then -amount else amount end
            from raw.adjustments_latest where effective_date <= date '{as_of}'
            union all
            -- what agencies collected that the billing export does not (yet) hold
            select account_id, -collected_amount from marts.fct_remittance_reconciliation
            where reconciliation_status = 'agency_only' and paid_date <= date '{as_of}'
        ),
        ledger as (
            select account_id, sum(net) as ledger_net from movements group by account_id
        ),
        aging as (
            select account_id, currency, total_open - credit_balance + refund_shortfall as aging_net
            from marts.fct_account_aging where as_of_date = date '{as_of}'
        ),
        compared as (
            select accounts.account_id, accounts.currency,
                coalesce(ledger.ledger_net, 0) as ledger_net,
                coalesce(aging.aging_net, 0) as aging_net
            from raw.accounts_latest as accounts
            left join ledger on accounts.account_id = ledger.account_id
            left join aging on accounts.account_id = aging.account_id
        )
        select account_id, currency, ledger_net, aging_net from compared
        where ledger_net <> aging_net
        union all
        select 'TOTAL ' || currency, currency, sum(ledger_net), sum(aging_net) from compared
        group by currency having sum(ledger_net) <> sum(aging_net)
        """,
    ),
    Check(
        "gate_warehouse",
        "one_stage_per_account",
        "Every aged account has exactly one stage for the as-of date.",
        "select aging.account_id, count(stage.account_id) as stages "
        "from marts.fct_account_aging as aging "
        "left join marts.fct_account_stage_history as stage "
        "on aging.account_id = stage.account_id and stage.as_of_date = date '{as_of}' "
        "where aging.as_of_date = date '{as_of}' "
        "group by aging.account_id having count(stage.account_id) <> 1",
    ),
    Check(
        "gate_warehouse",
        "held_accounts_not_advanced",
        "No held account moved up the ladder (a held account is never scheduled for contact).",
        "select account_id, previous_stage, stage, hold_reason "
        "from marts.fct_account_stage_history where as_of_date = date '{as_of}' "
        "and is_held and stage_entered_date = date '{as_of}' "
        "and stage is distinct from coalesce(previous_stage, 'none')",
    ),
)


def checks_of(gate: GateName) -> tuple[Check, ...]:
    return tuple(check for check in CHECKS if check.gate == gate)


def render(check: Check, as_of: dt.date, freshness_days: int) -> str:
    return check.sql.replace("{as_of}", as_of.isoformat()).replace(
        "{freshness_days}", str(freshness_days)
    )
