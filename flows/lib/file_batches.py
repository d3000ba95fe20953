"""Many small files into one folder, each whole or not at all, flushed to disk once per batch.

`write_atomically` (output_files.py) flushes every file and then its folder: two fsyncs per
file, which is most of the cost of an .eml or a PDF when a step writes thousands of them.
`write_batch_atomically` keeps its guarantees for a whole batch of files in one folder:

1. every file goes to a temporary name in the folder (mode 0o600);
2. all the temporary files are flushed to disk (after the first, the journal commit that
   flushed it usually covers the rest, so the later fsyncs are cheap);
3. each is renamed to its final name, and the folder is flushed once.

A reader never sees half a file, and after a power cut a file that was renamed holds its
whole content. A file that cannot be written is reported by name with its error; the others
are written all the same.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from flows.lib.output_files import FILE_MODE, fsync_folder, owner_only_folder


def write_batch_atomically(
    folder: Path, files: Sequence[tuple[str, bytes]], *, mode: int = FILE_MODE
) -> dict[str, OSError]:
    """Write each `(name, data)` as `folder/name`, replacing a file of that name; return the
    names that could not be written, with their error (empty when all were)."""
    owner_only_folder(folder)
    failed: dict[str, OSError] = {}
    temporary: dict[str, str] = {}
    for name, data in files:
        if name in temporary:  # the same name twice: the later data wins, as with one file
            _remove(temporary.pop(name))
        try:
            temporary[name] = _write_temporary(folder, name, data, mode)
            failed.pop(name, None)
        except OSError as error:
            failed[name] = error
    for name, path in list(temporary.items()):
        try:
            _flush(path)
        except OSError as error:
            failed[name] = error
            _remove(temporary.pop(name))
    for name, path in temporary.items():
        try:
            os.replace(path, folder / name)
        except OSError as error:
            failed[name] = error
            _remove(path)
    if len(failed) < len(files):
        fsync_folder(folder)
    return failed


def _write_temporary(folder: Path, name: str, data: bytes, mode: int) -> str:
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
    except BaseException:
        _remove(path)
        raise
    return path


def _flush(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
