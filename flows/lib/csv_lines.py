"""Text-editor line numbers for the records of a CSV file, found without a Python row loop.

DuckDB reads CSV fast but does not say on which line a row stood, and its rejected-row report
counts records, not lines (a quoted field holding a line break makes the two differ). This
module finds every record's first line with numpy: a line break ends a record when an even
number of quote characters stands before it (RFC 4180 escapes a quote by doubling it, so the
parity of the count tells whether we are inside a quoted field).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

QUOTE = ord('"')
NEWLINE = ord("\n")
CARRIAGE_RETURN = ord("\r")
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 1 << 26  # 64 MiB a read


@dataclass(frozen=True)
class RecordLines:
    """Where each record of a CSV file starts.

    `first_line[i]` is the 1-based line of record i+1 as DuckDB counts records: every
    line-break-terminated record, the header and blank lines included. `blank[i]` says whether
    that record is an empty line (which DuckDB skips without a word).
    """

    first_line: np.ndarray
    blank: np.ndarray
    # Every quote sits where RFC 4180 allows one (opening a field, closing it before a
    # delimiter or line break, or doubled inside it). When not, the parity rule above cannot
    # be trusted and the caller must read the file another way.
    quotes_well_placed: bool = True
    # The line where a quoted field opens and never closes, if any: the file cannot be parsed.
    unterminated_quote_line: int | None = None

    @property
    def data_record_numbers(self) -> np.ndarray:
        """DuckDB's 1-based numbers of the non-blank records after the header, in file order."""
        numbers = np.flatnonzero(~self.blank) + 1
        return numbers[numbers != 1]  # the header

    @property
    def data_record_lines(self) -> np.ndarray:
        """Lines of the non-blank records after the header, in file order."""
        return self.first_line[self.data_record_numbers - 1]

    def line_of_record(self, record_number: int) -> int:
        """The line of DuckDB's 1-based record number."""
        return int(self.first_line[record_number - 1])


def record_lines(path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> RecordLines:
    """Index the records of the CSV file at `path`, reading it `chunk_bytes` at a time."""
    size = path.stat().st_size
    if size == 0:
        return RecordLines(np.array([1], dtype=np.int64), np.array([True]))
    return _index(_scan(path, size, chunk_bytes))


@dataclass(frozen=True)
class _Scan:
    """Where the line breaks and quotes of a file are, and the bytes next to them."""

    size: int
    head: bytes  # the first three bytes (a byte order mark?)
    newlines: np.ndarray  # offsets of the line feeds
    after_newline: np.ndarray  # the byte after each (0 past the end of the file)
    quotes: np.ndarray  # offsets of the quote characters
    before_quote: np.ndarray  # the byte before each (0 before the start of the file)
    after_quote: np.ndarray  # the byte after each (0 past the end of the file)


def _scan(path: Path, size: int, chunk_bytes: int) -> _Scan:
    """One pass over the file in windows of `chunk_bytes` plus the byte on each side, into one
    reused buffer: the memory is the window and the offsets found, whatever the file's size
    (mapping the file and comparing it whole cost two to three times its size)."""
    window_buffer = np.empty(chunk_bytes + 2, dtype=np.uint8)
    parts: defaultdict[str, list[np.ndarray]] = defaultdict(list)  # _Scan's arrays, by window
    with path.open("rb", buffering=0) as handle:
        head = handle.read(len(UTF8_BOM))
        for low in range(0, size, chunk_bytes):
            start, stop = max(low - 1, 0), min(low + chunk_bytes + 1, size)
            window = window_buffer[: stop - start]
            handle.seek(start)
            _read_into(handle, window)
            core = low - start  # where the chunk begins in the window: 0 or 1
            core_end = core + min(chunk_bytes, size - low)
            for name, byte, before, after in (
                ("newlines", NEWLINE, None, "after_newline"),
                ("quotes", QUOTE, "before_quote", "after_quote"),
            ):
                found = np.flatnonzero(window[core:core_end] == byte) + core
                parts[name].append(found + start)
                if before is not None:
                    parts[before].append(_byte_at(window, found - 1))
                parts[after].append(_byte_at(window, found + 1))
    return _Scan(size=size, head=head, **{name: np.concatenate(parts[name]) for name in parts})


def _read_into(handle: BinaryIO, window: np.ndarray) -> None:
    view, filled = memoryview(window), 0
    while filled < window.size:
        count = handle.readinto(view[filled:])
        if not count:
            raise OSError(f"{handle.name}: the file got shorter while it was read")
        filled += count


def _byte_at(window: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """window[positions], 0 where a position falls outside the window (the file's ends)."""
    inside = (positions >= 0) & (positions < window.size)
    values = np.zeros(positions.size, dtype=np.uint8)
    values[inside] = window[positions[inside]]
    return values


def _index(scan: _Scan) -> RecordLines:
    size, newlines, quotes = scan.size, scan.newlines, scan.quotes
    if quotes.size:  # a line break ends a record after an even number of quotes
        ends_record = np.flatnonzero(np.searchsorted(quotes, newlines) % 2 == 0)
    else:
        ends_record = np.arange(newlines.size)
    # record i+1 starts after the line break ends_record[i], on the line after it; record 1
    # starts the file
    first_line = np.concatenate(([1], ends_record + 2))
    first_bytes = np.concatenate(
        (np.frombuffer(scan.head[:1], np.uint8), scan.after_newline[ends_record])
    )
    record_ends = newlines[ends_record]
    del ends_record
    length = np.diff(record_ends, prepend=-1, append=size) - 1  # bytes before the line break
    del record_ends
    if first_line.size > 1 and length[-1] == 0:  # the file ends with a line break
        first_line, first_bytes, length = first_line[:-1], first_bytes[:-1], length[:-1]
    blank = (length == 0) | ((length == 1) & (first_bytes == CARRIAGE_RETURN))
    bom = scan.head == UTF8_BOM
    if bom:
        blank[0] = length[0] == 3
    unterminated = None
    if quotes.size % 2 == 1:  # the last quoted field never closes
        unterminated = int(np.searchsorted(newlines, quotes[-1]) + 1)
    return RecordLines(
        first_line,
        blank,
        quotes_well_placed=_quotes_well_placed(scan, 3 if bom else 0),
        unterminated_quote_line=unterminated,
    )


def _quotes_well_placed(scan: _Scan, first_byte: int) -> bool:
    """Opening quotes (even position in the sequence) follow a delimiter, a line break, the
    start of the file or the other half of a doubled quote; closing quotes (odd position)
    precede a delimiter, a line break, the end of the file or a doubled quote."""
    if scan.quotes.size == 0:
        return True
    opening = scan.quotes[0::2]
    before = np.where(opening > first_byte, scan.before_quote[0::2], ord(","))
    opening_ok = np.isin(before, [ord(","), NEWLINE, QUOTE]) | (opening == first_byte)
    closing = scan.quotes[1::2]
    after = np.where(closing + 1 < scan.size, scan.after_quote[1::2], ord(","))
    closing_ok = np.isin(after, [ord(","), NEWLINE, CARRIAGE_RETURN, QUOTE])
    return bool(opening_ok.all() and closing_ok.all())
