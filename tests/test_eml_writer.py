"""The fast .eml writer gives the email package's bytes, header for header, or its errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import random
import re
from collections.abc import Callable

import pytest

from flows.lib import eml_writer
from flows.lib.eml_writer import eml_bytes
from flows.lib.messages import EmailMessage
from flows.lib.senders import build_eml

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 23, 17, 5, 9, 123456, tzinfo=dt.UTC)
BOUNDARY = re.compile(rb"={15}\d+==(?:\.\d+)?")
BASE = EmailMessage(
    outbox_id="0123456789abcdef0123456789abcdef",
    to_address="vera.dubois7120@example.net",
    to_name="Vera Dubois",
    subject="Acme Utilities: your payment of $166.38 is past due",
    text="Dear Vera Dubois,\n\nYour account A00009379 has a balance past due.\n",
    html="<p>Dear Vera Dubois,</p>\n<p>Your account has a balance past due.</p>\n",
    send_at=None,
    opt_out_link="https://collections.acme-utilities.example/opt-out?ref=0123456789abcdef",
)


def package_bytes(message: EmailMessage, reply_to: str | None = None) -> bytes:
    eml = build_eml(
        message, from_address="billing@acme.example", from_name="Acme Utilities",
        reply_to=reply_to, now=NOW,
    )  # fmt: skip
    return eml.as_bytes()


def fast_bytes(message: EmailMessage, reply_to: str | None = None) -> bytes:
    return eml_bytes(
        message, from_address="billing@acme.example", from_name="Acme Utilities",
        reply_to=reply_to, now=NOW,
    )  # fmt: skip


def same_bytes(message: EmailMessage, reply_to: str | None = None) -> None:
    # the multipart boundary is random in both: everything else must match byte for byte
    expected = BOUNDARY.sub(b"BOUNDARY", package_bytes(message, reply_to))
    assert BOUNDARY.sub(b"BOUNDARY", fast_bytes(message, reply_to)) == expected


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="plain ascii"),
        pytest.param({"to_name": "José Núñez"}, id="non-ascii name"),
        pytest.param({"to_name": "Murphy Dental, P.C."}, id="name that must be quoted"),
        pytest.param({"to_name": "Ana O'Brien"}, id="apostrophe"),
        pytest.param({"to_name": 'Ana "Nan" Lopez'}, id="quotes in the name"),
        pytest.param({"to_name": ""}, id="no name"),
        pytest.param({"to_name": "Ana  Lopez "}, id="odd spaces"),
        pytest.param({"to_name": "A" * 60}, id="name that makes the line too long"),
        pytest.param({"to_address": "o'brien+bills@mail.example.co.uk"}, id="odd address"),
        pytest.param({"to_address": "x" * 70 + "@example.com"}, id="long address"),
        pytest.param({"subject": "Acme Utilities: su pago de $166.38 está vencido"}, id="es"),
        pytest.param({"subject": "Reminder =?utf-8?q?x?= encoded-looking"}, id="encoded word"),
        pytest.param({"subject": " leading and trailing "}, id="edge spaces"),
        pytest.param({"subject": "a  b\tc"}, id="tab and double space"),
        pytest.param({"subject": "Amount due: 175,50\u00a0€"}, id="no-break space"),
        pytest.param({"opt_out_link": "https://x.example/o?r=1"}, id="short opt-out link"),
        pytest.param({"outbox_id": "run-1.key_2"}, id="dotted outbox id"),
        pytest.param({"send_at": dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)}, id="send_at"),
        pytest.param(
            {"send_at": dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone(-dt.timedelta(hours=6)))},
            id="send_at in another zone",
        ),
        pytest.param(
            {"text": "Grüße\n" + "é" * 200 + "\n", "html": "<p>" + "x" * 999}, id="bodies"
        ),
    ],
)
def test_the_bytes_are_the_packages(changes: dict[str, object]) -> None:
    same_bytes(dataclasses.replace(BASE, **changes))


def test_a_reply_to_address_is_written_like_the_package(
) -> None:  # fmt: skip
    same_bytes(BASE, reply_to="collections@acme.example")


@pytest.mark.parametrize("length", [74, 75, 76, 77, 78, 79, 80])
def test_a_subject_at_the_folding_limit_is_written_like_the_package(length: int) -> None:
    subject = ("word " * 20)[: length - len("Subject: ")].strip() + "x"
    same_bytes(dataclasses.replace(BASE, subject=subject))


def test_many_drawn_messages_are_written_like_the_package() -> None:
    draw = random.Random(11)
    names = ["Vera Dubois", "José Núñez", "Wei Chen", "Kowalski Bakery", "Ana O'Brien",
             "Okafor & Sons", "Haddad Holdings", "Dubois Dental, P.C.", "Zoe", ""]  # fmt: skip
    subjects = ["Acme Utilities: a friendly reminder", "Acme Utilities: su pago está vencido",
                "Acme Utilities: your payment of $1,234.50 is past due"]  # fmt: skip
    for number in range(60):
        message = dataclasses.replace(
            BASE,
            outbox_id=f"{draw.getrandbits(128):032x}",
            to_name=draw.choice(names),
            to_address=f"user{number}@example.{draw.choice(['com', 'net', 'org'])}",
            subject=draw.choice(subjects),
            send_at=draw.choice([None, NOW + dt.timedelta(hours=draw.randint(1, 60))]),
        )
        same_bytes(message)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"subject": "Reminder\r\nBcc: everyone@example.com"}, id="header injection"),
        pytest.param({"to_name": "Eve\nBcc: x@example.com"}, id="line break in the name"),
        pytest.param({"to_address": "not an address"}, id="malformed address"),
        pytest.param({"send_at": dt.datetime(2026, 3, 2, 9, 30)}, id="naive send_at"),
    ],
)
def test_a_value_the_package_refuses_is_refused(changes: dict[str, object]) -> None:
    message = dataclasses.replace(BASE, **changes)
    with pytest.raises(ValueError) as package_error:
        package_bytes(message)
    with pytest.raises(ValueError) as fast_error:
        fast_bytes(message)
    assert type(fast_error.value) is type(package_error.value)


@pytest.mark.parametrize(
    ("text", "html"),
    [
        pytest.param("Short ASCII lines.\n", "<p>short</p>\n", id="7bit"),
        pytest.param("Grüße aus München\n", "<p>€ 12,50</p>\n", id="8bit, short lines"),
        pytest.param("é" * 120 + "\nplain\n", "<p>" + "ñ" * 90 + "</p>", id="quoted-printable"),
        pytest.param("Ελληνικά " * 30, "中文" * 80, id="base64"),
        pytest.param("", "", id="empty"),
        pytest.param("no final newline", "<p>none</p>", id="no final newline"),
        pytest.param("a\r\nb\rc\n", "<p>\r\n</p>", id="carriage returns"),
        pytest.param("x" * 78 + "\n" + "y" * 79 + "\n", "z" * 78, id="78 and 79 characters"),
        pytest.param("From the start\n.\n", "From <b>here</b>\n", id="From and a lone dot"),
        pytest.param("=41 already looks encoded =\n", "a=b\n", id="equals signs"),
        pytest.param("trailing spaces   \n\ttab\n", "<p> </p>  \n", id="whitespace"),
    ],
)
def test_the_bodies_are_the_packages(text: str, html: str) -> None:
    same_bytes(dataclasses.replace(BASE, text=text, html=html))


def test_a_boundary_that_a_body_holds_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eml_writer.random, "randrange", lambda _limit: 42)
    taken = "=" * 15 + f"{42:019d}" + "=="
    message = dataclasses.replace(BASE, text=f"quoting an email:\n--{taken}\n--{taken}.0--\n")

    written = fast_bytes(message).decode()

    assert f'boundary="{taken}.1"' in written
    assert BOUNDARY.sub(b"B", written.encode()) == BOUNDARY.sub(b"B", package_bytes(message))


REAL_LINK = "https://collections.acme-utilities.example/opt-out?ref=" + "0123456789abcdef" * 2


@pytest.mark.parametrize("writer", [package_bytes, fast_bytes], ids=["package", "fast"])
def test_the_opt_out_link_is_one_header_line_as_written(writer: Callable[..., bytes]) -> None:
    # the package on its own would fold this 110-character line into RFC 2047 encoded words,
    # which mail programs do not decode in List-Unsubscribe: one-click unsubscribe would break
    written = writer(dataclasses.replace(BASE, opt_out_link=REAL_LINK))

    headers = written.split(b"\n\n", 1)[0].decode("ascii")
    assert f"\nList-Unsubscribe: <{REAL_LINK}>\nList-Unsubscribe-Post:" in headers
    assert "=?" not in headers
    parsed = email.message_from_bytes(written, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == f"<{REAL_LINK}>"


@pytest.mark.parametrize(
    "link",
    [
        pytest.param(REAL_LINK, id="plain"),
        pytest.param("https://x.example/o?r=a b", id="a space"),
        pytest.param("https://exämple.example/o?r=1", id="non-ascii"),
        pytest.param("https://x.example/o?r=<1>", id="angle brackets"),
        pytest.param("https://x.example/o?r=" + "1" * 980, id="past a line's 998 characters"),
    ],
)
def test_an_opt_out_link_of_any_kind_is_written_like_build_eml(link: str) -> None:
    same_bytes(dataclasses.replace(BASE, opt_out_link=link))


def test_a_line_break_in_the_opt_out_link_is_refused_by_both() -> None:
    message = dataclasses.replace(BASE, opt_out_link="https://x.example/o\nBcc: x@example.com")
    with pytest.raises(ValueError):
        package_bytes(message)
    with pytest.raises(ValueError):
        fast_bytes(message)
