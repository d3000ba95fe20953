"""The action ledger: every contact recoup plans, and what became of it. Exactly-once lives here.

One row per action key in `ops.action_ledger`; every change of status is appended to
`ops.action_log`, so the ledger says where each contact stands and the log how it got there.

The key is the exactly-once key of SPEC §5: account, stage, channel, policy version and the
as-of date on which the account entered the stage (and, after a skip-trace result gave the
channel new contact details, the date it re-entered the stage: `reentered_on`). It is hashed
into an opaque 32-character `action_key`, which is also the outbox id that travels to SendGrid
in `custom_args` (no PII). A rerun of a day plans the same keys again, and a key that already
went out is never planned or sent twice.

Statuses (a contact moves left to right):

    planned ──▶ sending ──▶ sent         the provider accepted it (202, .eml written, PDF
       │                                  printed, queue item written)
       │            ├──────▶ maybe_sent   no clear answer (timeout, 5xx, crash while sending):
       │            │                     never re-sent blindly; an event confirms it
       │            └──────▶ failed       the provider refused it (4xx): planned again later
       ├──▶ suppressed                    a guardrail says never for this key (do_not_email, ...)
       ├──▶ deferred                      a guardrail says not now (frequency cap, ...)
       └──▶ cancelled                     re-checked before sending: paid or held since planning

`deferred`, `cancelled` and `failed` keys are planned again by later runs while the account
stays in the stage (`contact.catch_up_days`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa

Status = Literal[
    "planned", "sending", "sent", "maybe_sent", "failed", "suppressed", "deferred", "cancelled"
]
Channel = Literal["email", "letter", "phone", "manager"]
CHANNELS: tuple[Channel, ...] = ("email", "letter", "phone", "manager")
# statuses that count as "this contact happened, or may have": caps and exactly-once read them
CONTACTED: tuple[Status, ...] = ("sending", "sent", "maybe_sent")
# statuses a later run may plan again while the account stays in the stage
REPLANNABLE: tuple[Status, ...] = ("deferred", "cancelled", "failed")

LEDGER_DDL = """
create table if not exists ops.action_ledger (
    action_key VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    stage_order INTEGER NOT NULL,
    channel VARCHAR NOT NULL,
    template VARCHAR NOT NULL,
    policy_version VARCHAR NOT NULL,
    stage_entered_date DATE NOT NULL,
    as_of_date DATE NOT NULL,
    run_id VARCHAR NOT NULL,
    segment VARCHAR,
    currency VARCHAR NOT NULL,
    total_open DECIMAL(18,2),
    collectible_amount DECIMAL(18,2) NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    times_planned INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    planned_at TIMESTAMPTZ NOT NULL,
    status_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    send_at TIMESTAMPTZ,
    recipient VARCHAR,
    language VARCHAR,
    provider VARCHAR,
    provider_message_id VARCHAR,
    output_path VARCHAR,
    owner VARCHAR,
    due_date DATE,
    last_event VARCHAR,
    last_event_at TIMESTAMPTZ,
    reentered_on DATE
)
"""

LOG_DDL = """
create table if not exists ops.action_log (
    action_key VARCHAR NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR,
    from_status VARCHAR,
    to_status VARCHAR NOT NULL,
    reason VARCHAR
)
"""

EMAIL_EVENTS_DDL = """
create table if not exists ops.email_events (
    event_key VARCHAR PRIMARY KEY,
    sg_event_id VARCHAR,
    sg_message_id VARCHAR,
    outbox_id VARCHAR,
    email VARCHAR,
    event VARCHAR NOT NULL,
    event_type VARCHAR,
    reason VARCHAR,
    url VARCHAR,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL
)
"""

EMAIL_SUPPRESSIONS_DDL = """
create table if not exists ops.email_suppressions (
    email VARCHAR PRIMARY KEY,
    reason VARCHAR NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    event_key VARCHAR
)
"""

COMMENTS = {
    "ops.action_ledger": "Every contact recoup planned (email, letter, phone or manager queue) "
    "and where it stands: one row per exactly-once key. status: planned, sending, sent, "
    "maybe_sent (no clear provider answer; never re-sent blindly), failed, suppressed, "
    "deferred, cancelled; reason says why.",
    "ops.action_log": "Every status change of every action, append-only: the audit trail.",
    "ops.email_events": "SendGrid Event Webhook events, once each (natural key), verified.",
    "ops.email_suppressions": "Addresses recoup never emails again (lower case): bounced, "
    "dropped, spam reports, unsubscribes.",
}


def ensure_ops_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The ledger, its log and the email-event tables (idempotent)."""
    connection.execute("create schema if not exists ops")
    for ddl in (LEDGER_DDL, LOG_DDL, EMAIL_EVENTS_DDL, EMAIL_SUPPRESSIONS_DDL):
        connection.execute(ddl)
    # a ledger made before skip tracing: the key's re-entry date came later
    connection.execute("alter table ops.action_ledger add column if not exists reentered_on DATE")
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")


