"""Opt-outs from recoup's own link: every email says how to stop emails to its address
(Reg F 1006.6(e)), and this is where that request lands.

The link (`contact.opt_out_link`) carries only the email's opaque outbox id. The webhook app
(`flows/webhook.py`) answers it: a GET shows a confirmation page and records nothing (mail
scanners open links by themselves), and a POST (the page's button, or a mail client's one-click
List-Unsubscribe-Post) spools the request to `state/email_events/opt_outs/`. The next run (or
`recoup events import`) turns each into a suppression of the address that email went to:
recoup never emails it again. Spool files of unknown outbox ids move to `rejected/`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from flows.lib.config import Settings
from flows.lib.output_files import owner_only_folder, write_atomically

OUTBOX_ID = re.compile(r"[0-9a-f]{32}")
SUPPRESSION_REASON = "opted_out"


class NotAnOutboxId(ValueError):
    """The link's ref is not an outbox id recoup made."""


@dataclass(frozen=True)
class OptOutImport:
    addresses_suppressed: int = 0
    files_imported: int = 0
    files_rejected: int = 0


def opt_out_folder(settings: Settings) -> Path:
    return settings.path("state") / "email_events" / "opt_outs"


def spool_opt_out(folder: Path, outbox_id: str, at: dt.datetime) -> Path:
    """Keep one opt-out request until the next import; the same email's request twice is
    one file."""
    if not OUTBOX_ID.fullmatch(outbox_id):
        raise NotAnOutboxId("the link is not one of ours (an outbox id is 32 hexadecimal digits)")
    document = {"outbox_id": outbox_id, "requested_at": at.astimezone(dt.UTC).isoformat()}
    return write_atomically(folder / f"{outbox_id}.json", json.dumps(document).encode("utf-8"))


def import_opt_outs(connection: duckdb.DuckDBPyConnection, folder: Path) -> OptOutImport:
    """Suppress the address of each spooled opt-out; move each file to imported/ or rejected/."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    suppressed = imported = rejected = 0
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            outbox_id = str(document["outbox_id"])
            requested_at = dt.datetime.fromisoformat(document["requested_at"])
        except (OSError, ValueError, KeyError, TypeError):
            _move(path, "rejected")
            rejected += 1
            continue
        rows = connection.execute(
            "select recipient from ops.action_ledger "
            "where action_key = ? and channel = 'email' and recipient is not null",
            [outbox_id],
        ).fetchall()
        if not rows:
            _move(path, "rejected")
            rejected += 1
            continue
        added = connection.execute(
            """
            insert into ops.email_suppressions
            select lower(trim(?)), ?, ?, null
            on conflict (email) do nothing
            returning email
            """,
            [rows[0][0], SUPPRESSION_REASON, requested_at],
        ).fetchall()
        suppressed += len(added)
        _move(path, "imported")
        imported += 1
    return OptOutImport(suppressed, imported, rejected)


def _move(path: Path, where: str) -> None:
    target = path.parent.parent / f"opt_outs_{where}"
    owner_only_folder(target)
    path.replace(target / path.name)
