"""Provider faults: the daily run against a loopback SendGrid that misbehaves (issue #12, part 2).

A threaded HTTP server on 127.0.0.1 stands in for SendGrid's Mail Send endpoint
(SENDGRID_API_HOST). It answers each request from a script keyed by the recipient's address,
one answer per attempt: 202 with X-Message-Id; 429 with X-RateLimit-Limit, -Remaining and
-Reset; 500; 503; no answer before the client's timeout; a connection reset without an answer;
an answer with a malformed body of the wrong content type. With one message per request
(`email.batch_size` 1), every customer meets exactly the fault named by their address.

The real daily flow runs twice on the same export and date: first against the faulty server,
then against a healthy one. After the first run each email is `sent` (the server accepted it
exactly once), `failed` with the provider's reason (refused: planned again), or `maybe_sent`
(the server may have it: never re-sent blindly). The rerun sends exactly the failed ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = dt.date(2026, 11, 21)
KEY = "SG.loopback-provider-faults.not-a-secret"
TIMEOUT_SECONDS = 0.5  # email.timeout_seconds for the run
HANG_SECONDS = 1.5  # a "slow" answer comes this long after the request: past the timeout
MAX_ATTEMPTS = 3

ACCEPT = "202"
RATE_LIMITED_BRIEFLY = "429, the limit resets in a second"
RATE_LIMITED_FOR_AN_HOUR = "429, the limit resets in an hour"
SERVER_ERROR = "500"
UNAVAILABLE = "503"
HANG = "no answer before the timeout"
RESET = "connection reset"
MALFORMED_REFUSAL = "400 with an HTML body"
MALFORMED_ACCEPT = "202 with an HTML body"
MALFORMED_GATEWAY = "502 with an HTML body"
MALFORMED_RATE_LIMIT = "429 whose X-RateLimit-Reset is not a number"
BAD_ADDRESS = "400 naming the field"

# the recipient's local part → the server's answers, one per attempt (then 202)
SCRIPT: dict[str, tuple[str, ...]] = {
    "ok": (ACCEPT,),
    "busy": (RATE_LIMITED_BRIEFLY, ACCEPT),
    "throttled": (RATE_LIMITED_FOR_AN_HOUR,),
    "flaky": (SERVER_ERROR, ACCEPT),
    "down": (UNAVAILABLE,) * MAX_ATTEMPTS,
    "slow": (HANG,),
    "cut": (RESET,),
    "garbled": (MALFORMED_REFUSAL,),
    "odd": (MALFORMED_ACCEPT,),
    "proxied": (MALFORMED_GATEWAY, ACCEPT),
    "vague": (MALFORMED_RATE_LIMIT, ACCEPT),
    "refused": (BAD_ADDRESS,),
}
# what the ledger says after the faulty run, and why
EXPECTED = {
    "ok": ("sent", None),
    "busy": ("sent", None),  # waited for X-RateLimit-Reset, then accepted
    "throttled": ("failed", "beyond email.max_rate_limit_wait_seconds"),
    "flaky": ("sent", None),  # a 500 is retried; the retry carries the same outbox_id
    "down": ("maybe_sent", f"HTTP 503 from SendGrid after {MAX_ATTEMPTS} attempts"),
    "slow": ("maybe_sent", f"within {TIMEOUT_SECONDS} s; it may have been accepted"),
    "cut": ("maybe_sent", "broke before SendGrid answered"),
    "garbled": ("failed", "HTTP 400 with an unreadable body: <html><body>Bad request"),
    "odd": ("sent", None),  # a 202 is an acceptance, whatever its body says
    "proxied": ("sent", None),  # a 5xx from a proxy is retried like SendGrid's own
    "vague": ("sent", None),  # no reset time to wait for: backed off, then accepted
    "refused": ("failed", "HTTP 400: personalizations.0.to: Does not contain a valid address"),
}


@dataclass
class Seen:
    """One request the server got: to whom, and how it answered."""

    local_part: str
    answer: str


@dataclass
class FakeSendGrid:
    """The server's state: its script, and every request it got."""

    script: dict[str, tuple[str, ...]]
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, local_part: str) -> str:
        with self.lock:
            attempt = sum(1 for each in self.seen if each.local_part == local_part)
            answers = self.script.get(local_part, ())
            answer = answers[attempt] if attempt < len(answers) else ACCEPT
            self.seen.append(Seen(local_part, answer))
            return answer

    def answered(self, local_part: str, answer: str | None = None) -> int:
        return sum(
            1
            for each in self.seen
            if each.local_part == local_part and answer in (None, each.answer)
        )