def action_key(
    account_id: str,
    stage: str,
    channel: str,
    policy_version: str,
    stage_entered_date: dt.date,
    reentered_on: dt.date | None = None,
) -> str:
    """The opaque outbox id of one contact; `ACTION_KEY_SQL` computes the same in SQL.

    `reentered_on` is set when the account re-entered its stage on this channel because new
    contact details were accepted after it entered (a skip-trace result): the contact to the
    old details and the one to the new ones are two keys. Without it the key is unchanged."""
    parts = [account_id, stage, channel, policy_version, stage_entered_date.isoformat()]
    if reentered_on is not None:
        parts.append(reentered_on.isoformat())
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]


# the same key in DuckDB SQL, over columns of these names (concat_ws skips a null reentered_on)
ACTION_KEY_SQL = (
    "left(sha256(concat_ws('|', account_id, stage, channel, policy_version, "
    "strftime(stage_entered_date, '%Y-%m-%d'), strftime(reentered_on, '%Y-%m-%d'))), 32)"
)


def transition(
    connection: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    to_status: Status,
    *,
    run_id: str | None,
    reason: str | None = None,
    only_from: Sequence[Status] | None = None,
) -> int:
    """Move `keys` to `to_status` (only those now in `only_from`, when given), log each
    change, and return how many moved. Both writes commit together."""
    if not keys:
        return 0
    connection.execute("begin transaction")
    try:
        connection.execute(
            "create or replace temp table _moving as "
            "select action_key, status as from_status from ops.action_ledger "
            "where action_key in (select unnest(?::varchar[]))"
            + (" and list_contains(?, status)" if only_from is not None else ""),
            [list(keys), list(only_from)] if only_from is not None else [list(keys)],
        )
        connection.execute(
            """
            update ops.action_ledger as ledger
            set status = ?, reason = ?, status_at = now()
            from _moving
            where ledger.action_key = _moving.action_key
            """,
            [to_status, reason],
        )
        moved = connection.execute(
            """
            insert into ops.action_log
            select action_key, now(), ?, from_status, ?, ? from _moving
            """,
            [run_id, to_status, reason],
        ).fetchall()[0][0]
        connection.execute("drop table _moving")
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return moved


def claim(connection: duckdb.DuckDBPyConnection, keys: Sequence[str], *, run_id: str) -> list[str]:
    """Move `keys` from `planned` to `sending` and return the ones that moved: only those
    may be handed to a provider."""
    transition(connection, keys, "sending", run_id=run_id, only_from=("planned",))
    if not keys:
        return []
    rows = connection.execute(
        "select action_key from ops.action_ledger "
        "where action_key in (select unnest(?::varchar[])) and status = 'sending'",
        [list(keys)],
    ).fetchall()
    claimed = {key for (key,) in rows}
    return [key for key in keys if key in claimed]


