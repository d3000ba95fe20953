"""Letters as PDF: a letter's data, typeset by Typst from `contact_templates/`.

`letter_data(context)` is everything a letter shows, formatted in Python (money and dates
through Babel in the context's locale, as the email filters do) into plain JSON: strings,
booleans, lists, and null for a part the letter leaves out. `letter_pdf` hands that JSON to
`<template>/<language>/letter.typ` as `sys.inputs.data`; the template reads it with
`json(...)` and puts each string on the page as text, never as markup, so a customer name
needs no escaping and cannot change the letter.

US Letter, DejaVu Sans from `contact_templates/_fonts/` only (no system or bundled fonts, so a
letter looks the same on every machine and any European name prints). The output is
deterministic: the creation date comes from the caller and Typst derives the document id from
the content, so the same letter rendered twice gives the same bytes (and the same file in the
outbox).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import typst
from babel.dates import format_date
from babel.numbers import format_currency

from flows.lib.offers import offer_letter_data
from flows.lib.templates import LANGUAGES, LETTER_TEMPLATES, TEMPLATES_DIR, ContactContext

FONTS_DIR = TEMPLATES_DIR / "_fonts"
LETTER_FILE = "{template}/{language}/letter.typ"

# A typst.Compiler serves one compilation at a time (a second thread gets "Already borrowed").
_COMPILE_LOCK = threading.Lock()


class LetterRenderError(RuntimeError):
    """A letter template failed to compile: a mistake in the template, or data it does not
    expect. The message names the template file and gives Typst's error."""


def letter_data(context: ContactContext) -> dict[str, Any]:
    """What the letter of `context` shows, formatted for its locale, as JSON-ready values.
    An amount shown only when it is not zero (the disputed part, what is not yet due) is None
    when it is zero; so is `next_step_date` when no next step is set, and `validation`
    outside third-party mode."""
    _check_letter(context)

    def money(amount: Decimal) -> str:
        return _money(amount, context)

    def long_date(day: dt.date | None, field: str) -> str:
        return _date(day, context, field, "long")

    company = context.company
    validation = context.validation
    data = {
        "company": {
            "name": company.name,
            "address_lines": list(company.address_lines),
            "phone": company.phone,
            "email": company.email,
            "website": company.website,
        },
        "as_of": long_date(context.as_of, "as_of"),
        "customer_name": context.customer_name,
        "mailing_address": list(context.mailing_address),
        "account_id": context.account_id,
        "third_party": context.third_party,
        "servicemember": context.servicemember,
        "amount_due": money(context.amount_due),
        "total_open": money(context.total_open),
        "disputed_amount": money(context.disputed_amount) if context.disputed_amount else None,
        "not_yet_due_amount": (
            money(context.not_yet_due_amount) if context.not_yet_due_amount else None
        ),
        "oldest_due_date": long_date(context.oldest_due_date, "oldest_due_date"),
        "pay_by_date": long_date(context.pay_by_date, "pay_by_date"),
        "next_step_date": (
            None
            if context.next_step_date is None
            else long_date(context.next_step_date, "next_step_date")
        ),
        "items": [
            {
                "reference": item.reference,
                "kind": item.kind,
                "due_date": _date(item.due_date, context, "items.due_date", "medium"),
                "open_amount": money(item.open_amount),
                "disputed_amount": money(item.disputed_amount) if item.disputed_amount else None,
            }
            for item in context.items
        ],
        "pay_link": context.pay_link,
        "validation": None
        if validation is None
        else {
            "creditor_name": validation.creditor_name,
            "itemization_date": long_date(
                validation.itemization_date, "validation.itemization_date"
            ),
            "amount_on_itemization_date": money(validation.amount_on_itemization_date),
            "interest_since": money(validation.interest_since),
            "fees_since": money(validation.fees_since),
            "payments_since": money(validation.payments_since),
            "credits_since": money(validation.credits_since),
            "current_amount": money(validation.current_amount),
            "validation_end_date": long_date(
                validation.validation_end_date, "validation.validation_end_date"
            ),
        },
    }
    if context.offer is not None:  # only then: a letter without offers has no `offer` key
        data["offer"] = offer_letter_data(context.offer, money, long_date)
    return data


