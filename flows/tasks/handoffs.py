"""Tasks: the day's files for the billing system and the attorneys at the end of the ladder —
write-off recommendations for settlements paid, legal referrals, credit holds and their
releases."""

from __future__ import annotations

import datetime as dt

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.credit_holds import CreditHoldOutcome, update_credit_holds
from flows.lib.legal_referral import LegalOutcome, refer_to_legal
from flows.lib.planner import ContactScope
from flows.lib.settlements import WriteOffOutcome, recommend_write_offs


@task(name="write-offs", cache_policy=NO_CACHE)  # inputs hold a live connection
def write_offs(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
    *,
    dry_run: bool = False,
) -> WriteOffOutcome:
    """Settlements paid in full: the remainder, once, as a recommended adjustment for billing."""
    outcome = recommend_write_offs(
        connection, settings, as_of, run_id, scope=scope, dry_run=dry_run
    )
    get_run_logger().info("write-offs: %s", outcome)
    return outcome


@task(name="legal-referral", cache_policy=NO_CACHE)
def legal_referrals(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
    *,
    dry_run: bool = False,
) -> LegalOutcome:
    """Accounts at the legal-referral stage, to the attorneys (never time-barred, bankrupt,
    deceased, servicemember or disputed ones); referrals withdrawn when the account cures."""
    outcome = refer_to_legal(connection, settings, as_of, run_id, scope=scope, dry_run=dry_run)
    get_run_logger().info("legal referral: %s", outcome)
    return outcome


@task(name="credit-holds", cache_policy=NO_CACHE)  # inputs hold a live connection
def credit_holds(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    scope: ContactScope,
    *,
    dry_run: bool = False,
) -> CreditHoldOutcome:
    """Accounts billing should put on credit hold today, and the holds that cured."""
    outcome = update_credit_holds(connection, settings, as_of, run_id, scope=scope, dry_run=dry_run)
    get_run_logger().info("%s", outcome)
    return outcome
