"""SendGrid Event Webhook events: verify them, spool them, and import them into the warehouse.

The webhook (`flows/webhook.py`) never opens the warehouse: DuckDB allows one writer per file
and the daily run holds it. So events travel in two steps:

1. **Receive.** The webhook checks the ECDSA signature over `timestamp + raw body` and the
   signed timestamp (replays), then writes the raw body, byte for byte, to one spool file in
   `state/email_events/incoming/` (`write_spool_file`) and answers 200.
2. **Import.** Whoever holds the warehouse calls `import_spool`: each spooled file, oldest
   first, is checked again, its events are inserted once each, and the file moves to
   `imported/` (or to `rejected/`, with a note saying why, when it cannot be read).

Importing is idempotent on a natural key (`event_key`): SendGrid delivers events more than once
and `sg_event_id` can change across its retries (sendgrid.md B8). An event, the first time it
is seen, can

- flag its address in `ops.email_suppressions` (`SUPPRESSION_REASONS`; the first reason
  recorded for an address stays, and no later event lifts it: recoup's record is the
  authority for Reg F opt-outs, compliance.md A6);
- confirm a ledger row left `sending` or `maybe_sent` (`CONFIRMING_EVENTS` prove SendGrid had
  the message), through `ledger.transition`, which logs the change;
- move the row's `last_event` forward in `EVENT_SEVERITY` order, so the outcome does not
  depend on the order events arrive in (a `delivered` after a `bounce` does not un-bounce).

Logs name files and counts, never addresses or bodies.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from flows.lib.config import Settings
from flows.lib.ledger import Status, transition
from flows.lib.output_files import owner_only_folder, write_atomically

logger = logging.getLogger("recoup.email_events")

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
# a signed timestamp this far ahead of our clock is refused too (clock skew allowance)
MAX_FUTURE_SECONDS = 300

# What each event makes of the address it names (lower case). A `bounce` of type `blocked` is a
# temporary rejection and flags nothing; every other bounce is a hard bounce. `group_resubscribe`
# and the delivery and engagement events are recorded only.
SUPPRESSION_REASONS: dict[str, str] = {
    "bounce": "hard_bounce",
    "dropped": "dropped",
    "spamreport": "spam_report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "group_unsubscribed",
}
TEMPORARY_BOUNCE_TYPE = "blocked"

# Events that prove SendGrid had the message: a ledger row not yet `sent` is then `sent` (an
# open or click implies it too, but machine opens make them weak evidence). That includes a
# row recorded `failed` and one planned again since: the event is proof that it went, and a
# key that went is never sent again.
CONFIRMING_EVENTS: tuple[str, ...] = ("processed", "delivered", "deferred", "bounce", "dropped")
CONFIRMABLE_STATUSES: tuple[Status, ...] = (
    "maybe_sent",
    "sending",
    "failed",
    "planned",
    "deferred",
    "cancelled",
)

# The ledger's `last_event` only ever moves up this order (ties: the later event wins), so the
# same events give the same `last_event` whatever order they arrive in. `blocked` is how the
# ledger names a `bounce` of type `blocked`: temporary, so a later `delivered` outranks it.
# Events not listed (account_status_change, new kinds) rank 0.
EVENT_SEVERITY: dict[str, int] = {
    # opt-outs: this address must not be emailed again (Reg F 1006.6(e))
    "spamreport": 50,
    "unsubscribe": 50,
    "group_unsubscribe": 50,
    # undeliverable: the notice did not arrive (1006.30(a), 1006.42)
    "bounce": 40,
    "dropped": 40,
    # delivered: evidence of actual notice
    "delivered": 30,
    # temporary rejection of this message
    "blocked": 25,
    # accepted, or still trying
    "processed": 20,
    "deferred": 20,
    # engagement, analytics only (Apple MPP opens); a resubscribe never lifts an opt-out
    "open": 10,
    "click": 10,
    "group_resubscribe": 10,
}

_BATCH_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("event_key", pa.string()),
        ("sg_event_id", pa.string()),
        ("sg_message_id", pa.string()),
        ("outbox_id", pa.string()),
        ("email", pa.string()),
        ("event", pa.string()),
        ("event_type", pa.string()),
        ("reason", pa.string()),
        ("url", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("source", pa.string()),
        ("suppression_reason", pa.string()),
        ("ledger_event", pa.string()),
        ("severity", pa.int32()),
    ]
)


class EventPayloadError(ValueError):
    """A body or file is not a JSON array of SendGrid events; the message says where."""


class EventKeyError(ValueError):
    """`email.event_public_key` is not a usable SendGrid verification key."""


class SpoolFileError(ValueError):
    """A spool file cannot be imported (unreadable, or its signature does not verify)."""


@dataclass(frozen=True)
class ImportOutcome:
    events_read: int = 0
    events_new: int = 0
    duplicates: int = 0  # already stored, or repeated within the same batch
    suppressions_added: int = 0
    actions_confirmed: int = 0  # ledger rows moved from sending / maybe_sent to sent
    files_imported: int = 0
    files_rejected: int = 0

    def plus(self, other: ImportOutcome) -> ImportOutcome:
        """Both outcomes counted together."""
        return ImportOutcome(
            events_read=self.events_read + other.events_read,
            events_new=self.events_new + other.events_new,
            duplicates=self.duplicates + other.duplicates,
            suppressions_added=self.suppressions_added + other.suppressions_added,
            actions_confirmed=self.actions_confirmed + other.actions_confirmed,
            files_imported=self.files_imported + other.files_imported,
            files_rejected=self.files_rejected + other.files_rejected,
        )


@dataclass(frozen=True)
class SpooledPost:
    """One verified webhook post, as a spool file keeps it."""

    received_at: dt.datetime
    timestamp: str  # the signed X-Twilio-Email-Event-Webhook-Timestamp
    signature: str  # base64 DER ECDSA signature over timestamp + body
    body: str  # the raw body, decoded from the exact bytes received


@dataclass(frozen=True)
class EmailEvent:
    """One event as `ops.email_events` stores it (less the receipt columns)."""

    event_key: str
    sg_event_id: str | None
    sg_message_id: str | None
    outbox_id: str | None
    email: str | None  # lower case
    event: str
    event_type: str | None  # a bounce's `type`: bounce (hard) or blocked (temporary)
    reason: str | None  # SendGrid's words, for bounce, dropped and deferred
    url: str | None  # a click's link
    occurred_at: dt.datetime  # UTC, from the event's Unix `timestamp`

    @property
    def suppression_reason(self) -> str | None:
        """The flag this event puts on its address, if any."""
        if self.event == "bounce" and self.event_type == TEMPORARY_BOUNCE_TYPE:
            return None
        return SUPPRESSION_REASONS.get(self.event)

    @property
    def ledger_event(self) -> str:
        """The name the ledger's `last_event` gives this event."""
        if self.event == "bounce" and self.event_type == TEMPORARY_BOUNCE_TYPE:
            return TEMPORARY_BOUNCE_TYPE
        return self.event


