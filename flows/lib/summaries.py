"""Plain tables describing what a run did, for the CLI, artifacts and the run report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb

from flows.lib.contract import ENTITIES
from flows.lib.loader import BatchOutcome
from flows.lib.warehouse import scalar

if TYPE_CHECKING:
    from flows.daily_dunning import RunSummary


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


def contact_rows(summary: RunSummary) -> list[dict[str, object]]:
    """What the run did per channel, status and reason; for a dry run, what the plan would do."""
    if summary.contacts:
        held_back = summary.plan.held_back() if summary.plan is not None else {}
        rows = [
            {"channel": channel, "status": status, "reason": reason, "contacts": count}
            for (channel, status, reason), count in sorted(held_back.items())
        ] + [
            {"channel": channel.channel, "status": status, "reason": reason, "contacts": count}
            for channel in summary.contacts
            for (status, reason), count in sorted(channel.counts.items())
        ]
    elif summary.plan is not None:
        rows = [
            {"channel": channel, "status": status, "reason": reason or "", "contacts": count}
            for (channel, status, reason), count in sorted(
                summary.plan.counts.items(),
                key=lambda item: (item[0][0], item[0][1], str(item[0][2])),
            )
        ]
    else:
        rows = []
    rows += [
        {"channel": "(re-check)", "status": what, "reason": "", "contacts": count}
        for what, count in summary.rechecked.items()
    ]
    return rows


def contact_files(summary: RunSummary) -> list[str]:
    """Where each channel's output went, one line each."""
    lines = []
    for channel in summary.contacts:
        sent = channel.total("sent")
        if channel.channel == "email" and sent:
            where = (
                f"written as .eml files to {channel.files[0]}"
                if channel.provider == "outbox" and channel.files
                else f"accepted by {channel.provider}"
            )
            later = (
                f" ({channel.scheduled:,} scheduled for the send window)"
                if channel.scheduled
                else ""
            )
            lines.append(f"Emails: {sent:,} {where}{later}.")
        elif channel.channel == "letter" and sent:
            lines.append(f"Letters: {sent:,} PDFs; print manifest {channel.files[0]}")
        elif channel.channel == "queue" and sent:
            lines.append(f"Work queue: {sent:,} items in {channel.files[0]}")
    return lines


def contact_status_rows(connection: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Contacts per channel and status, one row per channel."""
    from flows.lib.ledger import status_counts

    counts = status_counts(connection)
    statuses = ("planned", "sent", "maybe_sent", "failed", "deferred", "suppressed", "cancelled")
    return [
        {"channel": channel, **{status: counts.get((channel, status), 0) for status in statuses}}
        for channel in sorted({channel for channel, _ in counts})
    ]


def freshness(connection: duckdb.DuckDBPyConnection) -> str:
    """How current the warehouse is: the newest payment loaded, the date the marts are built
    for, and the date the last run planned contacts for."""
    from flows.lib.gates import latest_build
    from flows.lib.warehouse import scalar

    newest_payment = scalar(connection, "select max(received_date) from raw.payments_latest")
    built = latest_build(connection)
    planned = scalar(connection, "select max(as_of_date) from ops.action_ledger")
    return (
        f"newest payment received {newest_payment or 'never'}; marts built for "
        f"{built or 'no date yet'}; contacts last planned for {planned or 'no date yet'}"
    )


def agency_rows(connection: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, object]], int]:
    """Placements per agency, status and currency (with balances), and quarantined lines."""
    rows = connection.execute(
        """
        select agency_id, status, currency, count(*), sum(placed_balance)
        from ops.placements group by all order by all
        """
    ).fetchall()
    quarantined = connection.execute("select count(*) from ops.remittance_quarantine").fetchall()
    return (
        [
            {
                "agency": agency,
                "status": status,
                "currency": currency,
                "accounts": count,
                "placed balance": f"{balance:,.2f}",
            }
            for agency, status, currency, count, balance in rows
        ],
        quarantined[0][0],
    )


def skip_trace_rows(
    connection: duckdb.DuckDBPyConnection,
) -> tuple[list[dict[str, object]], int]:
    """Skip-trace requests per status (with the oldest request date), and quarantined lines."""
    rows = connection.execute(
        """
        select status, count(*), min(requested_on), max(requested_on)
        from ops.skip_requests group by status order by status
        """
    ).fetchall()
    quarantined = connection.execute("select count(*) from ops.skip_quarantine").fetchall()
    return (
        [
            {"status": status, "requests": count, "oldest": str(oldest), "newest": str(newest)}
            for status, count, oldest, newest in rows
        ],
        quarantined[0][0],
    )