def letter_pdf(context: ContactContext, *, title: str, created: dt.datetime) -> bytes:
    """The letter's PDF; `title` goes into its metadata and `created` (timezone-aware) becomes
    its creation date. Raises LetterRenderError when the template is missing or does not
    compile cleanly (an error or a warning), ValueError or TypeError for a context that is not
    a letter's."""
    if created.tzinfo is None:
        raise ValueError(
            f"letter_pdf: created={created.isoformat()} has no time zone; pass an aware "
            "datetime such as dt.datetime.now(dt.UTC), so the PDF is the same on every machine"
        )
    data = letter_data(context)
    name = LETTER_FILE.format(template=context.template, language=context.language)
    if not (TEMPLATES_DIR / name).is_file():
        raise LetterRenderError(
            f"contact_templates/{name} does not exist; missing_templates() lists the files a "
            "run needs"
        )
    inputs = {"data": json.dumps(data, ensure_ascii=False), "title": title}
    with _COMPILE_LOCK:
        try:
            pdf, warnings = _compiler(TEMPLATES_DIR, name).compile_with_warnings(
                format="pdf", sys_inputs=inputs, timestamp=created.astimezone(dt.UTC)
            )
        except typst.TypstError as error:
            raise LetterRenderError(_explain(name, error)) from error
    if warnings:  # our templates compile cleanly; a warning means the letter looks wrong
        raise LetterRenderError(_explain(name, *warnings))
    if not isinstance(pdf, bytes):
        raise LetterRenderError(f"contact_templates/{name}: Typst returned no PDF")
    return pdf


def _check_letter(context: ContactContext) -> None:
    if context.template not in LETTER_TEMPLATES:
        raise ValueError(
            f"{context.template!r} is not a letter template; "
            f"use one of {', '.join(LETTER_TEMPLATES)}"
        )
    if context.language not in LANGUAGES:
        raise ValueError(
            f"{context.language!r} has no templates; pick one with template_language(), "
            f"which returns one of {', '.join(LANGUAGES)}"
        )


def _money(amount: Decimal, context: ContactContext) -> str:
    if not isinstance(amount, Decimal | int):
        raise TypeError(f"money: {amount!r} is a {type(amount).__name__}; pass a Decimal")
    return format_currency(amount, context.currency, locale=context.locale)


def _date(day: dt.date | None, context: ContactContext, field: str, length: str) -> str:
    # Babel formats None as today: a missing date must fail instead of printing a wrong one.
    if not isinstance(day, dt.date):
        raise TypeError(
            f"{context.template} letter for account {context.account_id}: {field} is {day!r}, "
            "not a date; this letter needs one"
        )
    return format_date(day, format=length, locale=context.locale)


@functools.cache
def _fonts() -> typst.Fonts:
    # Only the shipped fonts: neither the machine's nor the ones bundled in Typst.
    return typst.Fonts(
        include_system_fonts=False, include_embedded_fonts=False, font_paths=[str(FONTS_DIR)]
    )


@functools.cache
def _compiler(root: Path, name: str) -> typst.Compiler:
    # One compiler per template file, reused: it keeps the fonts and the parsed files (and
    # rereads a file that changed), and each compile gets its own sys_inputs: the same bytes as
    # a fresh compiler's, whatever it compiled before.
    return typst.Compiler(root / name, root=root, font_paths=_fonts())


def _explain(name: str, *problems: typst.TypstError | typst.TypstWarning) -> str:
    lines = [f"contact_templates/{name} did not compile:"]
    for problem in problems:
        message = getattr(problem, "message", "") or str(problem)
        lines.append(f"  {message}")
        diagnostic = getattr(problem, "diagnostic", "")
        if diagnostic and diagnostic != message:
            lines += [f"    {line}" for line in diagnostic.splitlines()]
        lines += [f"  hint: {hint}" for hint in getattr(problem, "hints", None) or ()]
    lines.append(
        "Fix the template (or what letter_data() gives it), then run "
        "pytest tests/test_templates.py and look at a rendered letter."
    )
    return "\n".join(lines)
