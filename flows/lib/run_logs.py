"""The run's own log: one JSON object per line, the run id on every line, in
`state/logs/<as-of date>/<run id>.jsonl`.

It collects what recoup's modules and Prefect's flow and task loggers say during the run.
Messages carry counts, steps, file names and reasons, never an email body, an address, an SSN
or an API key: recoup's modules log no personal data, and SendGrid's HTTP client (which logs
request headers and bodies at DEBUG) is kept at INFO by the sender. The file is owner-only
(0600, in folders of 0700), like every file recoup writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from flows.lib.output_files import FILE_MODE, owner_only_folder

LOGGERS = ("flows", "prefect.flow_runs", "prefect.task_runs")


class _JsonLines(logging.Formatter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "run_id": self.run_id,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        task = getattr(record, "task_run_name", None)
        if task:
            entry["task"] = task
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False)


@contextlib.contextmanager
def run_log(folder: Path, run_id: str) -> Iterator[Path]:
    """Write every INFO-and-above line of recoup's and Prefect's run loggers to the run's
    JSON-lines file for the duration of the block."""
    owner_only_folder(folder)
    path = folder / f"{run_id}.jsonl"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE))
    os.chmod(path, FILE_MODE)  # the umask may have masked it; a resumed run's file may be older
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(_JsonLines(run_id))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    ours = logging.getLogger("flows")  # recoup's modules: INFO reaches this file (the console
    level = ours.level  # handler sits on the root logger with its own, higher level)
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield path
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        ours.setLevel(level)
        handler.close()
