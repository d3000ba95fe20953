"""Text-editor line numbers for the records of a CSV file, found without a Python row loop.

DuckDB reads CSV fast but does not say on which line a row stood, and its rejected-row report
counts records, not lines (a quoted field holding a line break makes the two differ). This
module finds every record's first line with numpy: a line break ends a record when an even
number of quote characters stands before it (RFC 4180 escapes a quote by doubling it, so the
parity of the count tells whether we are inside a quoted field).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUOTE = ord('"')
NEWLINE = ord("\n")
CARRIAGE_RETURN = ord("\r")
UTF8_BOM = b"\xef\xbb\xbf"


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


def record_lines(path: Path) -> RecordLines:
    """Index the records of the CSV file at `path`."""
    size = path.stat().st_size
    if size == 0:
        return RecordLines(np.array([1], dtype=np.int64), np.array([True]))
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        data = np.frombuffer(view, dtype=np.uint8)
        try:
            return _index(data)
        finally:
            del data  # release the buffer before the map closes


def _index(data: np.ndarray) -> RecordLines:
    size = data.size
    newlines = np.flatnonzero(data == NEWLINE)
    quotes = np.flatnonzero(data == QUOTE)
    quotes_before = np.searchsorted(quotes, newlines)
    record_ends = newlines[quotes_before % 2 == 0]
    starts = np.concatenate(([0], record_ends + 1))
    ends = np.concatenate((record_ends, [size]))
    if starts[-1] >= size:  # the file ends with a line break: no record after it
        starts, ends = starts[:-1], ends[:-1]
    first_line = np.searchsorted(newlines, starts) + 1
    length = ends - starts
    starts_with_cr = np.zeros(starts.size, dtype=bool)
    has_byte = starts < size
    starts_with_cr[has_byte] = data[starts[has_byte]] == CARRIAGE_RETURN
    blank = (length == 0) | ((length == 1) & starts_with_cr)
    bom = size >= 3 and bytes(data[:3]) == UTF8_BOM
    if starts.size and bom:
        blank[0] = length[0] == 3
    unterminated = None
    if quotes.size % 2 == 1:  # the last quoted field never closes
        unterminated = int(np.searchsorted(newlines, quotes[-1]) + 1)
    return RecordLines(
        first_line.astype(np.int64),
        blank,
        quotes_well_placed=_quotes_well_placed(data, quotes, 3 if bom else 0),
        unterminated_quote_line=unterminated,
    )


def _quotes_well_placed(data: np.ndarray, quotes: np.ndarray, first_byte: int) -> bool:
    """Opening quotes (even position in the sequence) follow a delimiter, a line break, the
    start of the file or the other half of a doubled quote; closing quotes (odd position)
    precede a delimiter, a line break, the end of the file or a doubled quote."""
    if quotes.size == 0:
        return True
    opening, closing = quotes[0::2], quotes[1::2]
    before = np.where(opening > first_byte, data[np.maximum(opening - 1, 0)], ord(","))
    opening_ok = np.isin(before, [ord(","), NEWLINE, QUOTE]) | (opening == first_byte)
    after_index = closing + 1
    inside = after_index < data.size
    after = np.full(closing.size, ord(","), dtype=np.uint8)
    after[inside] = data[after_index[inside]]
    closing_ok = np.isin(after, [ord(","), NEWLINE, CARRIAGE_RETURN, QUOTE])
    return bool(opening_ok.all() and closing_ok.all())
