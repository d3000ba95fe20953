"""Read one export file into a temporary DuckDB table of text columns with line numbers.

The result, `_read`, has `_line` (a text editor's line number, header = 1; for Parquet the
1-based row number) and one VARCHAR column per header column. Records DuckDB cannot split into
the header's columns come back as `unreadable` rows to be quarantined, never dropped.

CSV goes through DuckDB's parallel reader, with line numbers from `csv_lines`. When the two
disagree on the number of records (stray quotes can fool the line index), the file is read
again with Python's csv module, which is slower but counts lines itself.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from flows.lib.csv_lines import record_lines
from flows.lib.export_files import BatchError, ExportFile
from flows.lib.warehouse import scalar

READ_TABLE = "_read"
REJECTS_TABLE = "_read_rejects"
REJECT_SCANS_TABLE = "_read_reject_scans"
RAW_LINE_CHARS = 500
NOT_UTF8 = "holds bytes that are not UTF-8 text"
# DuckDB's own limit, stated so the message can name it: a longer record is unreadable
MAX_LINE_BYTES = 2_000_000


@dataclass(frozen=True)
class Unreadable:
    line: int
    message: str
    raw_line: str


@dataclass(frozen=True)
class ReadResult:
    rows: int  # rows in `_read`
    unreadable: tuple[Unreadable, ...]


def read_table_name(export: ExportFile) -> str:
    return f"{READ_TABLE}_{export.entity.name}"


def read_export_file(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> ReadResult:
    """Fill `_read_<entity>`. Call outside a transaction: the line join relies on rowids,
    which DuckDB numbers from 0 only for rows it has committed."""
    if export.file_format == "parquet":
        return _read_parquet(connection, export)
    return _read_csv(connection, export)


def _read_parquet(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> ReadResult:
    """Strings as they are; a binary column (text written without its UTF-8 annotation) is
    decoded as UTF-8, and a row holding bytes that are not UTF-8 comes back unreadable (a
    plain cast would turn "Zoë" into the ten characters "Zo\\xC3\\xAB")."""
    table = read_table_name(export)
    try:
        described = connection.execute(
            "select * from read_parquet(?) limit 0", [str(export.path)]
        ).description
        binary = {name for name, kind, *_ in described if str(kind) == "BLOB"}
        selected = ", ".join(
            f'try(decode("{name}")) as {name}'
            if name in binary
            else f'cast("{name}" as VARCHAR) as {name}'
            for name in export.columns
        )
        undecodable = " or ".join(
            f'("{name}" is not null and try(decode("{name}")) is null)'
            for name in export.columns
            if name in binary
        )
        connection.execute(
            f"create or replace temp table {table} as "
            f"select cast(row_number() over () as BIGINT) as _line, "
            f"{undecodable or 'false'} as _undecodable, {selected} "
            f"from read_parquet(?)",
            [str(export.path)],
        )
    except duckdb.Error as error:
        raise BatchError(f"{export.name}: cannot read this Parquet file ({error}).") from None
    bad_lines = [
        line
        for (line,) in connection.execute(
            f"select _line from {table} where _undecodable order by _line"
        ).fetchall()
    ]
    connection.execute(f"delete from {table} where _undecodable")
    connection.execute(f"alter table {table} drop column _undecodable")
    rows = scalar(connection, f"select count(*) from {table}")
    unreadable = tuple(Unreadable(line, NOT_UTF8, "") for line in bad_lines)
    return ReadResult(rows=rows, unreadable=unreadable)


def _read_csv(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> ReadResult:
    columns = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in export.columns) + "}"
    connection.execute(f"drop table if exists {REJECTS_TABLE}")
    connection.execute(f"drop table if exists {REJECT_SCANS_TABLE}")
    try:
        connection.execute(
            f"""
            create or replace temp table _read_scan as
            select * from read_csv(
                ?, header = true, auto_detect = false, columns = {columns},
                delim = ',', quote = '"', escape = '"', max_line_size = {MAX_LINE_BYTES},
                store_rejects = true, rejects_table = '{REJECTS_TABLE}',
                rejects_scan = '{REJECT_SCANS_TABLE}'
            )
            """,
            [str(export.path)],
        )
    except duckdb.Error as error:
        raise BatchError(f"{export.name}: cannot be read as CSV ({error}).") from None
    rows = scalar(connection, "select count(*) from _read_scan")
    rejected = connection.execute(
        f"""
        select line, string_agg(distinct error_message, '; '), any_value(csv_line)
        from {REJECTS_TABLE}
        group by line
        order by line
        """
    ).fetchall()
    index = record_lines(export.path)
    if index.unterminated_quote_line is not None:
        connection.execute("drop table _read_scan")
        raise BatchError(
            f"{export.name}: line {index.unterminated_quote_line} opens a quoted field that "
            "never closes, so the rest of the file cannot be read. Close the quote (or remove "
            "it) and send the file again. Nothing from this batch was loaded."
        )
    record_numbers = index.data_record_numbers
    rejected_numbers = np.array([line for line, _, _ in rejected], dtype=np.int64)
    kept = record_numbers[~np.isin(record_numbers, rejected_numbers)]
    consistent = (
        index.quotes_well_placed
        and kept.size == rows
        and bool(np.isin(rejected_numbers, record_numbers).all() if rejected_numbers.size else True)
    )
    if not consistent:
        connection.execute("drop table _read_scan")
        return _read_csv_exactly(connection, export)
    lines = pa.table({"_ord": np.arange(rows, dtype=np.int64), "_line": index.first_line[kept - 1]})
    connection.register("_read_lines", lines)
    selected = ", ".join(f"s.{name}" for name in export.columns)
    connection.execute(
        f"""
        create or replace temp table {read_table_name(export)} as
        select l._line, {selected}
        from _read_scan as s
        inner join _read_lines as l on s.rowid = l._ord
        """
    )
    connection.unregister("_read_lines")
    connection.execute("drop table _read_scan")
    unreadable = tuple(
        Unreadable(
            line=index.line_of_record(int(number)),
            message=_plain_reject_message(message, raw or "", len(export.columns)),
            raw_line=(raw or "").strip("\r\n")[:RAW_LINE_CHARS],
        )
        for number, message, raw in rejected
    )
    return ReadResult(rows=rows, unreadable=unreadable)


def _read_csv_exactly(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> ReadResult:
    """Python's csv module: exact line numbers for files the fast path cannot index."""
    with export.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        try:
            return _read_rows_exactly(connection, export, csv.reader(handle, strict=False))
        except csv.Error as error:
            raise BatchError(
                f"{export.name}: cannot be read as CSV ({error}). Save it with LF or CRLF line "
                "endings and balanced quotes. Nothing from this batch was loaded."
            ) from None


