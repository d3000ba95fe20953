"""Flow `ingest`: billing export batch folders → DuckDB raw schema, bad rows quarantined."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.lib.config import load_settings
from flows.lib.export_files import batch_folders
from flows.lib.loader import BatchOutcome
from flows.lib.pii import keyring_for
from flows.lib.run_lock import run_lock
from flows.lib.summaries import all_batch_rows
from flows.lib.warehouse import connect_warehouse
from flows.tasks.load import load_batches


@flow(name="ingest")
def ingest(path: Path) -> list[BatchOutcome]:
    """Load the batch folder at `path` (or each batch subfolder of it) into the warehouse.
    A relative path is read inside RECOUP_HOME (a deployment runs from the repository)."""
    settings = load_settings()
    path = path if path.is_absolute() else settings.home / path
    folders = batch_folders(path)  # a missing or empty folder fails here, before the lock
    with run_lock(settings.path("state"), "ingest", settings.ingest.lock_wait_seconds):
        connection = connect_warehouse(settings)
        try:
            outcomes = load_batches(connection, folders, keyring_for(settings))
        finally:
            connection.close()
    create_table_artifact(
        key="ingest-summary",
        table=all_batch_rows(outcomes),
        description=f"Files loaded from {path}: rows loaded and quarantined per file.",
    )
    return outcomes