# --- verification ----------------------------------------------------------------------------


def load_verifier(public_key: str) -> EventWebhook:
    """SendGrid's own verifier for this base64 key, or EventKeyError saying what to fix."""
    try:
        verifier = EventWebhook(public_key.strip())
    except (ValueError, TypeError) as error:
        raise EventKeyError(
            f"email.event_public_key is not a base64 public key ({error}); copy the "
            "verification key from SendGrid: Settings, Mail Settings, Signed Event Webhook."
        ) from None
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise EventKeyError(
            "email.event_public_key is not an elliptic-curve (P-256) key; copy the "
            "verification key from SendGrid: Settings, Mail Settings, Signed Event Webhook."
        )
    return verifier


def signature_is_valid(verifier: EventWebhook, body: str, signature: str, timestamp: str) -> bool:
    """Whether `signature` signs `timestamp + body`; `body` is the raw text, never re-serialized."""
    if not signature or not timestamp:
        return False
    try:
        return verifier.verify_signature(body, signature, timestamp)
    except (binascii.Error, ValueError):  # a signature that is not base64, or not DER
        return False


def timestamp_problem(
    timestamp: str | None, *, now: dt.datetime, max_age_seconds: int
) -> str | None:
    """Why a signed timestamp is refused (missing, not Unix seconds, too old, in the future),
    or None when it is acceptable."""
    if not timestamp:
        return "the signed timestamp header is missing"
    if not (timestamp.isascii() and timestamp.isdigit()):
        return "the signed timestamp is not a Unix time in seconds"
    age = now.timestamp() - int(timestamp)
    if age > max_age_seconds:
        return f"the signed timestamp is {int(age)} s old, more than {max_age_seconds} s (replay)"
    if age < -MAX_FUTURE_SECONDS:
        return f"the signed timestamp is {int(-age)} s in the future"
    return None


# --- parsing ---------------------------------------------------------------------------------


