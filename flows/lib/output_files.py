"""Files recoup hands to people and vendors: written whole or not at all, readable by the owner.

- `write_atomically` writes to a temporary name in the same folder, flushes it to disk, then
  renames it: a reader (a print vendor, a collector's spreadsheet) never sees half a file.
- Files carry personal data, so they are created with mode 0o600, and the folders recoup
  creates for them with 0o700 (`owner_only_folder`), whatever the process umask.
- `csv_bytes` neutralises spreadsheet formulas: a cell that starts with `=`, `+`, `-`, `@`, a tab
  or a carriage return gets a leading apostrophe (OWASP "CSV injection"), so a customer named
  `=HYPERLINK(...)` stays text when the file is opened in Excel or LibreOffice. A cell of only
  digits, spaces and `+-.()` (a phone number like +1 512 555 0100, a negative amount) cannot
  form a harmful formula and is left as it is, so a dialer or a ledger import reads it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_LIKE = re.compile(r"[+\-]?[\d\s().+\-]*\d[\d\s().]*")


def write_atomically(path: Path, data: bytes, *, mode: int = FILE_MODE) -> Path:
    """Write `data` to `path` so that the file appears complete or not at all, and stays
    there after a power cut (the file and then its folder are flushed to disk)."""
    owner_only_folder(path.parent)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def owner_only_folder(folder: Path) -> Path:
    """Create `folder` and any missing parent with mode 0o700 (folders that exist keep
    theirs: RECOUP_HOME and what its owner made are theirs to set)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            candidate.mkdir()
            os.chmod(candidate, FOLDER_MODE)  # mkdir's mode is masked by the umask
    return folder


def owner_only_spill_folder(duckdb_config: Mapping[str, str] | None) -> None:
    """Create the spill folder of DuckDB settings (Settings.duckdb_config) owner-only, before
    DuckDB makes it with the umask's mode: spilled pages hold the warehouse's rows."""
    if duckdb_config and duckdb_config.get("temp_directory"):
        owner_only_folder(Path(duckdb_config["temp_directory"]))


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def safe_cell(value: object) -> str:
    """One CSV cell as text, with a formula-looking start defused. A carriage return in the
    cell becomes a line feed: the csv module quotes a cell that holds a line feed but not one
    that holds only a carriage return, which a spreadsheet reads as the end of the row (and
    what follows as a new row, whose first cell may be a formula)."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES) and not _NUMBER_LIKE.fullmatch(text):
        text = "'" + text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A UTF-8 CSV with a header row; every cell passes through `safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8")