def status_counts(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """How many actions per (channel, status)."""
    rows = connection.execute(
        "select channel, status, count(*) from ops.action_ledger group by all"
    ).fetchall()
    return {(channel, status): count for channel, status, count in rows}


@dataclass(frozen=True)
class Outcome:
    """What became of one action in a send step."""

    action_key: str
    status: Status
    reason: str | None = None
    attempts: int = 0
    provider: str | None = None
    provider_message_id: str | None = None
    sent_at: dt.datetime | None = None
    send_at: dt.datetime | None = None
    recipient: str | None = None
    language: str | None = None
    output_path: str | None = None
    owner: str | None = None
    due_date: dt.date | None = None


@dataclass
class ChannelOutcome:
    """What one channel's send step did: actions per (status, reason), and the files it wrote."""

    channel: str
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # manifest, queue file or outbox folder
    scheduled: int = 0  # emails accepted with a send_at later than now (outside the window)
    provider: str | None = None

    def add(self, status: str, reason: str | None, count: int = 1) -> None:
        if count:
            key = (status, reason or "")
            self.counts[key] = self.counts.get(key, 0) + count

    def total(self, status: str) -> int:
        return sum(count for (each, _), count in self.counts.items() if each == status)


_OUTCOME_SCHEMA = pa.schema(
    [
        ("action_key", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("attempts", pa.int32()),
        ("provider", pa.string()),
        ("provider_message_id", pa.string()),
        ("sent_at", pa.timestamp("us", tz="UTC")),
        ("send_at", pa.timestamp("us", tz="UTC")),
        ("recipient", pa.string()),
        ("language", pa.string()),
        ("output_path", pa.string()),
        ("owner", pa.string()),
        ("due_date", pa.date32()),
    ]
)


def record_outcomes(
    connection: duckdb.DuckDBPyConnection, outcomes: Sequence[Outcome], *, run_id: str
) -> None:
    """Write the outcomes of a send step into the ledger and the log, in one transaction.
    Only actions still `sending` (or `planned`, for ones never claimed) change: an outcome
    never overwrites a status an event already confirmed."""
    if not outcomes:
        return
    frame = pa.Table.from_pylist(
        [{name: getattr(outcome, name) for name in _OUTCOME_SCHEMA.names} for outcome in outcomes],
        schema=_OUTCOME_SCHEMA,
    )
    connection.register("_outcomes_arrow", frame)
    connection.execute("begin transaction")
    try:
        connection.execute(
            """
            create or replace temp table _outcomes as
            select outcomes.*, ledger.status as from_status
            from _outcomes_arrow as outcomes
            inner join ops.action_ledger as ledger
                on outcomes.action_key = ledger.action_key
            where ledger.status in ('sending', 'planned')
            """
        )
        connection.execute(
            """
            update ops.action_ledger as ledger
            set
                status = outcomes.status,
                reason = outcomes.reason,
                attempts = ledger.attempts + outcomes.attempts,
                provider = coalesce(outcomes.provider, ledger.provider),
                provider_message_id = coalesce(
                    outcomes.provider_message_id, ledger.provider_message_id
                ),
                sent_at = coalesce(outcomes.sent_at, ledger.sent_at),
                send_at = coalesce(outcomes.send_at, ledger.send_at),
                recipient = coalesce(outcomes.recipient, ledger.recipient),
                language = coalesce(outcomes.language, ledger.language),
                output_path = coalesce(outcomes.output_path, ledger.output_path),
                owner = coalesce(outcomes.owner, ledger.owner),
                due_date = coalesce(outcomes.due_date, ledger.due_date),
                status_at = now()
            from _outcomes as outcomes
            where ledger.action_key = outcomes.action_key
            """
        )
        connection.execute(
            """
            insert into ops.action_log
            select action_key, now(), ?, from_status, status, reason from _outcomes
            """,
            [run_id],
        )
        connection.execute("drop table _outcomes")
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        connection.unregister("_outcomes_arrow")
