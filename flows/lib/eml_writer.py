"""An outbox email's bytes, faster: the same bytes as `senders.build_eml(...).as_bytes()`.

The standard library's email package spends most of an .eml on its headers: it parses every
value into a syntax tree and folds the tree back into lines. Most of recoup's headers are
plain ASCII that fits on one line (the outbox id, the date, an ASCII name and address), and
for those the package writes `Name: value` unchanged. `eml_bytes` writes such a header itself
and hands every other one (a non-ASCII name or subject, a long opt-out link, anything it is
not sure of) to the package, one header at a time, exactly as the package's own generator
does (`policy.fold_binary` of the parsed header). The body is the fixed multipart/alternative
layout the package writes for a text and an HTML part, around each part as the package
encodes it (its own `_encode_text`); building it through the package's message objects costs
more than the headers. tests/test_eml_writer.py checks that the bytes are the package's for
every kind of header and body.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import re
import sys
from email.contentmanager import _encode_text  # the package's choice of transfer encoding
from email.headerregistry import Address
from email.policy import default as default_policy
from email.utils import format_datetime

from flows.lib.messages import EmailMessage

MAX_LINE = default_policy.max_line_length  # 78: a longer header is folded by the package
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"  # a dot-atom local part: never quoted
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
_PLAIN_TEXT = re.compile(r"[!-~](?:[ -~]*[!-~])?")  # printable ASCII, no edge spaces
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")
# a link of printable ASCII with no space, angle bracket or comma: one token, never folded
PLAIN_LINK = re.compile(r"[!-~]+")
MAX_HEADER_LINE = 998  # RFC 5322 section 2.1.1: the limit a line must not pass


def eml_bytes(
    message: EmailMessage,
    *,
    from_address: str,
    from_name: str,
    reply_to: str | None,
    now: dt.datetime,
) -> bytes:
    """The message as a MIME email (multipart/alternative, text/plain then text/html, UTF-8,
    LF line ends). Raises what the email package raises for a value it refuses (ValueError
    for a line break in a header, a malformed address)."""
    lines = [
        _sender("From", from_name, from_address),
        _to(message.to_name, message.to_address),
    ]
    if reply_to:
        lines.append(_sender("Reply-To", "", reply_to))
    lines += [
        _text("Subject", message.subject),
        _line("Date", format_datetime(now.astimezone(dt.UTC))),
        _id_header("Message-ID", f"<{message.outbox_id}@recoup.outbox>", message.outbox_id),
        list_unsubscribe(message.opt_out_link),
        _ONE_CLICK,
        _id_header("X-Recoup-Outbox-Id", message.outbox_id, message.outbox_id),
    ]
    if message.send_at is not None:
        if message.send_at.tzinfo is None or message.send_at.utcoffset() is None:
            raise ValueError(
                f"send_at {message.send_at.isoformat()} has no time zone; pass an aware datetime"
            )
        lines.append(_line("X-Recoup-Send-At", message.send_at.astimezone(dt.UTC).isoformat()))
    # the package writes MIME-Version and Content-Type after the headers set before them
    return b"".join(lines) + alternative_body(message.text, message.html)


def alternative_body(text: str, html: str) -> bytes:
    """MIME-Version, the multipart/alternative header and its two parts, as the package writes
    `set_content(text)` then `add_alternative(html)`: each body in the transfer encoding the
    package picks for it (its own `_encode_text`: 7bit, 8bit, quoted-printable or base64),
    between a random boundary that appears in neither."""
    text_encoding, text_payload = _encode_text(text, "utf-8", None, default_policy)
    html_encoding, html_payload = _encode_text(html, "utf-8", None, default_policy)
    boundary = _boundary(text_payload + "\n" + html_payload)
    document = (
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/alternative;\n"
        f' boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {text_encoding}\n"
        "\n"
        f"{text_payload}\n"
        f"--{boundary}\n"
        'Content-Type: text/html; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {html_encoding}\n"
        "MIME-Version: 1.0\n"  # the package adds it to the part add_alternative makes
        "\n"
        f"{html_payload}\n"
        f"--{boundary}--\n"
    )
    # an 8bit body holds its UTF-8 bytes as surrogates: they go out as those bytes
    return document.encode("ascii", "surrogateescape")


def _boundary(text: str) -> str:
    """A boundary as the package makes one: 15 '=', 19 random digits, '=='; a counter added
    while a line of `text` is that boundary."""
    boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="
    candidate, counter = boundary, 0
    while f"--{candidate}" in text and re.search(
        "^--" + re.escape(candidate) + "(--)?$", text, flags=re.MULTILINE
    ):
        candidate, counter = f"{boundary}.{counter}", counter + 1
    return candidate


def folded(name: str, value: object) -> bytes:
    """One header as the email package writes it: parsed, then folded to lines."""
    return default_policy.fold_binary(name, default_policy.header_store_parse(name, value)[1])


def list_unsubscribe(link: str) -> bytes:
    """`List-Unsubscribe: <link>` on one line, as RFC 2369 wants it: a URL in angle brackets.

    The package folds any header longer than 78 characters, and a value with no space to fold
    at (every opt-out link with its 32-character id) it rewrites as RFC 2047 encoded words,
    which RFC 2047 does not allow in this header and mail programs do not decode there: the
    one-click unsubscribe would be lost. A plain link is written as it is (`build_eml` stores
    it raw, the same bytes); anything else goes to the package."""
    line = f"List-Unsubscribe: <{link}>"
    if plain_link(link):
        return f"{line}\n".encode("ascii")
    return folded("List-Unsubscribe", f"<{link}>")


def plain_link(link: str) -> bool:
    """Printable ASCII without `<`, `>` or `,`, short enough for one header line."""
    return (
        PLAIN_LINK.fullmatch(link) is not None
        and not any(mark in link for mark in "<>,")
        and len("List-Unsubscribe: <>") + len(link) <= MAX_HEADER_LINE
    )


def _line(name: str, value: str) -> bytes:
    """A header that fits on one line; the package for one that does not."""
    if len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\n".encode("ascii")
    return folded(name, value)


def _text(name: str, value: str) -> bytes:
    if _PLAIN_TEXT.fullmatch(value) and "=?" not in value:
        return _line(name, value)
    return folded(name, value)


def _id_header(name: str, value: str, outbox_id: str) -> bytes:
    if _PLAIN_ID.fullmatch(outbox_id):
        return _line(name, value)
    return folded(name, value)


def _to(name: str, address: str) -> bytes:
    if _PLAIN_NAME.fullmatch(name) and _PLAIN_ADDRESS.fullmatch(address):
        return _line("To", f"{name} <{address}>")
    return folded("To", Address(display_name=name, addr_spec=address))


@functools.lru_cache(maxsize=16)
def _sender(name: str, display_name: str, address: str) -> bytes:
    # the same in every message: folded once
    return folded(name, Address(display_name=display_name, addr_spec=address))


_ONE_CLICK = folded("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
