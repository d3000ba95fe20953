"""The letter step: planned letters → one PDF each and a print manifest for the mail vendor.

Files go to `out/letters/<run date>/`: `<letter_id>.pdf` per letter (the letter id is the
ledger's action key) and `print_manifest_<run>.csv` listing the letters of that run with the
address to print on the envelope. A letter counts as sent when its manifest is written.

The order: render every letter (one that fails is recorded `failed` with the reason, and the
others go on); claim them (`sending`, with the manifest they will be in); write the PDFs, then
the manifest; record them `sent`. A crash before the last step leaves `sending`: the next run
finds the manifest and marks them sent if it was written, or plans them again if not, so a
letter is never in two manifests.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import duckdb
import pyarrow as pa

from flows.lib.config import Settings
from flows.lib.contact_data import due_contacts
from flows.lib.emailing import planned_keys
from flows.lib.file_batches import write_batch_atomically
from flows.lib.ledger import ChannelOutcome, Outcome, claim, record_outcomes
from flows.lib.letters import letter_pdf
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.planner import ALL_ACCOUNTS, ContactScope

MANIFEST_HEADER = (
    "letter_id",
    "account_id",
    "template",
    "language",
    "recipient_name",
    "address_line1",
    "address_line2",
    "address_line3",
    "address_line4",
    "pages",
    "file",
)
_PAGE = re.compile(rb"/Type\s*/Page(?![a-z])")


def print_planned_letters(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    scope: ContactScope = ALL_ACCOUNTS,
) -> ChannelOutcome:
    """Make the run's planned letters; what became of them, and the files written."""
    outcome = ChannelOutcome("letter")
    keys = planned_keys(connection, "letter", as_of, scope)
    if not keys:
        return outcome
    sent_on = now.astimezone(zoneinfo.ZoneInfo(settings.company.timezone)).date()
    contacts = due_contacts(
        connection, settings, keys, as_of, run_id=run_id, outcome=outcome,
        sent_on=max(sent_on, as_of),
    )  # fmt: skip
    printable = [contact for contact in contacts if contact.recipient.mailing_address]
    unaddressed = [
        Outcome(contact.action_key, "suppressed", "no_postal_address")
        for contact in contacts
        if not contact.recipient.mailing_address
    ]
    record_outcomes(connection, unaddressed, run_id=run_id)
    outcome.add("suppressed", "no_postal_address", len(unaddressed))
    created = dt.datetime.combine(as_of, dt.time(), dt.UTC)
    rendered, broken = [], []
    for contact in printable:
        try:
            pdf = letter_pdf(
                contact.context,
                title=f"{settings.company.name}: {contact.template}",
                created=created,
            )
        except Exception as error:  # one letter that cannot be made must not stop the others
            broken.append(
                Outcome(
                    contact.action_key, "failed", f"letter error: {type(error).__name__}: {error}"
                )
            )
            continue
        rendered.append((contact, pdf))
    record_outcomes(connection, broken, run_id=run_id)
    for each in broken:
        outcome.add(each.status, each.reason)
    if not rendered:
        return outcome

    folder = settings.path("out") / "letters" / as_of.isoformat()
    manifest = folder / f"print_manifest_{run_id[:8]}.csv"
    claimed = set(claim(connection, [contact.action_key for contact, _ in rendered], run_id=run_id))
    rendered = [(contact, pdf) for contact, pdf in rendered if contact.action_key in claimed]
    note_hand_off(
        connection,
        {
            contact.action_key: (folder / f"{contact.action_key}.pdf", manifest)
            for contact, _ in rendered
        },
    )
    manifest_rows, sent = [], []
    # the PDFs flushed to disk once for the batch, not twice each (flows/lib/file_batches.py)
    unwritten = write_batch_atomically(
        folder, [(f"{contact.action_key}.pdf", pdf) for contact, pdf in rendered]
    )
    if unwritten:
        raise next(iter(unwritten.values()))
    for contact, pdf in rendered:
        path = folder / f"{contact.action_key}.pdf"
        address = (*contact.recipient.mailing_address, "", "", "", "")[:4]
        manifest_rows.append(
            (
                contact.action_key,
                contact.account_id,
                contact.template,
                contact.context.language,
                contact.recipient.name,
                *address,
                len(_PAGE.findall(pdf)),
                path.name,
            )
        )
        sent.append(
            Outcome(
                contact.action_key,
                "sent",
                provider="print",
                provider_message_id=manifest.name,
                sent_at=now,
                recipient=" | ".join(contact.recipient.mailing_address),
                language=contact.context.language,
                output_path=str(path),
            )
        )
    write_atomically(manifest, csv_bytes(MANIFEST_HEADER, manifest_rows))
    record_outcomes(connection, sent, run_id=run_id)
    outcome.add("sent", None, len(sent))
    outcome.files = [str(manifest), *(each.output_path or "" for each in sent)]
    return outcome


def note_hand_off(
    connection: duckdb.DuckDBPyConnection, files: dict[str, tuple[Path, Path]]
) -> None:
    """Before anything is written, record where each claimed item goes (`output_path`) and
    the hand-off file that will list it (`provider_message_id`), so a crash in between can be
    settled by looking for the item in that file."""
    if not files:
        return
    # one set-based update: an executemany costs a statement per key (4 ms each at 100k)
    hand_offs = pa.table(
        {
            "action_key": list(files),
            "output_path": [str(item) for item, _ in files.values()],
            "provider_message_id": [hand_off.name for _, hand_off in files.values()],
        }
    )
    connection.register("_hand_offs", hand_offs)
    try:
        connection.execute(
            "update ops.action_ledger as ledger set output_path = hand_offs.output_path, "
            "provider_message_id = hand_offs.provider_message_id from _hand_offs as hand_offs "
            "where ledger.action_key = hand_offs.action_key"
        )
    finally:
        connection.unregister("_hand_offs")