def parse_event_array(text: str) -> list[dict[str, Any]]:
    """The events of a webhook body or downloaded file: a JSON array of objects."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise EventPayloadError(
            f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(document, list):
        raise EventPayloadError(
            f"a JSON array of events was expected, not a {_json_kind(document)}"
        )
    for position, item in enumerate(document):
        if not isinstance(item, dict):
            raise EventPayloadError(f"item {position} is a {_json_kind(item)}, not an event object")
    return document


def event_key(raw: Mapping[str, Any]) -> str:
    """The natural key of one event: (sg_message_id or outbox_id, lower-cased email, event,
    timestamp, bounce type or click url), hashed. Equal for every delivery of the same event,
    whatever its sg_event_id."""
    parts = [
        _text(raw.get("sg_message_id")) or _text(raw.get("outbox_id")) or "",
        (_text(raw.get("email")) or "").lower(),
        _text(raw.get("event")) or "",
        str(_unix_seconds(raw.get("timestamp"))),
        _text(raw.get("type")) or _text(raw.get("url")) or "",
    ]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:32]


def parse_event(raw: Mapping[str, Any], *, position: int = 0) -> EmailEvent:
    """One event object as stored; EventPayloadError when it has no event name or timestamp."""
    name = _text(raw.get("event"))
    if not name:
        raise EventPayloadError(f"event {position} has no 'event' name")
    seconds = _unix_seconds(raw.get("timestamp"))
    if seconds is None:
        raise EventPayloadError(f"event {position} ({name}) has no Unix 'timestamp'")
    email = _text(raw.get("email"))
    return EmailEvent(
        event_key=event_key(raw),
        sg_event_id=_text(raw.get("sg_event_id")),
        sg_message_id=_text(raw.get("sg_message_id")),
        outbox_id=_text(raw.get("outbox_id")),  # custom args arrive as top-level keys
        email=email.lower() if email else None,
        event=name,
        event_type=_text(raw.get("type")),
        reason=_text(raw.get("reason")),
        url=_text(raw.get("url")),
        occurred_at=dt.datetime.fromtimestamp(seconds, dt.UTC),
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def _unix_seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _json_kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# --- the spool -------------------------------------------------------------------------------


def incoming_folder(settings: Settings) -> Path:
    """Where the webhook leaves verified posts for the next import."""
    return settings.path("state") / "email_events" / "incoming"


def write_spool_file(folder: Path, post: SpooledPost) -> Path:
    """Keep one verified post as a spool file, atomically (temp file, fsync, rename), mode 0600.

    The name sorts by arrival (UTC time to the microsecond) and ends in a hash of the signed
    text, so two posts never share a name unless they are the same post."""
    owner_only_folder(folder)
    received_utc = post.received_at.astimezone(dt.UTC)
    digest = hashlib.sha256((post.timestamp + post.body).encode("utf-8")).hexdigest()[:16]
    name = f"{received_utc:%Y%m%dT%H%M%S%fZ}-{digest}.json"
    document = {
        "received_at": received_utc.isoformat(),
        "timestamp": post.timestamp,
        "signature": post.signature,
        "body": post.body,
    }
    return write_atomically(folder / name, json.dumps(document).encode("utf-8"))


def read_spool_file(path: Path, verifier: EventWebhook | None) -> SpooledPost:
    """One spool file, checked again when a verifier is given; SpoolFileError when unusable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpoolFileError(f"not a readable spool file ({type(error).__name__})") from None
    fields = ("received_at", "timestamp", "signature", "body")
    if not isinstance(document, dict) or not all(
        isinstance(document.get(field), str) for field in fields
    ):
        raise SpoolFileError("a spool file needs received_at, timestamp, signature and body")
    try:
        received_at = dt.datetime.fromisoformat(document["received_at"])
    except ValueError:
        raise SpoolFileError("received_at is not an ISO 8601 time") from None
    if received_at.tzinfo is None:
        raise SpoolFileError("received_at has no time zone")
    if verifier is not None and not signature_is_valid(
        verifier, document["body"], document["signature"], document["timestamp"]
    ):
        raise SpoolFileError("the signature does not verify with email.event_public_key")
    return SpooledPost(
        received_at=received_at,
        timestamp=document["timestamp"],
        signature=document["signature"],
        body=document["body"],
    )


