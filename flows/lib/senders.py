"""The two email senders: `SendGridSender` (SendGrid v3 Mail Send) and `OutboxSender` (.eml files).

Both implement `flows.lib.messages.EmailSender`: one call to `send` is one request's worth of
messages, and every message gets exactly one `SendResult`.

SendGrid does not deduplicate (shared/reference/sendgrid.md B5), so the sender decides per HTTP
request whether SendGrid may have the messages:

    202 (200 in sandbox mode)            sent, with X-Message-Id
    429                                  not accepted: wait for X-RateLimit-Reset, then retry
    500 502 503 504                      retried with backoff (the outbox_id rides along in
                                         custom_args, so an event tells a duplicate); at the
                                         last attempt maybe_sent
    connection refused, DNS, certificate not accepted: retried with backoff; then failed
    timeout, connection lost mid-request maybe_sent at once, never retried (at-most-once)
    401                                  failed, then `SendAborted` carrying every result
    other 4xx                            failed with SendGrid's own error text

Error texts go to the ledger: they never hold the API key or a message body.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import http.client
import json
import logging
import math
import re
import socket
import ssl
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from flows.lib.config import EmailSettings, Settings
from flows.lib.eml_writer import eml_bytes, plain_link
from flows.lib.file_batches import write_batch_atomically
from flows.lib.messages import EmailMessage, SendAborted, SendResult, SendStatus
from flows.lib.output_files import owner_only_folder

logger = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = 1000  # SendGrid's hard limit per request (B4)
# SendGrid allows 10,000 bytes of substitutions per personalization; the rest is room for the
# tags and the JSON around them. A message over this goes in a request of its own, bodies inline.
MAX_SUBSTITUTED_BODY_BYTES = 9_000
TEXT_TAG = "%recoup_text%"
HTML_TAG = "%recoup_html%"
SUBSTITUTED_CONTENT = [
    {"type": "text/plain", "value": TEXT_TAG},
    {"type": "text/html", "value": HTML_TAG},
]
RETRIED_SERVER_ERRORS = frozenset({500, 502, 503, 504})
# errno values meaning the connection was never made, so SendGrid cannot have the request
NOT_CONNECTED_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})
ERROR_EXCERPT_CHARS = 200
# an outbox_id becomes a file name: the ledger's keys are 32 hex characters
OUTBOX_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


# --- SendGrid ---------------------------------------------------------------------------------


def build_request(
    messages: Sequence[EmailMessage],
    *,
    from_address: str,
    from_name: str,
    reply_to: str | None,
    sandbox: bool,
    asm_group_id: int | None,
) -> list[tuple[list[EmailMessage], dict[str, Any]]]:
    """The Mail Send bodies for these messages, each with the messages it carries.

    Messages whose bodies fit in substitutions share one request, one personalization each;
    a larger message gets a request of its own with its bodies inline.
    """
    if len(messages) > MAX_PERSONALIZATIONS:
        raise ValueError(
            f"{len(messages)} messages in one call; SendGrid takes at most "
            f"{MAX_PERSONALIZATIONS} per request (lower email.batch_size)"
        )
    check_unique_addresses(messages)
    envelope = _message_level_fields(
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        sandbox=sandbox,
        asm_group_id=asm_group_id,
    )
    shared = [message for message in messages if not needs_own_request(message)]
    requests: list[tuple[list[EmailMessage], dict[str, Any]]] = []
    if shared:
        body = {
            "personalizations": [_personalization(message, substituted=True) for message in shared],
            **envelope,
            "content": [dict(part) for part in SUBSTITUTED_CONTENT],
        }
        requests.append((shared, body))
    for message in messages:
        if needs_own_request(message):
            body = {
                "personalizations": [_personalization(message, substituted=False)],
                **envelope,
                "content": [
                    {"type": "text/plain", "value": message.text},
                    {"type": "text/html", "value": message.html},
                ],
            }
            requests.append(([message], body))
    return requests


def check_unique_addresses(messages: Sequence[EmailMessage]) -> None:
    """Raise ValueError when an address appears twice: SendGrid rejects or drops repeats (B4)."""
    seen: dict[str, str] = {}
    for message in messages:
        address = message.to_address.strip().lower()
        if address in seen:
            raise ValueError(
                f"outbox ids {seen[address]} and {message.outbox_id} go to the same address in "
                "one request; SendGrid takes each address once per request"
            )
        seen[address] = message.outbox_id


def needs_own_request(message: EmailMessage) -> bool:
    """True when the two bodies are too large for one personalization's substitutions."""
    size = len(message.text.encode("utf-8")) + len(message.html.encode("utf-8"))
    return size > MAX_SUBSTITUTED_BODY_BYTES


