"""What the email senders take and give back: one rendered message in, one result out.

A sender is handed one request's worth of messages at a time (at most `email.batch_size`, each
address at most once: SendGrid drops repeats), after the ledger has marked them `sending`. It
returns one `SendResult` per message and never raises for a provider's answer; only a fault
that makes every later request pointless (a refused API key) raises `SendAborted`, after the
results of the messages it was given are known.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class EmailMessage:
    outbox_id: str  # the ledger's action_key: opaque, no PII; SendGrid echoes it in events
    to_address: str
    to_name: str
    subject: str
    text: str
    html: str
    send_at: dt.datetime | None  # timezone-aware; None sends now
    opt_out_link: str  # also sent as the List-Unsubscribe header


SendStatus = Literal["sent", "maybe_sent", "failed"]


@dataclass(frozen=True)
class SendResult:
    outbox_id: str
    status: SendStatus
    provider: str  # "sendgrid", "sendgrid-sandbox" or "outbox"
    attempts: int
    provider_message_id: str | None = None  # SendGrid's X-Message-Id, or the .eml file name
    error: str | None = None  # the provider's own words, for the ledger (never a message body)
    output_path: str | None = None  # the .eml file, in outbox mode


class SendAborted(RuntimeError):
    """Every later request would fail the same way (for example a refused API key).

    `results` holds the outcome of the messages of the request that found out (failed)."""

    def __init__(self, message: str, results: Sequence[SendResult] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class EmailSender(Protocol):
    provider: str

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send one request's worth of messages; one result per message, in any order."""
        ...
