"""The email senders: the SendGrid request body, SendGrid's answers over a loopback server, and
the outbox's .eml files.

The HTTP tests run the real `sendgrid` client against pytest-httpserver; nothing is mocked.
`sleep` and `clock` are injected, so a test records the waits instead of waiting.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import errno
import http.client
import json
import socket
import ssl
import stat
import threading
import time
import urllib.error
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.lib.config import EmailSettings, Settings
from flows.lib.messages import EmailMessage, SendAborted
from flows.lib.senders import (
    OutboxSender,
    SendGridSender,
    build_request,
    is_timeout,
    never_reached_server,
)

KEY = "SG.loopback-test-key.not-a-secret"
NOW = 1_772_380_000.0  # the injected clock: 2026-03-01 15:46:40 UTC
FROM_ADDRESS = "billing@acme-utilities.example"
REPLY_TO = "disputes@acme-utilities.example"
MAIL_SEND = "/v3/mail/send"
# a 400 SendGrid gives for an unverified sender (reference B3)
UNVERIFIED_SENDER = {
    "errors": [
        {
            "message": "The from address does not match a verified Sender Identity",
            "field": "from",
            "help": "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/",
        }
    ]
}


def a_message(number: int = 1, **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "outbox_id": f"{number:032x}",
        "to_address": f"customer{number}@example.com",
        "to_name": f"Customer {number}",
        "subject": f"Your account is past due ({number})",
        "text": f"Plain body {number}\n",
        "html": f"<p>HTML body {number}</p>\n",
        "send_at": None,
        "opt_out_link": f"https://acme-utilities.example/email-preferences?ref={number:032x}",
    }
    fields.update(overrides)
    return EmailMessage(**fields)


def email_settings(**overrides: Any) -> EmailSettings:
    fields: dict[str, Any] = {
        "from_address": FROM_ADDRESS,
        "reply_to": REPLY_TO,
        "max_attempts": 4,
        "backoff_seconds": 2.0,
        "timeout_seconds": 2.0,
        "max_rate_limit_wait_seconds": 120.0,
    }
    fields.update(overrides)
    return EmailSettings(**fields)


def bodies_of(messages: list[EmailMessage], **overrides: Any) -> list[dict[str, Any]]:
    fields: dict[str, Any] = {
        "from_address": FROM_ADDRESS,
        "from_name": "Acme Utilities",
        "reply_to": REPLY_TO,
        "sandbox": False,
        "asm_group_id": None,
    }
    fields.update(overrides)
    return [body for _, body in build_request(messages, **fields)]


class TestRequestBody:
    pytestmark = pytest.mark.unit

    def test_each_message_is_one_personalization_carrying_its_own_bodies(self) -> None:
        first, second = a_message(1), a_message(2)
        [body] = bodies_of([first, second], asm_group_id=4321)
        assert [p["custom_args"] for p in body["personalizations"]] == [
            {"outbox_id": first.outbox_id},
            {"outbox_id": second.outbox_id},
        ]
        personalization = body["personalizations"][1]
        assert personalization == {
            "to": [{"email": "customer2@example.com", "name": "Customer 2"}],
            "subject": "Your account is past due (2)",
            "custom_args": {"outbox_id": second.outbox_id},
            "headers": {
                "List-Unsubscribe": f"<{second.opt_out_link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            "substitutions": {
                "%recoup_text%": "Plain body 2\n",
                "%recoup_html%": "<p>HTML body 2</p>\n",
            },
        }
        assert body["content"] == [
            {"type": "text/plain", "value": "%recoup_text%"},
            {"type": "text/html", "value": "%recoup_html%"},
        ]
        assert body["from"] == {"email": FROM_ADDRESS, "name": "Acme Utilities"}
        assert body["reply_to"] == {"email": REPLY_TO}
        assert body["categories"] == ["recoup"]
        assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}
        assert body["tracking_settings"]["click_tracking"]["enable"] is False
        assert body["asm"] == {"group_id": 4321}

    def test_no_bypass_setting_ever_appears(self) -> None:
        # any bypass_* would ignore a Reg F opt-out (reference B9)
        for sandbox in (False, True):
            for body in bodies_of([a_message(1), a_message(2, text="x" * 9_500)], sandbox=sandbox):
                assert "bypass" not in json.dumps(body).lower()

    def test_optional_fields_are_left_out_when_unset(self) -> None:
        [body] = bodies_of([a_message()], reply_to=None, asm_group_id=None)
        assert "reply_to" not in body
        assert "asm" not in body
        assert "send_at" not in body["personalizations"][0]

    def test_send_at_is_whole_unix_seconds(self) -> None:
        chicago = zoneinfo.ZoneInfo("America/Chicago")
        on_time = a_message(send_at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=chicago))
        # a fraction of a second is rounded up: never earlier than planned
        late_by_a_fraction = a_message(
            2, send_at=dt.datetime(2026, 3, 2, 15, 30, 0, 250_000, tzinfo=dt.UTC)
        )
        [body] = bodies_of([on_time, late_by_a_fraction])
        send_ats = [p["send_at"] for p in body["personalizations"]]
        assert send_ats == [1_772_465_400, 1_772_465_401]  # 2026-03-02 15:30:00 UTC, +1 s
        assert all(type(value) is int for value in send_ats)

    def test_a_naive_send_at_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no time zone"):
            bodies_of([a_message(send_at=dt.datetime(2026, 3, 2, 9, 30))])

    def test_the_same_address_twice_is_refused_whatever_its_case(self) -> None:
        messages = [a_message(1), a_message(2, to_address="Customer1@Example.COM")]
        with pytest.raises(ValueError, match="same address"):
            bodies_of(messages)

    def test_a_message_over_9000_bytes_of_bodies_goes_alone_with_its_bodies_inline(self) -> None:
        # 4,501 characters but 9,002 UTF-8 bytes: the limit is in bytes
        large = a_message(2, text="é" * 4_501, html="")
        at_the_limit = a_message(3, text="a" * 4_500, html="b" * 4_500)
        requests = build_request(
            [a_message(1), large, at_the_limit],
            from_address=FROM_ADDRESS,
            from_name="Acme Utilities",
            reply_to=None,
            sandbox=False,
            asm_group_id=None,
        )
        assert [[m.outbox_id for m in batch] for batch, _ in requests] == [
            [a_message(1).outbox_id, at_the_limit.outbox_id],
            [large.outbox_id],
        ]
        alone = requests[1][1]
        assert "substitutions" not in alone["personalizations"][0]
        assert alone["content"] == [
            {"type": "text/plain", "value": "é" * 4_501},
            {"type": "text/html", "value": ""},
        ]
        assert alone["from"] == requests[0][1]["from"]


class TestTransportErrors:
    """Which network failures are safe to retry: only those where nothing reached SendGrid."""

    pytestmark = pytest.mark.unit

    @pytest.mark.parametrize(
        ("error", "safe_to_retry", "timed_out"),
        [
            pytest.param(
                urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
                True,
                False,
                id="connection refused",
            ),
            pytest.param(
                urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name not known")),
                True,
                False,
                id="DNS failure",
            ),
            pytest.param(
                urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable")),
                True,
                False,
                id="network unreachable",
            ),
            pytest.param(
                urllib.error.URLError(ssl.SSLCertVerificationError("certificate verify failed")),
                True,
                False,
                id="certificate refused",
            ),
            pytest.param(
                urllib.error.URLError(TimeoutError("timed out")),
                False,
                True,
                id="timeout while connecting or writing",
            ),
            pytest.param(TimeoutError("timed out"), False, True, id="timeout waiting for answer"),
            pytest.param(
                urllib.error.URLError(ConnectionResetError(errno.ECONNRESET, "reset")),
                False,
                False,
                id="reset while writing",
            ),
            pytest.param(
                http.client.RemoteDisconnected("Remote end closed connection without response"),
                False,
                False,
                id="remote disconnected",
            ),
            pytest.param(http.client.IncompleteRead(b"{"), False, False, id="incomplete read"),
        ],
    )
    def test_only_a_connection_never_made_is_safe_to_retry(
        self, error: BaseException, safe_to_retry: bool, timed_out: bool
    ) -> None:
        assert never_reached_server(error) is safe_to_retry
        assert is_timeout(error) is timed_out


@pytest.fixture
def waits() -> list[float]:
    """The injected sleep's record: each wait the sender asked for, in seconds."""
    return []