def unix_send_at(send_at: dt.datetime) -> int:
    """SendGrid's `send_at`: whole Unix seconds, rounded up so a send is never early."""
    if send_at.tzinfo is None or send_at.utcoffset() is None:
        raise ValueError(f"send_at {send_at.isoformat()} has no time zone; pass an aware datetime")
    return math.ceil(send_at.timestamp())


def _message_level_fields(
    *,
    from_address: str,
    from_name: str,
    reply_to: str | None,
    sandbox: bool,
    asm_group_id: int | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"from": {"email": from_address, "name": from_name}}
    if reply_to:
        fields["reply_to"] = {"email": reply_to}
    fields["categories"] = ["recoup"]
    # never any bypass_* setting: it would ignore a Reg F opt-out (B9)
    fields["mail_settings"] = {"sandbox_mode": {"enable": bool(sandbox)}}
    # click tracking would rewrite the pay and opt-out links
    fields["tracking_settings"] = {"click_tracking": {"enable": False, "enable_text": False}}
    if asm_group_id is not None:
        fields["asm"] = {"group_id": int(asm_group_id)}
    return fields


def _personalization(message: EmailMessage, *, substituted: bool) -> dict[str, Any]:
    personalization: dict[str, Any] = {
        "to": [{"email": message.to_address, "name": message.to_name}],
        "subject": message.subject,
        "custom_args": {"outbox_id": message.outbox_id},  # opaque key only, never PII (B2)
        "headers": {
            "List-Unsubscribe": f"<{message.opt_out_link}>",
            # RFC 8058 one-click: the mail client posts to the link (recoup's /opt-out)
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    if message.send_at is not None:
        personalization["send_at"] = unix_send_at(message.send_at)
    if substituted:
        personalization["substitutions"] = {TEXT_TAG: message.text, HTML_TAG: message.html}
    return personalization


def describe_http_error(status: int, body: bytes | str | None) -> str:
    """SendGrid's own words for a non-2xx answer: each `errors[].field: message`."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    if not text.strip():
        return f"HTTP {status} with an empty body"
    try:
        document = json.loads(text)
    except ValueError:
        return f"HTTP {status} with an unreadable body: {text[:ERROR_EXCERPT_CHARS]}"
    errors = document.get("errors") if isinstance(document, dict) else None
    parts = []
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            parts.append(f"{field}: {item['message']}" if field else str(item["message"]))
    if not parts:
        return f"HTTP {status} with an unexpected body: {text[:ERROR_EXCERPT_CHARS]}"
    return f"HTTP {status}: " + "; ".join(parts)


@dataclass(frozen=True)
class _RequestOutcome:
    """What became of one request (all its messages share it) after all its attempts."""

    status: SendStatus
    attempts: int
    message_id: str | None = None
    error: str | None = None
    key_refused: bool = False
    rejected: bool = False  # a 400: SendGrid validated the request and took none of it


class SendGridSender:
    """Sends through SendGrid v3 Mail Send, one personalization per message.

    Not thread-safe (the library's client shares mutable headers): one sender per thread.
    """

    def __init__(
        self,
        api_key: str,
        host: str,
        email: EmailSettings,
        from_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key or not api_key.strip():
            # the library would quietly read SENDGRID_API_KEY itself; config.py owns that
            raise ValueError("SendGridSender needs an API key; without one use OutboxSender")
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.email = email
        self.from_name = from_name
        self.provider = "sendgrid-sandbox" if email.sandbox_mode else "sendgrid"
        self._sleep = sleep
        self._clock = clock
        self._client = SendGridAPIClient(api_key=api_key, host=self.host)
        # the library has no timeout by default and would wait forever (B6, B10)
        self._client.client.timeout = email.timeout_seconds
        # python_http_client logs the Authorization header and every body at DEBUG
        logging.getLogger("python_http_client.client").setLevel(logging.INFO)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> SendGridSender:
        if settings.sendgrid_api_key is None:
            raise ValueError("SENDGRID_API_KEY is not set; without it emails go to OutboxSender")
        return cls(
            settings.sendgrid_api_key.get_secret_value(),
            settings.sendgrid_api_host,
            settings.email,
            settings.sender_name,
            sleep=sleep,
            clock=clock,
        )

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send one batch; usually one HTTP request, one more per oversized message."""
        requests = build_request(
            messages,
            from_address=self.email.from_address,
            from_name=self.from_name,
            reply_to=self.email.reply_to,
            sandbox=self.email.sandbox_mode,
            asm_group_id=self.email.unsubscribe_group_id,
        )
        results: list[SendResult] = []
        refused: _RequestOutcome | None = None
        for batch, body in requests:
            if refused is not None:
                results.extend(
                    self._results(
                        batch,
                        _RequestOutcome(
                            "failed", 0, error="not sent: SendGrid refused the API key (HTTP 401)"
                        ),
                    )
                )
                continue
            outcome = self._send_request(batch, body)
            if outcome.rejected and len(batch) > 1:
                # SendGrid refuses a whole request for one bad personalization (an address it
                # will not take): nothing was accepted, so send the halves on their own and let
                # only the bad message fail
                middle = len(batch) // 2
                halves = [self.send(batch[:middle]), self.send(batch[middle:])]
                results.extend(
                    dataclasses.replace(result, attempts=result.attempts + outcome.attempts)
                    for half in halves
                    for result in half
                )
                continue
            results.extend(self._results(batch, outcome))
            if outcome.key_refused:
                refused = outcome
        if refused is not None:
            detail = (refused.error or "").removeprefix("HTTP 401: ")
            # results cover every message of the call, including any sent before the 401
            raise SendAborted(
                f"SendGrid refused the API key (HTTP 401): {detail}; "
                "check SENDGRID_API_KEY and its Mail Send scope",
                results,
            )
        return results

    def _send_request(self, batch: list[EmailMessage], body: dict[str, Any]) -> _RequestOutcome:
        """Post one body, retrying only where SendGrid cannot have accepted it (or per 5xx)."""
        attempts_allowed = self.email.max_attempts
        attempt = 0
        maybe_accepted: str | None = None  # an earlier attempt SendGrid may have taken
        while True:
            attempt += 1
            try:
                response = self._client.send(body)
            except HTTPError as error:
                status = int(error.status_code)
                described = self._redact(describe_http_error(status, error.body))
                if status == 401:
                    return _RequestOutcome("failed", attempt, error=described, key_refused=True)
                if status == 429:
                    wait, reason = self._rate_limit_wait(error.headers, attempt)
                    if wait is None:
                        return self._refused(attempt, reason, maybe_accepted)
                    if attempt >= attempts_allowed:
                        return self._refused(
                            attempt,
                            f"HTTP 429 from SendGrid after {attempt} attempts; "
                            "rate limited, not accepted",
                            maybe_accepted,
                        )
                    self._wait(wait, f"HTTP 429, {reason}", batch, attempt)
                    continue
                if status in RETRIED_SERVER_ERRORS:
                    if attempt >= attempts_allowed:
                        return _RequestOutcome(
                            "maybe_sent",
                            attempt,
                            error=f"HTTP {status} from SendGrid after {attempt} attempts; "
                            f"it may have been accepted ({described})",
                        )
                    maybe_accepted = f"HTTP {status} on attempt {attempt}"
                    self._wait(self._backoff(attempt), f"HTTP {status}", batch, attempt)
                    continue
                if status >= 500:
                    return _RequestOutcome(
                        "maybe_sent",
                        attempt,
                        error=f"HTTP {status} from SendGrid; it may have been accepted "
                        f"({described})",
                    )
                refused = self._refused(attempt, described, maybe_accepted)
                return dataclasses.replace(refused, rejected=status == 400 and not maybe_accepted)
            except (OSError, http.client.HTTPException) as error:
                if never_reached_server(error):
                    if attempt >= attempts_allowed:
                        return self._refused(
                            attempt,
                            f"could not connect to {self.host}: "
                            f"{self._redact(_reason(error))} (after {attempt} attempts)",
                            maybe_accepted,
                        )
                    self._wait(self._backoff(attempt), "could not connect", batch, attempt)
                    continue
                if is_timeout(error):
                    return _RequestOutcome(
                        "maybe_sent",
                        attempt,
                        error=f"no answer from {self.host} within {self.email.timeout_seconds} s; "
                        "it may have been accepted, so it was not retried",
                    )
                return _RequestOutcome(
                    "maybe_sent",
                    attempt,
                    error=f"the connection to {self.host} broke before SendGrid answered "
                    f"({type(error).__name__}: {self._redact(_reason(error))}); "
                    "it may have been accepted, so it was not retried",
                )
            return self._accepted(response.status_code, response.headers, attempt)

    @staticmethod
    def _refused(attempt: int, error: str, maybe_accepted: str | None) -> _RequestOutcome:
        """The last attempt was refused: failed (planned again later), unless an earlier
        attempt got a 5xx, which SendGrid may have accepted: then maybe_sent, never re-sent."""
        if maybe_accepted is None:
            return _RequestOutcome("failed", attempt, error=error)
        return _RequestOutcome(
            "maybe_sent",
            attempt,
            error=f"{error}; but an earlier attempt got {maybe_accepted}, "
            "which SendGrid may have accepted",
        )

    def _accepted(self, status: int, headers: Any, attempt: int) -> _RequestOutcome:
        message_id = headers.get("X-Message-Id") if headers is not None else None
        if status == 202 or (status == 200 and self.email.sandbox_mode):
            return _RequestOutcome("sent", attempt, message_id=message_id)
        # a 2xx SendGrid never gives here: maybe not SendGrid at all (SENDGRID_API_HOST)
        return _RequestOutcome(
            "maybe_sent",
            attempt,
            message_id=message_id,
            error=f"unexpected HTTP {status} from {self.host} (SendGrid answers 202); "
            "it may have been accepted",
        )

    def _rate_limit_wait(self, headers: Any, attempt: int) -> tuple[float | None, str]:
        """Seconds to wait before retrying a 429, or None when the reset is too far away."""
        reset = _header_number(headers, "X-RateLimit-Reset")
        if reset is None:
            return self._backoff(attempt), "no X-RateLimit-Reset header, backing off"
        wait = max(0.0, reset - self._clock())
        resets_at = dt.datetime.fromtimestamp(reset, dt.UTC).isoformat(timespec="seconds")
        longest = self.email.max_rate_limit_wait_seconds
        if wait > longest:
            return None, (
                f"HTTP 429 from SendGrid: the rate limit resets at {resets_at}, {wait:.0f} s away, "
                f"beyond email.max_rate_limit_wait_seconds ({longest:g} s); not accepted"
            )
        return wait, f"the rate limit resets at {resets_at}"

    def _backoff(self, attempt: int) -> float:
        return self.email.backoff_seconds * 2 ** (attempt - 1)

    def _wait(self, seconds: float, why: str, batch: list[EmailMessage], attempt: int) -> None:
        logger.warning(
            "SendGrid request of %d messages: %s (attempt %d of %d); retrying in %.1f s",
            len(batch),
            why,
            attempt,
            self.email.max_attempts,
            seconds,
        )
        self._sleep(seconds)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[api key]")

    def _results(self, batch: list[EmailMessage], outcome: _RequestOutcome) -> list[SendResult]:
        return [
            SendResult(
                outbox_id=message.outbox_id,
                status=outcome.status,
                provider=self.provider,
                attempts=outcome.attempts,
                provider_message_id=outcome.message_id,
                error=outcome.error,
            )
            for message in batch
        ]


def never_reached_server(error: BaseException) -> bool:
    """True when the request certainly never left: refused, unreachable, DNS, or TLS refused.

    urllib wraps failures while connecting and writing in URLError; a timeout there may come
    after part of the request was written, so it does not count.
    """
    if not isinstance(error, urllib.error.URLError):
        return False
    reason = error.reason
    if not isinstance(reason, BaseException):
        return True  # urllib refused the URL itself ("unknown url type")
    if isinstance(reason, TimeoutError):
        return False
    if isinstance(reason, (ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError)):
        return True
    return isinstance(reason, OSError) and reason.errno in NOT_CONNECTED_ERRNOS


def is_timeout(error: BaseException) -> bool:
    """True for a timeout, bare (waiting for the answer) or wrapped in URLError (connecting)."""
    if isinstance(error, urllib.error.URLError):
        return isinstance(error.reason, TimeoutError)
    return isinstance(error, TimeoutError)


def _reason(error: BaseException) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return str(reason) or type(reason).__name__


def _header_number(headers: Any, name: str) -> float | None:
    raw = headers.get(name) if headers is not None else None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --- Outbox -----------------------------------------------------------------------------------


class OutboxSender:
    """Writes each message as `<folder>/<outbox_id>.eml`, standing in for SendGrid."""

    provider = "outbox"

    def __init__(
        self, folder: Path, *, from_address: str, from_name: str, reply_to: str | None
    ) -> None:
        self.folder = Path(folder)
        self.from_address = from_address
        self.from_name = from_name
        self.reply_to = reply_to

    @classmethod
    def from_settings(cls, settings: Settings, folder: Path) -> OutboxSender:
        return cls(
            folder,
            from_address=settings.email.from_address,
            from_name=settings.sender_name,
            reply_to=settings.email.reply_to,
        )

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Write one .eml per message; writing an outbox_id again replaces its file."""
        for message in messages:
            if not OUTBOX_ID_PATTERN.fullmatch(message.outbox_id):
                raise ValueError(
                    f"outbox id {message.outbox_id!r} cannot be a file name; "
                    "use letters, digits, '.', '_' and '-'"
                )
        owner_only_folder(self.folder)
        built: list[tuple[EmailMessage, bytes]] = []
        results: dict[str, SendResult] = {}
        now = dt.datetime.now(dt.UTC)
        for message in messages:
            try:
                built.append((message, self._eml_bytes(message, now)))
            except (ValueError, MessageError) as error:
                results[message.outbox_id] = self._failed(
                    message, f"could not build the email: {error}"
                )
        # one flush of the folder per request, not two per file (flows/lib/file_batches.py)
        failed = write_batch_atomically(
            self.folder, [(f"{message.outbox_id}.eml", data) for message, data in built]
        )
        for message, _ in built:
            path = self.folder / f"{message.outbox_id}.eml"
            error = failed.get(path.name)
            results[message.outbox_id] = (
                self._failed(message, f"could not write {path}: {error.strerror or error}")
                if error is not None
                else SendResult(
                    outbox_id=message.outbox_id,
                    status="sent",
                    provider=self.provider,
                    attempts=1,
                    provider_message_id=path.name,
                    output_path=str(path),
                )
            )
        return [results[message.outbox_id] for message in messages]

    def _eml_bytes(self, message: EmailMessage, now: dt.datetime) -> bytes:
        # build_eml(...).as_bytes(), byte for byte, with the plain headers written directly
        # (flows/lib/eml_writer.py); LF line ends, so the file reads back exactly as written
        return eml_bytes(
            message,
            from_address=self.from_address,
            from_name=self.from_name,
            reply_to=self.reply_to,
            now=now,
        )

    def _failed(self, message: EmailMessage, error: str) -> SendResult:
        return SendResult(
            outbox_id=message.outbox_id,
            status="failed",
            provider=self.provider,
            attempts=1,
            error=error,
        )


# the default policy, except that a header stored raw (`set_raw`) is written as it is
RAW_AS_WRITTEN = default_policy.clone(refold_source="none")


def build_eml(
    message: EmailMessage,
    *,
    from_address: str,
    from_name: str,
    reply_to: str | None,
    now: dt.datetime,
) -> MimeMessage:
    """The message as a MIME email: multipart/alternative, text/plain then text/html, UTF-8.
    OutboxSender writes the same bytes faster with flows/lib/eml_writer.py."""
    eml = MimeMessage(policy=RAW_AS_WRITTEN)
    eml["From"] = Address(display_name=from_name, addr_spec=from_address)
    eml["To"] = Address(display_name=message.to_name, addr_spec=message.to_address)
    if reply_to:
        eml["Reply-To"] = Address(addr_spec=reply_to)
    eml["Subject"] = message.subject
    eml["Date"] = now.astimezone(dt.UTC)
    eml["Message-ID"] = f"<{message.outbox_id}@recoup.outbox>"
    if plain_link(message.opt_out_link):
        # as written, not folded into encoded words (eml_writer.list_unsubscribe says why)
        eml.set_raw("List-Unsubscribe", f"<{message.opt_out_link}>")
    else:
        eml["List-Unsubscribe"] = f"<{message.opt_out_link}>"
    eml["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    eml["X-Recoup-Outbox-Id"] = message.outbox_id
    if message.send_at is not None:
        unix_send_at(message.send_at)  # the same refusal of a naive datetime as SendGrid's
        eml["X-Recoup-Send-At"] = message.send_at.astimezone(dt.UTC).isoformat()
    eml.set_content(message.text, subtype="plain", charset="utf-8")
    eml.add_alternative(message.html, subtype="html", charset="utf-8")
    return eml
