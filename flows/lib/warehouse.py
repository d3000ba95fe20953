"""The DuckDB warehouse file: opening it and the raw schema that ingest writes.

Raw tables keep every version of every row (history); `raw.<entity>_latest` views expose the
newest version of each key (latest batch wins, then the later line of that batch). Which
version is the newest is worked out once, when a batch loads: the versions it makes older get
`_superseded_in_batch` (mark_superseded), so the views are a plain filter, not a window over
every version of every row on every read (at a million accounts, 11 million payments). The
contract's sensitive columns (SSN, date of birth) are stored encrypted, as text, with their
clear parts (ssn_last4, birth_year) after the load metadata (flows/lib/pii.py). The file and
the folder recoup creates for it are owner-only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from flows.lib.agreements import ensure_agreement_schema
from flows.lib.bureau_records import ensure_bureau_schema
from flows.lib.contact_details import ensure_contact_schema
from flows.lib.contract import ENTITIES, STORAGE_TYPE, Entity
from flows.lib.credit_holds import ensure_credit_hold_schema
from flows.lib.ledger import ensure_ops_schema
from flows.lib.legal_referral import ensure_legal_schema
from flows.lib.offers import ensure_offer_schema
from flows.lib.output_files import FILE_MODE, owner_only_folder, owner_only_spill_folder
from flows.lib.pii import clear_part_columns, refuse_clear_values
from flows.lib.placements import ensure_agency_schema
from flows.lib.settlements import ensure_write_off_schema
from flows.lib.skip_tracing import ensure_skip_schema

if TYPE_CHECKING:
    from flows.lib.config import Settings

RAW_SCHEMA = "raw"
LOAD_METADATA_COLUMNS = (
    ("_batch_id", "INTEGER NOT NULL"),
    ("_file_name", "VARCHAR NOT NULL"),
    ("_line_number", "BIGINT NOT NULL"),
    ("_released_in_batch", "INTEGER"),
    ("_loaded_at", "TIMESTAMPTZ NOT NULL"),
)
# The batch that loaded a newer version of the row's key; NULL while the row is the newest.
# The raw tables' last column (older warehouses get it added, and their versions marked).
SUPERSEDED_COLUMN = "_superseded_in_batch"


# DuckDB writes the file anew (a checkpoint) once this much write-ahead log has piled up
# (default 16MB). Send steps commit once per request, and each checkpoint rewrites the changed
# parts of the action ledger, a cost that grows with the ledger: at 300,000 accounts the
# checkpoints were three quarters of the time the email step spent recording outcomes. The log
# keeps every commit durable; a clean close checkpoints, and after a crash the next open
# replays at most this much log.
CHECKPOINT_THRESHOLD = "256MB"


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file open for writing."""


