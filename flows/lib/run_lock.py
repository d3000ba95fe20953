"""One writer at a time per RECOUP_HOME: ingests and runs take this lock before touching the
warehouse.

The lock is an OS file lock (`flock`) on `state/recoup.lock`: the operating system releases it
when the holding process ends, however it ends, so a crashed run never leaves a stale lock. The
file also records who holds it (command, pid, host, start time) so a refused caller can say
which run is in the way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from flows.lib.output_files import FILE_MODE, owner_only_folder

LOCK_FILE_NAME = "recoup.lock"
POLL_SECONDS = 0.2


class LockBusy(RuntimeError):
    """Another recoup process holds the lock."""


@contextlib.contextmanager
def run_lock(
    state_folder: Path,
    command: str,
    wait_seconds: float,
    details: dict[str, object] | None = None,
) -> Iterator[None]:
    """Hold the lock for the block; wait up to `wait_seconds` for it, then refuse. `details`
    (a run id, an as-of date) are recorded with the holder, so a refused caller can name it."""
    owner_only_folder(state_folder)
    path = state_folder / LOCK_FILE_NAME
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))  # owner-only when new
    handle = path.open("a+", encoding="utf-8")
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(_busy_message(path, wait_seconds)) from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        holder = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(details or {}),
        }
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def current_holder(state_folder: Path) -> dict[str, object] | None:
    """Who holds the lock now, or None when it is free."""
    path = state_folder / LOCK_FILE_NAME
    if not path.exists():
        return None
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or {"command": "unknown"}
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


def _read_holder(path: Path) -> dict[str, object] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, json.JSONDecodeError):
        return None


def _busy_message(path: Path, waited: float) -> str:
    holder = _read_holder(path) or {}
    run = (
        f"run {str(holder['run_id'])[:8]} for {holder.get('as_of', '?')}, "
        if holder.get("run_id")
        else ""
    )
    who = (
        f"`recoup {holder.get('command', '?')}` ({run}pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, started {holder.get('started_at', '?')})"
    )
    return (
        f"another recoup process is working on this RECOUP_HOME: {who}. Waited {waited:g} s. "
        "Run again when it has finished (`recoup status` shows it), or raise "
        "ingest.lock_wait_seconds to wait longer."
    )