def import_spool(
    connection: duckdb.DuckDBPyConnection,
    spool_folder: Path,
    *,
    public_key: str | None,
    now: dt.datetime | None = None,
) -> ImportOutcome:
    """Import every spooled file, oldest first, and move each to `imported/` beside the spool
    folder, or to `rejected/` (with a `.reason.txt` note) when it cannot be read, does not
    verify (when `public_key` is given) or holds something that is not an event. A rejected
    file never stops the others; a warehouse error does, and leaves its file in place."""
    now = now or dt.datetime.now(dt.UTC)
    verifier = load_verifier(public_key) if public_key else None
    imported_folder = spool_folder.parent / "imported"
    rejected_folder = spool_folder.parent / "rejected"
    outcome = ImportOutcome()
    paths = sorted(spool_folder.glob("*.json")) if spool_folder.is_dir() else []
    for path in paths:
        try:
            post = read_spool_file(path, verifier)
            events = parse_event_array(post.body)
            file_outcome = import_events(
                connection, events, source=f"webhook:{path.name}", received_at=post.received_at
            )
        except (SpoolFileError, EventPayloadError) as error:
            _move(path, rejected_folder)
            note = rejected_folder / f"{path.name}.reason.txt"
            write_atomically(note, f"rejected at {now.isoformat()}: {error}\n".encode())
            logger.warning("rejected spool file %s: %s", path.name, error)
            outcome = outcome.plus(ImportOutcome(files_rejected=1))
            continue
        _move(path, imported_folder)
        logger.info(
            "imported spool file %s: %d events, %d new",
            path.name,
            file_outcome.events_read,
            file_outcome.events_new,
        )
        outcome = outcome.plus(file_outcome).plus(ImportOutcome(files_imported=1))
    return outcome


def _move(path: Path, folder: Path) -> None:
    owner_only_folder(folder)
    os.replace(path, folder / path.name)