def a_sender(host: str, waits: list[float], **email_overrides: Any) -> SendGridSender:
    return SendGridSender(
        KEY,
        host,
        email_settings(**email_overrides),
        "Acme Utilities",
        sleep=waits.append,
        clock=lambda: NOW,
    )


def host_of(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/").rstrip("/")


def posted_bodies(httpserver: HTTPServer) -> list[dict[str, Any]]:
    return [json.loads(request.get_data()) for request, _ in httpserver.log]


def expect_send(httpserver: HTTPServer) -> Any:
    return httpserver.expect_ordered_request(MAIL_SEND, method="POST")


def accepted(message_id: str = "msg-1") -> Response:
    return Response("", status=202, headers={"X-Message-Id": message_id})


def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestSendGridOverHttp:
    pytestmark = pytest.mark.integration

    @pytest.fixture(autouse=True)
    def no_unexpected_requests(self, httpserver: HTTPServer) -> Any:
        yield
        httpserver.check_assertions()  # a request no handler expected fails the test

    def test_202_is_sent_with_the_message_id_and_the_request_is_what_sendgrid_expects(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        send_at = dt.datetime(2026, 3, 2, 15, 30, tzinfo=dt.UTC)
        first, second = a_message(1, send_at=send_at), a_message(2)
        expect_send(httpserver).respond_with_response(accepted("14c5d75ce93.dfd.64b469"))
        results = a_sender(host_of(httpserver), waits).send([first, second])

        assert {r.outbox_id: r.status for r in results} == {
            first.outbox_id: "sent",
            second.outbox_id: "sent",
        }
        assert {r.provider_message_id for r in results} == {"14c5d75ce93.dfd.64b469"}
        assert {(r.provider, r.attempts, r.error) for r in results} == {("sendgrid", 1, None)}
        [(request, _)] = httpserver.log
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.get_data())
        assert body["from"] == {"email": FROM_ADDRESS, "name": "Acme Utilities"}
        assert [p["custom_args"] for p in body["personalizations"]] == [
            {"outbox_id": first.outbox_id},
            {"outbox_id": second.outbox_id},
        ]
        assert body["personalizations"][0]["send_at"] == 1_772_465_400
        assert body["personalizations"][0]["headers"] == {
            "List-Unsubscribe": f"<{first.opt_out_link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert body["personalizations"][1]["substitutions"] == {
            "%recoup_text%": second.text,
            "%recoup_html%": second.html,
        }
        assert body["mail_settings"]["sandbox_mode"]["enable"] is False
        assert "bypass" not in request.get_data(as_text=True).lower()
        assert waits == []

    def test_429_waits_until_the_rate_limit_resets_then_sends(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_json(
            {"errors": [{"field": None, "message": "too many requests"}]},
            status=429,
            headers={"X-RateLimit-Limit": "600", "X-RateLimit-Reset": str(int(NOW) + 30)},
        )
        expect_send(httpserver).respond_with_response(accepted())
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert (result.status, result.attempts, result.provider_message_id) == ("sent", 2, "msg-1")
        assert len(httpserver.log) == 2
        assert waits == [30.0]
        assert posted_bodies(httpserver)[0] == posted_bodies(httpserver)[1]  # the same request

    def test_429_without_a_reset_header_backs_off(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_data("", status=429)
        expect_send(httpserver).respond_with_response(accepted())
        [result] = a_sender(host_of(httpserver), waits, backoff_seconds=1.5).send([a_message()])

        assert (result.status, result.attempts) == ("sent", 2)
        assert waits == [1.5]

    def test_429_resetting_beyond_the_longest_wait_fails_without_waiting(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_data(
            "", status=429, headers={"X-RateLimit-Reset": str(int(NOW) + 121)}
        )
        [result] = a_sender(host_of(httpserver), waits, max_rate_limit_wait_seconds=120).send(
            [a_message()]
        )

        assert (result.status, result.attempts) == ("failed", 1)
        assert "resets at 2026-03-01T15:48:41+00:00" in (result.error or "")
        assert len(httpserver.log) == 1
        assert waits == []

    def test_500_then_202_is_sent_on_the_second_attempt(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_json(
            {"errors": [{"message": "internal server error"}]}, status=500
        )
        expect_send(httpserver).respond_with_response(accepted("second-try"))
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert (result.status, result.attempts, result.provider_message_id) == (
            "sent",
            2,
            "second-try",
        )
        assert waits == [2.0]
        first, second = posted_bodies(httpserver)
        assert first == second  # the retry carries the same outbox_id in custom_args

    @pytest.mark.parametrize(
        "second",
        [
            pytest.param(Response('{"errors": [{"message": "bad"}]}', status=400), id="then 400"),
            pytest.param(Response("", status=429, headers={"X-RateLimit-Reset": str(int(NOW) + 999)}),
                         id="then 429 resetting too late"),
        ],
    )  # fmt: skip
    def test_a_refusal_after_a_5xx_is_maybe_sent_never_failed(
        self, httpserver: HTTPServer, waits: list[float], second: Response
    ) -> None:
        """The 500 may have been accepted: a later refusal must not make it re-plannable."""
        expect_send(httpserver).respond_with_data("", status=500)
        expect_send(httpserver).respond_with_response(second)
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert result.status == "maybe_sent"
        assert "an earlier attempt got HTTP 500 on attempt 1" in (result.error or "")

    def test_a_400_for_one_bad_address_fails_only_that_message(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        """SendGrid refuses the whole request; recoup splits it until the bad one is alone."""
        bad = "customer3@example.com"

        def judge(request: Request) -> Response:
            addresses = [
                p["to"][0]["email"] for p in json.loads(request.get_data())["personalizations"]
            ]
            if bad in addresses:
                return Response(
                    json.dumps({"errors": [{"message": "Invalid email", "field": "to"}]}),
                    status=400,
                )
            return accepted(f"ok-{len(addresses)}")

        httpserver.expect_request(MAIL_SEND, method="POST").respond_with_handler(judge)
        results = a_sender(host_of(httpserver), waits).send([a_message(n) for n in range(1, 5)])

        by_address = {f"customer{int(r.outbox_id, 16)}@example.com": r.status for r in results}
        assert by_address == {
            "customer1@example.com": "sent", "customer2@example.com": "sent",
            bad: "failed", "customer4@example.com": "sent",
        }  # fmt: skip
        assert len(httpserver.log) == 5  # 4 → 2 + 2 → the bad pair → 1 + 1
        assert waits == []

    def test_503_every_time_is_maybe_sent_after_max_attempts(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        httpserver.expect_request(MAIL_SEND, method="POST").respond_with_json(
            {"errors": [{"message": "service unavailable"}]}, status=503
        )
        results = a_sender(host_of(httpserver), waits, max_attempts=4).send(
            [a_message(1), a_message(2)]
        )

        assert {(r.status, r.attempts) for r in results} == {("maybe_sent", 4)}
        assert "HTTP 503 from SendGrid after 4 attempts; it may have been accepted" in (
            results[0].error or ""
        )
        assert len(httpserver.log) == 4
        assert waits == [2.0, 4.0, 8.0]  # backoff doubles; no wait after the last attempt

    def test_a_timeout_is_maybe_sent_and_never_retried(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        release = threading.Event()

        def answer_too_late(request: Request) -> Response:
            release.wait(5)
            return accepted("too-late")

        expect_send(httpserver).respond_with_handler(answer_too_late)
        sender = a_sender(host_of(httpserver), waits, timeout_seconds=0.5)
        started = time.monotonic()
        [result] = sender.send([a_message()])
        elapsed = time.monotonic() - started
        release.set()
        deadline = time.monotonic() + 5
        while not httpserver.log and time.monotonic() < deadline:
            time.sleep(0.01)

        assert (result.status, result.attempts, result.provider_message_id) == (
            "maybe_sent",
            1,
            None,
        )
        assert "within 0.5 s" in (result.error or "")
        assert 0.4 < elapsed < 3  # the client's timeout fired, not the server's answer
        assert len(httpserver.log) == 1
        assert waits == []

    def test_400_fails_with_sendgrids_own_words(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_json(UNVERIFIED_SENDER, status=400)
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert (result.status, result.attempts) == ("failed", 1)
        assert result.error == (
            "HTTP 400: from: The from address does not match a verified Sender Identity"
        )
        assert len(httpserver.log) == 1

    def test_400_with_a_body_that_is_not_json_fails_with_an_excerpt(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        page = "<html><body>Bad gateway configuration" + "." * 300 + "</body></html>"
        expect_send(httpserver).respond_with_data(page, status=400, content_type="text/html")
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert result.status == "failed"
        assert result.error == f"HTTP 400 with an unreadable body: {page[:200]}"

    def test_an_error_body_echoing_the_key_is_redacted(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        def echo_headers(request: Request) -> Response:
            return Response(f"refused: {request.headers['Authorization']}", status=403)

        expect_send(httpserver).respond_with_handler(echo_headers)
        message = a_message()
        [result] = a_sender(host_of(httpserver), waits).send([message])

        assert result.status == "failed"
        assert "refused: Bearer [api key]" in (result.error or "")
        assert KEY not in (result.error or "")
        assert message.text.strip() not in (result.error or "")

    def test_403_fails_the_request_without_aborting(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_json(UNVERIFIED_SENDER, status=403)
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert (result.status, result.attempts) == ("failed", 1)
        assert result.error and result.error.startswith("HTTP 403: from: ")

    def test_401_fails_every_message_and_aborts(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_json(
            {"errors": [{"field": None, "message": "authorization required"}]}, status=401
        )
        small, large = a_message(1), a_message(2, html="<p>" + "x" * 9_000 + "</p>")
        with pytest.raises(SendAborted, match=r"refused the API key \(HTTP 401\)") as aborted:
            a_sender(host_of(httpserver), waits).send([small, large])

        assert KEY not in str(aborted.value)
        assert "authorization required" in str(aborted.value)
        # the large message's own request is never made once the key is refused
        assert len(httpserver.log) == 1
        results = {r.outbox_id: r for r in aborted.value.results}
        assert {r.status for r in results.values()} == {"failed"}
        assert (results[small.outbox_id].attempts, results[large.outbox_id].attempts) == (1, 0)

    def test_a_refused_connection_is_retried_then_fails_never_maybe_sent(
        self, waits: list[float]
    ) -> None:
        host = f"http://127.0.0.1:{closed_port()}"
        [result] = a_sender(host, waits, max_attempts=3, backoff_seconds=0.5).send([a_message()])

        assert (result.status, result.attempts) == ("failed", 3)
        assert (result.error or "").startswith(f"could not connect to {host}: ")
        assert "refused" in (result.error or "").lower()
        assert waits == [0.5, 1.0]

    def test_sandbox_mode_asks_for_the_sandbox_and_takes_its_200(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        expect_send(httpserver).respond_with_data("", status=200)
        [result] = a_sender(host_of(httpserver), waits, sandbox_mode=True).send([a_message()])

        assert (result.status, result.provider) == ("sent", "sendgrid-sandbox")
        [body] = posted_bodies(httpserver)
        assert body["mail_settings"]["sandbox_mode"]["enable"] is True

    def test_200_outside_sandbox_mode_is_not_taken_for_sent(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        # SendGrid answers 200 only in sandbox mode; a 200 here may come from another server
        expect_send(httpserver).respond_with_data("<html>hello</html>", status=200)
        [result] = a_sender(host_of(httpserver), waits).send([a_message()])

        assert (result.status, result.provider) == ("maybe_sent", "sendgrid")

    def test_a_duplicate_address_raises_before_any_request(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        messages = [a_message(1), a_message(2, to_address=" CUSTOMER1@example.com")]
        with pytest.raises(ValueError, match="same address"):
            a_sender(host_of(httpserver), waits).send(messages)
        assert httpserver.log == []

    def test_a_large_message_is_sent_in_a_request_of_its_own(
        self, httpserver: HTTPServer, waits: list[float]
    ) -> None:
        large = a_message(2, text="t" * 5_000, html="<p>" + "h" * 5_000 + "</p>")
        expect_send(httpserver).respond_with_response(accepted("shared"))
        expect_send(httpserver).respond_with_response(accepted("alone"))
        results = a_sender(host_of(httpserver), waits).send([a_message(1), large, a_message(3)])

        assert {r.outbox_id: (r.status, r.provider_message_id) for r in results} == {
            a_message(1).outbox_id: ("sent", "shared"),
            a_message(3).outbox_id: ("sent", "shared"),
            large.outbox_id: ("sent", "alone"),
        }
        shared, alone = posted_bodies(httpserver)
        assert len(shared["personalizations"]) == 2
        assert alone["personalizations"][0]["custom_args"] == {"outbox_id": large.outbox_id}
        assert "substitutions" not in alone["personalizations"][0]
        assert alone["content"][1] == {"type": "text/html", "value": large.html}


def an_outbox(folder: Path) -> OutboxSender:
    return OutboxSender(
        folder, from_address=FROM_ADDRESS, from_name="Acme Utilities", reply_to=REPLY_TO
    )


def read_eml(path: Path) -> Any:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


class TestOutbox:
    pytestmark = pytest.mark.unit

    def test_an_eml_parses_back_with_both_bodies_and_the_headers(self, tmp_path: Path) -> None:
        folder = tmp_path / "outbox" / "run-1"  # created on first use
        chicago_winter = dt.timezone(-dt.timedelta(hours=6))
        message = a_message(send_at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=chicago_winter))
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        [result] = an_outbox(folder).send([message])
        after = dt.datetime.now(dt.UTC)

        path = folder / f"{message.outbox_id}.eml"
        assert (result.status, result.provider, result.attempts) == ("sent", "outbox", 1)
        assert (result.provider_message_id, result.output_path) == (path.name, str(path))
        parsed = read_eml(path)
        assert parsed.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in parsed.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        assert parsed.get_body(("plain",)).get_content() == message.text
        assert parsed.get_body(("html",)).get_content() == message.html
        assert str(parsed["From"]) == f"Acme Utilities <{FROM_ADDRESS}>"
        assert str(parsed["Reply-To"]) == REPLY_TO
        assert parsed["Subject"] == message.subject
        assert parsed["Message-ID"] == f"<{message.outbox_id}@recoup.outbox>"
        assert parsed["X-Recoup-Outbox-Id"] == message.outbox_id
        assert parsed["List-Unsubscribe"] == f"<{message.opt_out_link}>"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["X-Recoup-Send-At"] == "2026-03-02T15:30:00+00:00"
        assert before <= parsed["Date"].datetime <= after
        assert parsed["Date"].datetime.utcoffset() == dt.timedelta(0)

    def test_the_file_is_private_and_no_temporary_file_is_left(self, tmp_path: Path) -> None:
        message = a_message()
        an_outbox(tmp_path).send([message])

        path = tmp_path / f"{message.outbox_id}.eml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # iterdir lists dotfiles too
        assert "X-Recoup-Send-At" not in read_eml(path)

    def test_writing_the_same_outbox_id_twice_leaves_one_file_with_the_latest(
        self, tmp_path: Path
    ) -> None:
        outbox = an_outbox(tmp_path)
        outbox.send([a_message(subject="First")])
        [again] = outbox.send([a_message(subject="Second")])

        assert [p.name for p in tmp_path.iterdir()] == [f"{a_message().outbox_id}.eml"]
        assert read_eml(Path(again.output_path or ""))["Subject"] == "Second"

    def test_a_non_ascii_name_is_encoded_in_the_to_header(self, tmp_path: Path) -> None:
        message = a_message(to_name="José Núñez", to_address="jose@example.com")
        an_outbox(tmp_path).send([message])

        raw = (tmp_path / f"{message.outbox_id}.eml").read_bytes()
        [to_line] = [line for line in raw.splitlines() if line.startswith(b"To:")]
        assert to_line.isascii() and b"=?utf-8?" in to_line  # RFC 2047 encoded word
        [address] = read_eml(tmp_path / f"{message.outbox_id}.eml")["To"].addresses
        assert (address.display_name, address.addr_spec) == ("José Núñez", "jose@example.com")

    def test_an_outbox_id_that_is_not_a_file_name_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="cannot be a file name"):
            an_outbox(tmp_path / "outbox").send([a_message(outbox_id="../escape")])
        assert not (tmp_path / "outbox").exists()

    def test_a_header_with_a_line_break_fails_that_message_only(self, tmp_path: Path) -> None:
        injected = a_message(1, subject="Reminder\r\nBcc: everyone@example.com")
        results = an_outbox(tmp_path).send([injected, a_message(2)])

        assert [r.status for r in results] == ["failed", "sent"]
        assert [p.name for p in tmp_path.iterdir()] == [f"{a_message(2).outbox_id}.eml"]

    def test_from_settings_sends_under_the_company_name(self, tmp_path: Path) -> None:
        settings = Settings(home=tmp_path)
        outbox = OutboxSender.from_settings(settings, tmp_path / "outbox")
        [result] = outbox.send([a_message()])

        assert str(read_eml(Path(result.output_path or ""))["From"]) == (
            f"{settings.company.name} <{settings.email.from_address}>"
        )