class MailSendHandler(http.server.BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        [personalization] = body["personalizations"]  # email.batch_size is 1
        local_part = personalization["to"][0]["email"].split("@")[0]
        answer = self.server.state.next_answer(local_part)
        if answer == RESET:
            # SO_LINGER 0: closing sends a reset instead of an orderly end, and no answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if answer == HANG:
            time.sleep(HANG_SECONDS)  # the client gave up; this acceptance comes too late
        with contextlib.suppress(OSError):  # the client may be gone
            self._answer(answer)

    def _answer(self, answer: str) -> None:
        message_id = f"msg-{len(self.server.state.seen)}"
        now = int(time.time())
        responses = {
            ACCEPT: (202, {"X-Message-Id": message_id}, "", None),
            HANG: (202, {"X-Message-Id": message_id}, "", None),
            RATE_LIMITED_BRIEFLY: (429, _rate_limit(now + 1), _errors("too many requests"), None),
            RATE_LIMITED_FOR_AN_HOUR: (
                429, _rate_limit(now + 3600), _errors("too many requests"), None
            ),
            SERVER_ERROR: (500, {}, _errors("internal server error"), None),
            UNAVAILABLE: (503, {}, _errors("service unavailable"), None),
            MALFORMED_REFUSAL: (400, {}, "<html><body>Bad request</body></html>", "text/html"),
            MALFORMED_ACCEPT: (202, {"X-Message-Id": message_id}, "<html>{oops", "text/html"),
            MALFORMED_GATEWAY: (502, {}, "<html><h1>502 Bad Gateway</h1>", "text/html"),
            MALFORMED_RATE_LIMIT: (
                429, {"X-RateLimit-Reset": "soon"}, "slow down", "text/plain"
            ),
            BAD_ADDRESS: (
                400, {}, _errors("Does not contain a valid address.", "personalizations.0.to"),
                None,
            ),
        }  # fmt: skip
        status, headers, text, content_type = responses[answer]
        data = text.encode("utf-8")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test reads `seen`


def _rate_limit(reset: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
    }


def _errors(message: str, field_name: str | None = None) -> str:
    return json.dumps({"errors": [{"message": message, "field": field_name, "help": None}]})


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a hanging answer must not hold up the shutdown

    def __init__(self, state: FakeSendGrid) -> None:
        super().__init__(("127.0.0.1", 0), MailSendHandler)
        self.state = state

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def sendgrid(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackServer]:
    server = LoopbackServer(FakeSendGrid(SCRIPT))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name, value in {
        "SENDGRID_API_KEY": KEY,
        "SENDGRID_API_HOST": server.host,
        "RECOUP_EMAIL__BATCH_SIZE": "1",
        "RECOUP_EMAIL__TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "RECOUP_EMAIL__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "RECOUP_EMAIL__BACKOFF_SECONDS": "0",
        "RECOUP_EMAIL__MAX_RATE_LIMIT_WAIT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    yield server
    server.shutdown()
    server.server_close()


def one_customer_per_fault(inbox: Path) -> Path:
    """A customer per entry of SCRIPT, one day past due on D: a reminder_1 email each."""
    customers = [
        row("customers", customer_id=f"C-{name}", full_name=f"Client {name}",
            email=f"{name}@example.com", ssn="", date_of_birth="")
        for name in SCRIPT
    ]  # fmt: skip
    accounts = [row("accounts", account_id=f"A-{name}", customer_id=f"C-{name}") for name in SCRIPT]
    invoices = [
        row("invoices", invoice_id=f"I-{name}", account_id=f"A-{name}", issue_date="2026-10-20",
            due_date="2026-11-20")
        for name in SCRIPT
    ]  # fmt: skip
    fresh = [row("payments", account_id="A-ok", received_date="2026-11-19", amount="1.00")]
    return base_batch(inbox, customers=customers, accounts=accounts, invoices=invoices,
                      payments=fresh)  # fmt: skip


def email_ledger(home: Path) -> dict[str, tuple[str, str | None, int, str | None]]:
    """The recipient's local part → (status, reason, attempts, provider message id)."""
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    rows = connection.execute(
        "select account_id, status, reason, attempts, provider_message_id "
        "from ops.action_ledger where channel = 'email'"
    ).fetchall()
    connection.close()
    return {account.removeprefix("A-"): tuple(rest) for account, *rest in rows}


def test_provider_faults_end_sent_failed_or_maybe_sent_and_a_rerun_retries_only_the_failed(
    prefect_api, recoup_home: Path, sendgrid: LoopbackServer
) -> None:
    from flows.daily_dunning import daily_dunning

    one_customer_per_fault(recoup_home / "inbox" / "01")
    faulty = daily_dunning(as_of=D)

    # the run finishes: each fault is one message's outcome, not the run's
    assert faulty.record.status == "succeeded"
    ledger = email_ledger(recoup_home)
    assert set(ledger) == set(SCRIPT)
    for name, (status, reason_part) in EXPECTED.items():
        got_status, reason, _, _ = ledger[name]
        assert got_status == status, f"{name}: {got_status} ({reason})"
        if reason_part is None:
            assert reason is None, f"{name}: {reason}"
        else:
            assert reason_part in (reason or ""), f"{name}: {reason}"
        assert KEY not in (reason or "")
    state = sendgrid.state
    for name in SCRIPT:
        accepted = state.answered(name, ACCEPT) + state.answered(name, MALFORMED_ACCEPT)
        # sent: the server took it exactly once; failed: it never took it
        assert accepted == {"sent": 1, "failed": 0, "maybe_sent": 0}[EXPECTED[name][0]], name
    # retried where SendGrid cannot have taken it, or per 5xx; never after a timeout or reset
    assert {name: state.answered(name) for name in SCRIPT} == {
        "ok": 1, "busy": 2, "throttled": 1, "flaky": 2, "down": MAX_ATTEMPTS,
        "slow": 1, "cut": 1, "garbled": 1, "odd": 1, "proxied": 2, "vague": 2, "refused": 1,
    }  # fmt: skip
    assert ledger["ok"][3] and ledger["busy"][3] and ledger["odd"][3]  # X-Message-Id kept
    assert (ledger["busy"][2], ledger["flaky"][2]) == (2, 2)  # attempts recorded

    # a rerun against a healthy server: the failed ones go out, nothing else is sent again
    # (the marts already hold D: rebuilding them would change nothing here but take dbt's time)
    state.script = {}
    before = len(state.seen)
    rerun = daily_dunning(as_of=D, skip=["build"])
    assert rerun.record.status == "succeeded"
    retried = sorted(each.local_part for each in state.seen[before:])
    assert retried == sorted(name for name, (status, _) in EXPECTED.items() if status == "failed")
    after = email_ledger(recoup_home)
    assert {name: after[name][0] for name in SCRIPT} == {
        name: "sent" if status == "failed" else status for name, (status, _) in EXPECTED.items()
    }
    assert after["slow"] == ledger["slow"] and after["down"] == ledger["down"]  # untouched