def import_events_file(connection: duckdb.DuckDBPyConnection, path: Path) -> ImportOutcome:
    """Import a JSON array of events an operator downloaded (unsigned; source = file name)."""
    try:
        events = parse_event_array(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EventPayloadError(f"{path}: not UTF-8 text; export the events as JSON.") from None
    except EventPayloadError as error:
        raise EventPayloadError(
            f"{path}: {error}; the file must hold a JSON array of SendGrid event objects."
        ) from None
    return import_events(connection, events, source=path.name, received_at=dt.datetime.now(dt.UTC))


# --- the import ------------------------------------------------------------------------------


def import_events(
    connection: duckdb.DuckDBPyConnection,
    events: Sequence[Mapping[str, Any]],
    *,
    source: str,
    received_at: dt.datetime,
) -> ImportOutcome:
    """Store the events not seen before, flag their addresses and move their ledger rows'
    `last_event` forward (one transaction), then confirm ledger rows that any stored event
    proves were sent. Nothing is written when one event cannot be parsed."""
    parsed = [parse_event(raw, position=position) for position, raw in enumerate(events)]
    if not parsed:
        return ImportOutcome()
    received_utc = received_at.astimezone(dt.UTC)
    batch = pa.table(
        {
            "position": list(range(len(parsed))),
            "event_key": [event.event_key for event in parsed],
            "sg_event_id": [event.sg_event_id for event in parsed],
            "sg_message_id": [event.sg_message_id for event in parsed],
            "outbox_id": [event.outbox_id for event in parsed],
            "email": [event.email for event in parsed],
            "event": [event.event for event in parsed],
            "event_type": [event.event_type for event in parsed],
            "reason": [event.reason for event in parsed],
            "url": [event.url for event in parsed],
            "occurred_at": [event.occurred_at for event in parsed],
            "received_at": [received_utc] * len(parsed),
            "source": [source] * len(parsed),
            "suppression_reason": [event.suppression_reason for event in parsed],
            "ledger_event": [event.ledger_event for event in parsed],
            "severity": [EVENT_SEVERITY.get(event.ledger_event, 0) for event in parsed],
        },
        schema=_BATCH_SCHEMA,
    )
    connection.register("_email_events_arrow", batch)
    connection.execute("begin transaction")
    try:
        events_new, suppressions_added = _store_new_events(connection)
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        connection.unregister("_email_events_arrow")
        connection.execute("drop table if exists _email_events_new")
        connection.execute("drop table if exists _event_severity")
    return ImportOutcome(
        events_read=len(parsed),
        events_new=events_new,
        duplicates=len(parsed) - events_new,
        suppressions_added=suppressions_added,
        actions_confirmed=confirm_sent_actions(connection),
    )


def _store_new_events(connection: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    # the batch's events not stored yet, each once (the first copy in the batch)
    connection.execute(
        """
        create or replace temp table _email_events_new as
        select *
        from _email_events_arrow as batch
        where not exists (
            select 1 from ops.email_events as stored where stored.event_key = batch.event_key
        )
        qualify row_number() over (partition by event_key order by position) = 1
        """
    )
    events_new = _count(
        connection,
        """
        insert into ops.email_events
        select
            event_key, sg_event_id, sg_message_id, outbox_id, email, event, event_type,
            reason, url, occurred_at, received_at, source
        from _email_events_new
        order by position
        """,
    )
    # first reason recorded for an address stays: only addresses not flagged yet, and the
    # earliest flagging event of this batch for each
    suppressions_added = _count(
        connection,
        """
        insert into ops.email_suppressions (email, reason, since, event_key)
        select email, suppression_reason, occurred_at, event_key
        from _email_events_new as new_events
        where
            suppression_reason is not null
            and email is not null
            and not exists (
                select 1 from ops.email_suppressions as flagged
                where flagged.email = new_events.email
            )
        qualify row_number() over (partition by email order by occurred_at, event_key) = 1
        """,
    )
    connection.execute(
        "create or replace temp table _event_severity as "
        "select unnest(?::varchar[]) as event, unnest(?::integer[]) as severity",
        [list(EVENT_SEVERITY), list(EVENT_SEVERITY.values())],
    )
    # last_event only moves up EVENT_SEVERITY (ties: the later event), whatever the arrival order
    connection.execute(
        """
        with best_new as (
            select outbox_id, ledger_event, severity, occurred_at
            from _email_events_new
            where outbox_id is not null
            qualify row_number() over (
                partition by outbox_id
                order by severity desc, occurred_at desc, ledger_event
            ) = 1
        ),

        moving_forward as (
            select
                best_new.outbox_id as action_key,
                best_new.ledger_event,
                best_new.occurred_at
            from best_new
            inner join ops.action_ledger as ledger
                on best_new.outbox_id = ledger.action_key
            left join _event_severity as current_severity
                on ledger.last_event = current_severity.event
            where
                ledger.last_event is null
                or best_new.severity > coalesce(current_severity.severity, 0)
                or (
                    best_new.severity = coalesce(current_severity.severity, 0)
                    and best_new.occurred_at
                    > coalesce(ledger.last_event_at, '-infinity'::timestamptz)
                )
        )

        update ops.action_ledger as ledger
        set last_event = moving_forward.ledger_event, last_event_at = moving_forward.occurred_at
        from moving_forward
        where ledger.action_key = moving_forward.action_key
        """
    )
    return events_new, suppressions_added


def confirm_sent_actions(connection: duckdb.DuckDBPyConnection) -> int:
    """Move ledger rows still `sending` or `maybe_sent` to `sent` when a stored event proves
    SendGrid had the message; the reason names the earliest such event. Returns how many moved.

    It reads every stored event, not only new ones, so a confirmation interrupted by a crash
    (the events are committed before the ledger moves) is made by the next import."""
    rows = connection.execute(
        """
        select ledger.action_key, arg_min(events.event, events.occurred_at) as first_proof
        from ops.action_ledger as ledger
        inner join ops.email_events as events
            on ledger.action_key = events.outbox_id
        where
            list_contains(?, ledger.status)
            and list_contains(?, events.event)
        group by ledger.action_key
        order by ledger.action_key
        """,
        [list(CONFIRMABLE_STATUSES), list(CONFIRMING_EVENTS)],
    ).fetchall()
    keys_by_event: dict[str, list[str]] = {}
    for key, first_proof in rows:
        keys_by_event.setdefault(first_proof, []).append(key)
    moved = sum(
        transition(
            connection,
            keys,
            "sent",
            run_id=None,
            reason=f"confirmed by a {event} event",
            only_from=CONFIRMABLE_STATUSES,
        )
        for event, keys in sorted(keys_by_event.items())
    )
    # a send known only from its events is dated by the first of them (the 14-day
    # furnishing wait of Reg F 1006.30(a) counts from it)
    connection.execute(
        """
        update ops.action_ledger as ledger
        set sent_at = proof.first_at
        from (
            select outbox_id, min(occurred_at) as first_at
            from ops.email_events
            where list_contains(?, event)
            group by outbox_id
        ) as proof
        where
            ledger.action_key = proof.outbox_id
            and ledger.status = 'sent'
            and ledger.sent_at is null
        """,
        [list(CONFIRMING_EVENTS)],
    )
    return moved


def _count(connection: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = connection.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0
