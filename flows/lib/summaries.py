"""Plain tables describing what a run did, for the CLI, artifacts and the run report."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from flows.lib.contract import ENTITIES
from flows.lib.loader import BatchOutcome
from flows.lib.warehouse import scalar


def batch_title(outcome: BatchOutcome) -> str:
    if outcome.changed:
        return f"{outcome.folder.name}: loaded as batch {outcome.batch_id}"
    return f"{outcome.folder.name}: every file was loaded before"


def batch_rows(outcome: BatchOutcome) -> list[dict[str, object]]:
    """One row per file of a batch: what happened to it."""
    return [
        {
            "file": file.file_name,
            "status": file.status
            if file.status == "loaded"
            else f"unchanged (batch {file.loaded_in_batch})",
            "rows read": file.rows_read,
            "loaded": file.rows_loaded,
            "quarantined": file.rows_quarantined,
        }
        for file in outcome.files
    ]


def all_batch_rows(outcomes: Sequence[BatchOutcome]) -> list[dict[str, object]]:
    """Every file of every batch, with its batch folder (for artifacts)."""
    return [
        {"batch folder": outcome.folder.name, **file_row}
        for outcome in outcomes
        for file_row in batch_rows(outcome)
    ]


def warehouse_rows(connection: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Row counts of the raw tables: every version, and the latest per key."""
    rows = []
    for entity in ENTITIES:
        rows.append(
            {
                "table": f"raw.{entity.name}",
                "versions": scalar(connection, f"select count(*) from raw.{entity.name}"),
                "latest": scalar(connection, f"select count(*) from raw.{entity.name}_latest"),
            }
        )
    return rows


def quarantine_rows(
    connection: duckdb.DuckDBPyConnection, limit: int = 20
) -> list[dict[str, object]]:
    """Quarantined rows still waiting for a fix, newest first."""
    result = connection.execute(
        """
        select batch_id, file_name, line_number, status, reasons
        from raw.quarantine
        where status in ('rejected', 'held')
        order by batch_id desc, file_name, line_number
        limit ?
        """,
        [limit],
    ).fetchall()
    return [
        {"batch": batch, "file": file, "line": line, "status": status, "reason": reasons}
        for batch, file, line, status, reasons in result
    ]


def quarantine_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    result = connection.execute(
        "select status, count(*) from raw.quarantine group by status"
    ).fetchall()
    return {status: count for status, count in result}


def stage_rows(connection: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Accounts and collectible balance per stage (held accounts apart), per currency."""
    result = connection.execute(
        """
        select
            stage.stage_order,
            stage.stage,
            stage.currency,
            count(*) filter (where not stage.is_held) as accounts,
            count(*) filter (where stage.is_held) as held,
            sum(stage.collectible_amount) as collectible
        from marts.fct_account_stage as stage
        group by all
        order by stage.stage_order, stage.currency
        """
    ).fetchall()
    return [
        {"stage": stage, "currency": currency, "accounts": accounts, "held": held,
         "collectible": f"{collectible:,.2f}"}
        for _, stage, currency, accounts, held, collectible in result
    ]  # fmt: skip
