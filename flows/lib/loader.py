"""Load one billing-export batch into the raw schema: check, load good rows, quarantine the rest.

One batch is one transaction: either every good row of every new file is loaded and every bad
row quarantined, or (on any error) nothing is written. Files whose content hash was loaded
before are skipped, so loading the same batch twice changes nothing.

For each entity, parents first:
  1. read the file into `_read` (text columns, line numbers), unreadable records aside;
  2. add the rows held from earlier batches for a missing parent;
  3. `_typed`: cast every column and collect per-row problems (row_checks);
  4. add the cross-row problems (link_checks);
  5. insert clean rows into raw.<entity>; quarantine the others; release held rows now clean.

SSNs and dates of birth are encrypted on their way into raw.customers (flows/lib/pii.py) with
the keyring given; without one they are not kept (only their clear parts, ssn_last4 and
birth_year), or, with `require_key` (the flows), a batch carrying any is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
from babel import Locale
from babel.numbers import get_territory_currencies

from flows.lib.contract import ENTITIES, Entity
from flows.lib.export_files import Batch, ExportFile, read_batch
from flows.lib.file_reader import ReadResult, read_export_file, read_table_name
from flows.lib.link_checks import ORPHAN, link_checks, record_key_sql
from flows.lib.pii import (
    Keyring,
    check_keyring,
    clear_parts_sql,
    encrypting,
    refuse_without_key,
    stored_values_sql,
)
from flows.lib.row_checks import REFERENCE_TABLES, row_problem_lists, typed_value
from flows.lib.warehouse import loaded_columns, mark_superseded, raw_table, scalar

ProgressCallback = Callable[[str], None]
REDACTED_IN_QUARANTINE = {"ssn", "date_of_birth"}


@dataclass(frozen=True)
class FileOutcome:
    entity: str
    file_name: str
    status: str  # loaded | unchanged
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    loaded_in_batch: int | None = None


@dataclass(frozen=True)
class BatchOutcome:
    folder: Path
    batch_id: int | None  # None when every file had been loaded before
    files: tuple[FileOutcome, ...]
    rows_released: int
    rows_held: int
    ignored: tuple[str, ...]

    @property
    def rows_loaded(self) -> int:
        return sum(file.rows_loaded for file in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(file.rows_quarantined for file in self.files)

    @property
    def changed(self) -> bool:
        return self.batch_id is not None


def load_batch(
    connection: duckdb.DuckDBPyConnection,
    folder: Path,
    *,
    progress: ProgressCallback | None = None,
    now: dt.datetime | None = None,
    keyring: Keyring | None = None,
    require_key: bool = False,
) -> BatchOutcome:
    """Load the batch in `folder`. Raises BatchError (nothing written) if a file is unreadable,
    PiiKeyWrong if `keyring` cannot open the SSNs stored before, and PiiKeyMissing (with
    `require_key` and no keyring) if the batch carries an SSN or a date of birth."""
    say = progress or (lambda _message: None)
    batch = read_batch(folder)  # header and format checks, before any write
    if keyring is not None:
        check_keyring(connection, keyring)
    loaded_at = now or dt.datetime.now(dt.UTC)
    already = _already_loaded(connection, batch)
    new_files = [file for file in batch.files if file.content_hash not in already]
    unchanged = [
        FileOutcome(
            file.entity.name, file.name, "unchanged", loaded_in_batch=already[file.content_hash]
        )
        for file in batch.files
        if file.content_hash in already
    ]
    if not new_files:
        return BatchOutcome(
            folder, None, tuple(unchanged), 0, _held_count(connection), batch.ignored
        )

    reads: dict[str, ReadResult] = {}
    for export in new_files:
        say(f"reading {export.name}")
        reads[export.entity.name] = read_export_file(connection, export)
    cleanup = contextlib.ExitStack()
    cleanup.enter_context(encrypting(connection, keyring))
    connection.execute("begin transaction")
    try:
        if keyring is None and require_key:
            for export in new_files:
                refuse_without_key(connection, read_table_name(export), export.columns, export.name)
        batch_id = _start_batch(connection, folder, loaded_at)
        _create_reference_tables(connection)
        outcomes: list[FileOutcome] = []
        released = 0
        for entity in ENTITIES:
            export = next((file for file in new_files if file.entity == entity), None)
            if export is None and not _has_held_rows(connection, entity):
                continue
            say(f"checking {entity.name}")
            read = reads.get(entity.name)
            outcome, released_here = _load_entity(
                connection, batch_id, entity, export, read, loaded_at, keyring is not None
            )
            released += released_here
            if outcome is not None:
                outcomes.append(outcome)
        _finish_batch(connection, batch_id, outcomes, released)
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        connection.execute("drop view if exists _in")
        for export in new_files:
            connection.execute(f"drop table if exists {read_table_name(export)}")
        cleanup.close()
    by_name = {file.file_name: file for file in [*outcomes, *unchanged]}
    ordered = tuple(by_name[file.name] for file in batch.files)
    return BatchOutcome(folder, batch_id, ordered, released, _held_count(connection), batch.ignored)


def _load_entity(
    connection: duckdb.DuckDBPyConnection,
    batch_id: int,
    entity: Entity,
    export: ExportFile | None,
    read: ReadResult | None,
    loaded_at: dt.datetime,
    encrypted: bool,
) -> tuple[FileOutcome | None, int]:
    _collect_candidates(connection, batch_id, entity, export)
    _check_rows(connection, entity)
    _check_links(connection, entity)
    columns = ", ".join(stored_values_sql(entity, encrypted=encrypted))
    clear_parts = "".join(f", {expression}" for expression in clear_parts_sql(entity))
    connection.execute(
        f"""
        insert into {raw_table(entity)} ({", ".join(loaded_columns(entity))})
        select {columns}, _batch_id, _file_name, _line,
            case when _quarantine_id is not null then ? end, ?{clear_parts}
        from _checked
        where len(_codes) = 0
        """,
        [batch_id, loaded_at],
    )
    key = ", ".join(entity.key)
    mark_superseded(  # the versions this batch made older: the latest views leave them out
        connection, entity, batch_id=batch_id,
        keys=f"select {key} from _checked where len(_codes) = 0",
    )  # fmt: skip
    released = scalar(
        connection,
        """
        update raw.quarantine as q
        set status = 'released', resolved_batch_id = ?
        from _checked as c
        where c._quarantine_id = q.quarantine_id and len(c._codes) = 0
        """,
        [batch_id],
    )
    connection.execute(
        f"""
        update raw.quarantine as q
        set status = case when {_only_orphans("c._codes")} then 'held' else 'rejected' end,
            reason_codes = c._codes,
            reasons = array_to_string(c._messages, '; ')
        from _checked as c
        where c._quarantine_id = q.quarantine_id and len(c._codes) > 0
        """
    )
    if export is None or read is None:
        return None, released
    quarantined = _quarantine_new_rows(connection, batch_id, entity, export, read, loaded_at)
    loaded = scalar(
        connection, "select count(*) from _checked where len(_codes) = 0 and _quarantine_id is null"
    )
    rows_read = read.rows + len(read.unreadable)
    connection.execute(
        "insert into raw.load_files values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch_id,
            entity.name,
            export.name,
            export.file_format,
            export.content_hash,
            export.size_bytes,
            rows_read,
            loaded,
            quarantined,
            loaded_at,
        ],
    )
    outcome = FileOutcome(
        entity.name, export.name, "loaded", rows_read, loaded, quarantined, batch_id
    )
    return outcome, released


def _collect_candidates(
    connection: duckdb.DuckDBPyConnection,
    batch_id: int,
    entity: Entity,
    export: ExportFile | None,
) -> None:
    """`_in`: this file's rows and the rows held for a missing parent, as trimmed text.

    `_row` tells the candidates apart: a file row's line number, or minus a held row's
    quarantine id (a window numbering 12 million rows took longer than the rest of the step).
    `_in` is a view, read twice (by `_typed`, and for the new rows that go to the quarantine):
    writing it out cost as much as typing it. Its held rows are those still held, so read it
    for them before their quarantine rows are updated."""
    parts = []
    if export is not None:
        present = set(export.columns)
        values = ", ".join(
            f"nullif(trim({name}), '') as {name}" if name in present else f"NULL::VARCHAR as {name}"
            for name in entity.column_names
        )
        parts.append(
            f"select _line as _row, _line, {batch_id} as _batch_id, '{export.name}' as _file_name, "
            f"NULL::BIGINT as _quarantine_id, {values} from {read_table_name(export)}"
        )
    held_values = ", ".join(
        f"nullif(trim(json_extract_string(row_json, '$.{name}')), '') as {name}"
        for name in entity.column_names
    )
    parts.append(
        f"select -quarantine_id as _row, line_number as _line, batch_id as _batch_id, "
        f"file_name as _file_name, quarantine_id as _quarantine_id, {held_values} "
        f"from raw.quarantine where entity = '{entity.name}' and status = 'held'"
    )
    connection.execute(f"create or replace temp view _in as {' union all '.join(parts)}")


def _check_rows(connection: duckdb.DuckDBPyConnection, entity: Entity) -> None:
    """`_typed`: typed values plus the per-row problem codes and messages."""
    codes, messages = row_problem_lists(entity)
    typed = ", ".join(f"{typed_value(column)} as {column.name}" for column in entity.columns)
    connection.execute(
        f"""
        create or replace temp table _typed as
        select _row, _line, _batch_id, _file_name, _quarantine_id, {typed},
            {codes} as _codes, {messages} as _messages
        from _in
        """
    )


def _check_links(connection: duckdb.DuckDBPyConnection, entity: Entity) -> None:
    """`_checked`: `_typed` with the cross-row problems appended, in two passes (a row whose
    parent is a row of the same entity needs that parent to have passed the first pass).

    The problems are appended in place, to the few rows that have them: rewriting every row
    of a 12-million-row file with its lists took most of this step."""
    first, second = link_checks(entity)
    _append_problems(connection, first)
    connection.execute("create or replace temp view _first_pass as select * from _typed")
    _append_problems(connection, second)
    connection.execute("drop view _first_pass")
    connection.execute("drop table if exists _checked")
    connection.execute("alter table _typed rename to _checked")


def _append_problems(connection: duckdb.DuckDBPyConnection, checks: list[str]) -> None:
    if not checks:
        return
    union = " union all ".join(f"({query})" for query in checks)
    connection.execute(
        f"""
        create or replace temp table _linked as
        select _row, list(code order by code) as codes, list(message order by code) as messages
        from ({union})
        group by _row
        """
    )  # all of a pass's problems before any is appended: the checks read `_typed`
    connection.execute(
        """
        update _typed as t
        set _codes = t._codes || l.codes, _messages = t._messages || l.messages
        from _linked as l
        where t._row = l._row
        """
    )
    connection.execute("drop table _linked")


def _quarantine_new_rows(
    connection: duckdb.DuckDBPyConnection,
    batch_id: int,
    entity: Entity,
    export: ExportFile,
    read: ReadResult,
    loaded_at: dt.datetime,
) -> int:
    json_fields = ", ".join(f"{name} := {_redacted(name)}" for name in entity.column_names)
    first_id = _next_quarantine_id(connection)
    inserted = scalar(
        connection,
        f"""
        insert into raw.quarantine
        select ? + row_number() over (order by c._line) - 1, ?, ?, ?, c._line,
            {record_key_sql(entity, "i")},
            case when {_only_orphans("c._codes")} then 'held' else 'rejected' end,
            c._codes, array_to_string(c._messages, '; '),
            to_json(struct_pack({json_fields})), ?, NULL
        from _checked as c
        inner join _in as i using (_row)
        where len(c._codes) > 0 and c._quarantine_id is null
        """,
        [first_id, batch_id, entity.name, export.name, loaded_at],
    )
    next_id = _next_quarantine_id(connection)
    for offset, bad in enumerate(read.unreadable):
        raw_line = "" if entity.name == "customers" else bad.raw_line  # may hold an SSN
        connection.execute(
            "insert into raw.quarantine values (?, ?, ?, ?, ?, NULL, 'rejected', "
            "['unreadable_row'], ?, to_json({'raw_line': ?}), ?, NULL)",
            [
                next_id + offset,
                batch_id,
                entity.name,
                export.name,
                bad.line,
                bad.message,
                raw_line,
                loaded_at,
            ],
        )
    return inserted + len(read.unreadable)


def _redacted(name: str) -> str:
    if name == "ssn":
        return (
            "case when regexp_full_match(i.ssn, '[0-9]{9}') then '*****' || right(i.ssn, 4) "
            "when i.ssn is not null then '(redacted)' end"
        )
    if name in REDACTED_IN_QUARANTINE:
        return f"case when i.{name} is not null then '(redacted)' end"
    return f"i.{name}"


def _only_orphans(codes: str) -> str:
    return f"len({codes}) > 0 and len(list_filter({codes}, lambda x: x <> '{ORPHAN}')) = 0"


# Two-letter codes CLDR lists that are not ISO 3166-1 countries (unions, reserved, unknown).
NOT_COUNTRIES = {"AC", "CP", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "ZZ"}


def _create_reference_tables(connection: duckdb.DuckDBPyConnection) -> None:
    countries = sorted(
        code
        for code in Locale("en").territories
        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    )
    # currencies in legal use today somewhere (not DEM, not the XXX/XTS placeholders)
    today = dt.date.today()
    currencies = sorted(
        {currency for country in countries for currency in get_territory_currencies(country, today)}
    )
    lists = {
        "currency": currencies,
        "country": countries,
        "timezone": sorted(zoneinfo.available_timezones()),
    }
    for kind, codes in lists.items():
        table = REFERENCE_TABLES[kind]
        connection.execute(f"create or replace temp table {table} (code VARCHAR)")
        connection.executemany(f"insert into {table} values (?)", [[code] for code in codes])


def _already_loaded(connection: duckdb.DuckDBPyConnection, batch: Batch) -> dict[str, int]:
    hashes = [file.content_hash for file in batch.files]
    rows = connection.execute(
        "select content_hash, entity, min(batch_id) from raw.load_files "
        "where content_hash in (select unnest(?)) group by all",
        [hashes],
    ).fetchall()
    known = {(content_hash, entity): batch_id for content_hash, entity, batch_id in rows}
    return {
        file.content_hash: known[(file.content_hash, file.entity.name)]
        for file in batch.files
        if (file.content_hash, file.entity.name) in known
    }


def _start_batch(connection: duckdb.DuckDBPyConnection, folder: Path, started: dt.datetime) -> int:
    batch_id = scalar(connection, "select coalesce(max(batch_id), 0) + 1 from raw.load_batches")
    connection.execute(
        "insert into raw.load_batches (batch_id, source_folder, started_at) values (?, ?, ?)",
        [batch_id, str(folder.resolve()), started],
    )
    return batch_id


def _finish_batch(
    connection: duckdb.DuckDBPyConnection,
    batch_id: int,
    outcomes: list[FileOutcome],
    released: int,
) -> None:
    connection.execute(
        """
        update raw.load_batches
        set finished_at = now(), files_loaded = ?, rows_loaded = ?, rows_quarantined = ?,
            rows_released = ?
        where batch_id = ?
        """,
        [
            len(outcomes),
            sum(outcome.rows_loaded for outcome in outcomes),
            sum(outcome.rows_quarantined for outcome in outcomes),
            released,
            batch_id,
        ],
    )


def _next_quarantine_id(connection: duckdb.DuckDBPyConnection) -> int:
    return scalar(connection, "select coalesce(max(quarantine_id), 0) + 1 from raw.quarantine")


def _has_held_rows(connection: duckdb.DuckDBPyConnection, entity: Entity) -> bool:
    return bool(
        scalar(
            connection,
            "select count(*) from raw.quarantine where entity = ? and status = 'held'",
            [entity.name],
        )
    )


def _held_count(connection: duckdb.DuckDBPyConnection) -> int:
    return scalar(connection, "select count(*) from raw.quarantine where status = 'held'")