def _read_rows_exactly(
    connection: duckdb.DuckDBPyConnection,
    export: ExportFile,
    reader: Any,  # a csv.reader
) -> ReadResult:
    width = len(export.columns)
    values: list[list[str | None]] = [[] for _ in range(width)]
    lines: list[int] = []
    unreadable: list[Unreadable] = []
    next(reader, None)  # header, checked before
    line = reader.line_num + 1
    for record in reader:
        raw = ",".join(record)
        if not record:
            line = reader.line_num + 1
            continue
        if len(record) != width:
            unreadable.append(
                Unreadable(
                    line,
                    f"has {len(record)} fields; the header has {width}",
                    raw[:RAW_LINE_CHARS],
                )
            )
        elif any(_has_undecodable(value) for value in record):
            unreadable.append(Unreadable(line, NOT_UTF8, ""))
        else:
            lines.append(line)
            for position, value in enumerate(record):
                values[position].append(value)
        line = reader.line_num + 1
    table = pa.table(
        {"_line": pa.array(lines, pa.int64())}
        | {name: pa.array(values[i], pa.string()) for i, name in enumerate(export.columns)}
    )
    connection.register("_read_exact", table)
    connection.execute(
        f"create or replace temp table {read_table_name(export)} as select * from _read_exact"
    )
    connection.unregister("_read_exact")
    return ReadResult(rows=len(lines), unreadable=tuple(unreadable))


def _has_undecodable(value: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in value)


def _plain_reject_message(message: str, raw_line: str, width: int) -> str:
    if "Expected Number of Columns" in message:
        # DuckDB reports one error per missing column; count the fields ourselves.
        found = len(next(csv.reader([raw_line.strip("\r\n")]), []))
        return f"has {found} fields; the header has {width}"
    if "unicode" in message.lower() or "utf" in message.lower():
        return NOT_UTF8
    if "Maximum line size" in message:
        size = re.search(r"Actual Size:\s*(\d+)", message)
        actual = f"{int(size.group(1)):,} bytes" if size else "too long"
        return (
            f"the row is {actual}; a row may be at most {MAX_LINE_BYTES:,} bytes (a field "
            "that large is not billing data)"
        )
    if "quote" in message.lower():
        return f"has a quote character in the wrong place ({message})"
    return message
