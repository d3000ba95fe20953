"""The letter step: planned letters → one PDF each and a print manifest for the mail vendor.

Files go to `out/letters/<run date>/`: `<letter_id>.pdf` per letter (the letter id is the
ledger's action key) and `print_manifest_<run>.csv` listing the letters of that run with the
address to print on the envelope. A letter counts as sent when its manifest is written. The
order is: claim (`sending`), PDFs, manifest, ledger; a crash before the ledger write leaves
`sending`, and the next run makes the same letters again (same ids, same bytes) in a manifest of
its own, so a vendor that already took the first one can drop the repeats by letter id.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import duckdb

from flows.lib.config import Settings
from flows.lib.contact_data import load_planned_contacts
from flows.lib.emailing import planned_keys
from flows.lib.ledger import ChannelOutcome, Outcome, record_outcomes, transition
from flows.lib.letters import letter_pdf
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from flows.lib.templates import render_letter

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
    contacts, nothing_owed = load_planned_contacts(
        connection, settings, keys, as_of, sent_on=max(sent_on, as_of)
    )
    outcome.add(
        "cancelled",
        "nothing_owed",
        transition(
            connection, nothing_owed, "cancelled", run_id=run_id, reason="nothing_owed",
            only_from=("planned",),
        ),
    )  # fmt: skip
    printable = [contact for contact in contacts if contact.recipient.mailing_address]
    unaddressed = [
        Outcome(contact.action_key, "suppressed", "no_postal_address")
        for contact in contacts
        if not contact.recipient.mailing_address
    ]
    record_outcomes(connection, unaddressed, run_id=run_id)
    outcome.add("suppressed", "no_postal_address", len(unaddressed))
    if not printable:
        return outcome
    transition(
        connection,
        [contact.action_key for contact in printable],
        "sending",
        run_id=run_id,
        only_from=("planned",),
    )
    folder = settings.path("out") / "letters" / as_of.isoformat()
    created = dt.datetime.combine(as_of, dt.time(), dt.UTC)
    manifest_rows, sent = [], []
    for contact in printable:
        pdf = letter_pdf(
            render_letter(contact.context),
            title=f"{settings.company.name}: {contact.template}",
            created=created,
        )
        path = write_atomically(folder / f"{contact.action_key}.pdf", pdf)
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
                provider_message_id=path.name,
                sent_at=now,
                recipient=" | ".join(contact.recipient.mailing_address),
                language=contact.context.language,
                output_path=str(path),
            )
        )
    manifest = write_atomically(
        folder / f"print_manifest_{run_id[:8]}.csv", csv_bytes(MANIFEST_HEADER, manifest_rows)
    )
    record_outcomes(connection, sent, run_id=run_id)
    outcome.add("sent", None, len(sent))
    outcome.files = [str(manifest), *(str(Path(each.output_path or "")) for each in sent)]
    return outcome
