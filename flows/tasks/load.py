"""Task: load billing-export batches into the raw schema (one task for all batches of a run)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.lib.loader import BatchOutcome, load_batch
from flows.lib.pii import Keyring


@task(name="load-batches", cache_policy=NO_CACHE)  # inputs hold a live connection
def load_batches(
    connection: duckdb.DuckDBPyConnection, folders: list[Path], keyring: Keyring | None
) -> list[BatchOutcome]:
    """Load the batch folders in order; files loaded before are skipped. SSNs and dates of
    birth are encrypted with `keyring`; without one, a batch carrying any is refused."""
    logger = get_run_logger()
    outcomes = []
    for folder in folders:
        logger.info("batch %s: loading", folder.name)
        outcome = load_batch(
            connection,
            folder,
            progress=lambda step: logger.info("  %s", step),
            keyring=keyring,
            require_key=True,
        )
        if outcome.changed:
            logger.info(
                "batch %s: loaded as batch %s: %s rows loaded, %s quarantined, %s released",
                folder.name,
                outcome.batch_id,
                outcome.rows_loaded,
                outcome.rows_quarantined,
                outcome.rows_released,
            )
        else:
            logger.info("batch %s: every file was loaded before; nothing changed", folder.name)
        outcomes.append(outcome)
    return outcomes