def connect_warehouse(settings: Settings, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The configured warehouse, opened with the configured DuckDB limits (`duckdb:`)."""
    return open_warehouse(
        settings.warehouse_path, read_only=read_only, config=settings.duckdb_config()
    )


def open_warehouse(
    path: Path, *, read_only: bool = False, config: Mapping[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse file and make sure the raw schema exists.
    `config` holds DuckDB settings (memory_limit, temp_directory); its
    temp_directory is created owner-only, since spilled pages hold the warehouse's rows."""
    if read_only and not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `recoup ingest` or `recoup demo`.")
    owner_only_folder(path.parent)
    owner_only_spill_folder(config)
    created = not path.exists()
    try:
        connection = duckdb.connect(
            str(path),
            read_only=read_only,
            config={"checkpoint_threshold": CHECKPOINT_THRESHOLD, **dict(config or {})},
        )
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise WarehouseBusy(
                f"{path} is open in another program ({error}). Close the other connection "
                "(a SQL client in write mode, another recoup) and run again."
            ) from None
        raise
    if created:
        os.chmod(path, FILE_MODE)  # names, addresses and encrypted SSNs: the owner's only
    if not read_only:
        try:
            refuse_clear_values(connection, str(path))  # an older warehouse: SSNs in the clear
        except BaseException:
            connection.close()
            raise
        ensure_raw_schema(connection)
        ensure_ops_schema(connection)  # the action ledger: dbt's contact marts read it
        ensure_agency_schema(connection)  # placements and remittances: dbt reads them too
        ensure_bureau_schema(connection)  # what the bureaus hold: placements carry its DOFD
        ensure_skip_schema(connection)  # skip-trace requests, results and their quarantine
        ensure_contact_schema(connection)  # the contact details in use: skip-trace overrides
        ensure_offer_schema(connection)  # offers made: the negotiation marts read them
        ensure_agreement_schema(connection)  # recorded agreements: the plan models read them
        ensure_write_off_schema(connection)  # write-offs: fct_settlement_recovery reads them
        ensure_credit_hold_schema(connection)  # credit holds: fct_contact_log reads them
        ensure_legal_schema(connection)  # legal referrals: int_account_holds reads them
    return connection


def ensure_raw_schema(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(f"create schema if not exists {RAW_SCHEMA}")
    for entity in ENTITIES:
        connection.execute(_entity_table_ddl(entity))
        if not _has_column(connection, raw_table(entity), SUPERSEDED_COLUMN):  # an older recoup
            connection.execute(
                f"alter table {raw_table(entity)} add column {SUPERSEDED_COLUMN} INTEGER"
            )
            mark_superseded(connection, entity, batch_id=0)  # 0: no batch, this opening
        connection.execute(_latest_view_ddl(entity))
    connection.execute(
        f"""
        create table if not exists {RAW_SCHEMA}.load_batches (
            batch_id INTEGER PRIMARY KEY,
            source_folder VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            files_loaded INTEGER,
            rows_loaded BIGINT,
            rows_quarantined BIGINT,
            rows_released BIGINT
        )
        """
    )
    connection.execute(
        f"""
        create table if not exists {RAW_SCHEMA}.load_files (
            batch_id INTEGER NOT NULL,
            entity VARCHAR NOT NULL,
            file_name VARCHAR NOT NULL,
            file_format VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL,
            rows_read BIGINT NOT NULL,
            rows_loaded BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (entity, content_hash)
        )
        """
    )
    connection.execute(
        f"""
        create table if not exists {RAW_SCHEMA}.quarantine (
            quarantine_id BIGINT PRIMARY KEY,
            batch_id INTEGER NOT NULL,
            entity VARCHAR NOT NULL,
            file_name VARCHAR NOT NULL,
            line_number BIGINT NOT NULL,
            record_key VARCHAR,
            status VARCHAR NOT NULL,
            reason_codes VARCHAR[] NOT NULL,
            reasons VARCHAR NOT NULL,
            row_json JSON,
            quarantined_at TIMESTAMPTZ NOT NULL,
            resolved_batch_id INTEGER
        )
        """
    )
    connection.execute(
        f"comment on table {RAW_SCHEMA}.quarantine is 'Rows that broke the billing export "
        "contract. status: rejected (fix and resend), held (waits for a parent row that a later "
        "batch may bring; loads by itself then), released (loaded in resolved_batch_id).'"
    )


def raw_table(entity: Entity) -> str:
    return f"{RAW_SCHEMA}.{entity.name}"


def latest_view(entity: Entity) -> str:
    return f"{RAW_SCHEMA}.{entity.name}_latest"


def loaded_columns(entity: Entity) -> list[str]:
    """The columns of `entity`'s raw table a load writes, in order: the contract's, the load
    metadata, the clear parts (not SUPERSEDED_COLUMN, which is NULL for a new version)."""
    return [
        *entity.column_names,
        *(name for name, _ in LOAD_METADATA_COLUMNS),
        *(name for name, _ in clear_part_columns(entity)),
    ]


def _entity_table_ddl(entity: Entity) -> str:
    columns = [
        f"{column.name} {'VARCHAR' if column.sensitive else STORAGE_TYPE[column.kind]}"
        for column in entity.columns
    ]  # a sensitive value is stored encrypted: text
    columns += [f"{name} {sql_type}" for name, sql_type in LOAD_METADATA_COLUMNS]
    columns += [f"{name} {sql_type}" for name, sql_type in clear_part_columns(entity)]
    columns.append(f"{SUPERSEDED_COLUMN} INTEGER")
    return f"create table if not exists {raw_table(entity)} ({', '.join(columns)})"


def _latest_view_ddl(entity: Entity) -> str:
    return f"""
        create or replace view {latest_view(entity)} as
        select * exclude ({SUPERSEDED_COLUMN})
        from {raw_table(entity)}
        where {SUPERSEDED_COLUMN} is null
    """


def mark_superseded(
    connection: duckdb.DuckDBPyConnection,
    entity: Entity,
    *,
    batch_id: int,
    keys: str | None = None,
) -> int:
    """Mark the versions of `entity` that are no longer the newest of their key: among the
    versions not yet marked, every one but the newest (latest batch, then the later line of
    that batch; a held row released later keeps its own batch) gets `batch_id`. `keys` is a
    query of the key columns batch `batch_id` loaded (the only keys whose newest version can
    change), its file rows carrying that batch id, one per key; without it, every key (an
    older warehouse's first opening). Returns the number of versions marked."""
    key = ", ".join(entity.key)
    candidates = ""
    if keys is not None:
        # The batch's own versions (`_batch_id` = batch_id) hold one per key: a file's
        # duplicated keys are quarantined. So a key has an older version only if one of its
        # versions comes from elsewhere (an earlier batch, or a held row released now, which
        # keeps its batch), and a first load has none: it skips the count over all its rows.
        candidates = f"""and ({key}) in ({keys}) and ({key}) in (
                    select {key} from {raw_table(entity)}
                    where {SUPERSEDED_COLUMN} is null and _batch_id <> {int(batch_id)}
                )"""
    matches = " and ".join(f"raw_row.{name} = older.{name}" for name in entity.key)
    return scalar(
        connection,
        f"""
        update {raw_table(entity)} as raw_row
        set {SUPERSEDED_COLUMN} = ?
        from (
            select {key}, _batch_id, _line_number
            from {raw_table(entity)}
            where {SUPERSEDED_COLUMN} is null and ({key}) in (
                select {key}
                from {raw_table(entity)}
                where {SUPERSEDED_COLUMN} is null {candidates}
                group by all
                having count(*) > 1
            )
            qualify row_number() over (
                partition by {key} order by _batch_id desc, _line_number desc
            ) > 1
        ) as older
        where {matches}
            and raw_row._batch_id = older._batch_id
            and raw_row._line_number = older._line_number
        """,
        [batch_id],
    )


def _has_column(connection: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    schema, name = table.split(".")
    return bool(
        scalar(
            connection,
            "select count(*) from duckdb_columns() where database_name = current_database() "
            "and schema_name = ? and table_name = ? and column_name = ?",
            [schema, name, column],
        )
    )


def scalar(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None):
    """The single value of a one-row query (or the row count of a write), fully fetched.

    DuckDB 2 refuses new work on a connection while a result is half-read, so never leave a
    `fetchone()` hanging: use this.
    """
    rows = connection.execute(sql, parameters or []).fetchall()
    return rows[0][0] if rows else None
