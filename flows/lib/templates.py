"""Contact templates: the one Jinja environment, the typed context a template gets, and the
renderer for emails. Letters are Typst files that `flows.lib.letters` compiles to PDF from the
same context.

The templates live in `contact_templates/` (see its README): a layout per channel and format
holds the company identity, the itemization, the pay link and the opt-out line once; each
`<template>/<language>/` folder holds the words of one contact. A template formats what the
context says (money and dates through Babel, in the context's locale) and never decides: who is
contacted, with what amount and by which date is settled before a context is built.

Only HTML is autoescaped (names ending in `.html.j2`); subjects and plain-text bodies are not,
so an `&` in a company name stays `&`. A variable the context does not have fails the render
(`StrictUndefined`), before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import jinja2
from babel import Locale, localedata
from babel.dates import format_date
from babel.numbers import format_currency

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "contact_templates"

Language = Literal["en", "es"]
LANGUAGES: tuple[Language, ...] = ("en", "es")
EMAIL_TEMPLATES = ("courtesy_reminder", "reminder_1", "reminder_2")
# emails that service an agreement rather than dun (flows/lib/plan_servicing.py)
SERVICING_EMAIL_TEMPLATES = ("installment_reminder",)
LETTER_TEMPLATES = ("final_notice", "pre_placement_notice")
EMAIL_FILES = ("subject.txt.j2", "body.txt.j2", "body.html.j2")
LETTER_FILES = ("letter.typ",)
# The files every template shares; a language's phrases are one file per language (Jinja for
# the emails, Typst for the letters).
SHARED_FILES = (
    "_layouts/email.txt.j2",
    "_layouts/email.html.j2",
    "_layouts/letter.typ",
    "_partials/validation_notice.txt.j2",
    "_partials/validation_notice.html.j2",
)
PHRASES_FILE = "_partials/{language}/phrases.j2"
LETTER_PHRASES_FILE = "_partials/{language}/letter_phrases.typ"


@dataclass(frozen=True)
class CompanyIdentity:
    name: str
    # e.g. ("100 Commerce Street", "Suite 400", "Chicago, IL 60601", "US")
    address_lines: tuple[str, ...]
    phone: str
    email: str
    website: str


@dataclass(frozen=True)
class OpenItem:
    reference: str  # the invoice number, or the fee/interest adjustment id
    kind: Literal["invoice", "fee", "interest"]
    issue_date: dt.date | None
    due_date: dt.date
    original_amount: Decimal
    open_amount: Decimal
    disputed_amount: Decimal  # part of open_amount under dispute (not asked for)
    days_past_due: int


@dataclass(frozen=True)
class ValidationNotice:  # third-party mode, initial communication (Reg F 1006.34)
    creditor_name: str  # the creditor on the itemization date
    itemization_date: dt.date
    amount_on_itemization_date: Decimal
    interest_since: Decimal
    fees_since: Decimal
    payments_since: Decimal
    credits_since: Decimal
    current_amount: Decimal
    validation_end_date: dt.date


@dataclass(frozen=True)
class PlanOption:  # an installment plan on offer (ops.offers, flows/lib/offers.py)
    length: int  # monthly installments
    installment_amount: Decimal  # each installment but the last
    last_installment_amount: Decimal  # takes the remainder: the installments sum to the total
    total: Decimal  # the collectible balance the plan pays off


@dataclass(frozen=True)
class SettlementOption:  # a settlement on offer
    amount: Decimal
    percent: Decimal  # of the collectible balance, trailing zeros dropped (90, 87.5)
    expires_on: dt.date  # pay by this date
    requires_approval: bool  # forgives more than approval_above: "may be available; call us"


@dataclass(frozen=True)
class OfferTerms:  # the offers in force for the account on the contact's as-of date
    balance: Decimal  # the collectible balance the offers were made on
    expires_on: dt.date  # the last day the offers stand
    plans: tuple[PlanOption, ...]  # shortest first; may be empty
    settlement: SettlementOption | None


@dataclass(frozen=True)
class InstallmentDue:  # the installment a reminder is about (flows/lib/plan_servicing.py)
    plan_id: str
    plan_kind: str  # installment_plan, promise_to_pay or settlement
    number: int  # installment `number` of `installments`
    installments: int
    due_date: dt.date
    amount: Decimal  # the installment as agreed
    amount_due: Decimal  # to pay by due_date: what is unpaid of it and of the ones before it
    remaining_after: Decimal  # what stays to pay under the plan once amount_due is paid
    grace_end_date: dt.date  # the last day a payment keeps the plan


@dataclass(frozen=True)
class ContactContext:
    template: str  # e.g. "reminder_1"
    language: Literal["en", "es"]
    locale: str  # Babel locale for money and dates, e.g. "en_US", "es_US", "en_GB"
    as_of: dt.date
    company: CompanyIdentity
    customer_name: str
    mailing_address: tuple[str, ...]  # the customer's address block, for letters
    account_id: str
    currency: str  # ISO 4217
    total_open: Decimal
    disputed_amount: Decimal
    collectible_amount: Decimal  # total_open minus disputed
    amount_due: Decimal  # what this notice asks for: the collectible past-due part (or, before
    #                      anything is past due, what falls due next)
    not_yet_due_amount: Decimal  # collectible items listed for information, not yet due
    items: tuple[OpenItem, ...]  # oldest due first
    oldest_due_date: dt.date | None
    max_days_past_due: int
    pay_by_date: dt.date  # the date the notice asks payment by
    next_step_date: dt.date | None  # when the next escalation step may happen, if any
    pay_link: str
    opt_out_link: str  # email only: where to stop emails to this address
    third_party: bool  # collector_type == third_party: debt-collector disclosure
    validation: ValidationNotice | None
    servicemember: bool  # SCRA: never mention legal action or credit consequences beyond fact
    offer: OfferTerms | None = None  # plans and settlement on offer (stages that use offers)
    installment: InstallmentDue | None = None  # installment reminders: the installment due


@dataclass(frozen=True)
class RenderedEmail:
    subject: str  # one line, stripped
    text: str
    html: str


@jinja2.pass_context
def money_filter(context: jinja2.runtime.Context, amount: Decimal) -> str:
    """`{{ amount|money }}`: the amount in the context's currency and locale ($1,234.50)."""
    if not isinstance(amount, Decimal | int):
        raise TypeError(f"money: {amount!r} is a {type(amount).__name__}; pass a Decimal")
    if isinstance(amount, Decimal):
        return _formatted_money(str(amount), context["currency"], context["locale"])
    return format_currency(amount, context["currency"], locale=babel_locale_data(context["locale"]))


@functools.lru_cache(maxsize=1 << 16)
def _formatted_money(amount: str, currency: str, locale: str) -> str:
    # An email shows each amount two or three times (subject, text, HTML): Babel formats it
    # once. The key is the Decimal as written (Decimal(str(d)) is d, digits and sign).
    return format_currency(Decimal(amount), currency, locale=babel_locale_data(locale))


@jinja2.pass_context
def date_filter(context: jinja2.runtime.Context, value: dt.date, length: str = "long") -> str:
    """`{{ day|date }}`: the long date in the context's locale (March 5, 2026);
    `{{ day|date("medium") }}` the short one for tables (Mar 5, 2026)."""
    # Babel formats None as today: a missing date must fail instead of printing a wrong one.
    if not isinstance(value, dt.date):
        raise TypeError(f"date: {value!r} is not a date; this template needs one")
    return _formatted_date(value, length, context["locale"])


@functools.lru_cache(maxsize=1 << 14)
def _formatted_date(value: dt.date, length: str, locale: str) -> str:
    # a run's emails show a few dates over and over (the as-of date, the pay-by date)
    return format_date(value, format=length, locale=babel_locale_data(locale))


@functools.cache
def babel_locale_data(name: str) -> Locale:
    """The Babel locale of a name ("es_US"), parsed once: Babel parses a locale name on every
    call it is given one, a third of the cost of formatting an amount."""
    return Locale.parse(name)


def build_environment(root: Path) -> jinja2.Environment:
    """A Jinja environment on the templates under `root` (the app uses `environment()`)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        # a template is read once per process: checking every file's mtime on each message was
        # a twentieth of the email step (a run renders with the templates it started with)
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False
        ),
    )
    env.filters["money"] = money_filter
    env.filters["date"] = date_filter
    return env


@functools.cache
def environment() -> jinja2.Environment:
    """The one Jinja environment of the app, on the repository's `contact_templates/`."""
    return build_environment(TEMPLATES_DIR)


def template_language(language: str | None, default: str) -> Language:
    """The template language for a BCP 47 tag: "es-MX" -> "es"; one without templates -> default."""
    fallback = _known_language(default)
    if not language:
        return fallback
    primary = language.strip().replace("_", "-").split("-", 1)[0].lower()
    for known in LANGUAGES:
        if primary == known:
            return known
    return fallback


def babel_locale(language: str, country: str | None) -> str:
    """The Babel locale for a language and country ("es", "US" -> "es_US"); the bare language
    when Babel has no data for the pair ("en", "MX" -> "en")."""
    language = language.strip().lower()
    if country:
        pair = f"{language}_{country.strip().upper()}"
        if localedata.exists(pair):
            return pair
    return language


def expected_files() -> list[str]:
    """Every file the renderers may load, relative to `contact_templates/`."""
    expected = list(SHARED_FILES)
    expected += [PHRASES_FILE.format(language=language) for language in LANGUAGES]
    expected += [LETTER_PHRASES_FILE.format(language=language) for language in LANGUAGES]
    for template in EMAIL_TEMPLATES + SERVICING_EMAIL_TEMPLATES:
        for language in LANGUAGES:
            expected += [f"{template}/{language}/{name}" for name in EMAIL_FILES]
    for template in LETTER_TEMPLATES:
        for language in LANGUAGES:
            expected += [f"{template}/{language}/{name}" for name in LETTER_FILES]
    return expected


def missing_templates(root: Path = TEMPLATES_DIR) -> list[str]:
    """The expected template files that do not exist under `root`: a run refuses to send while
    this is not empty."""
    return [name for name in expected_files() if not (root / name).is_file()]


def render_email(
    context: ContactContext, *, env: jinja2.Environment | None = None
) -> RenderedEmail:
    """Subject, plain text and HTML of one email."""
    _check(context, EMAIL_TEMPLATES + SERVICING_EMAIL_TEMPLATES, "an email")
    env = env or environment()
    folder = f"{context.template}/{context.language}"
    variables = _variables(context)
    subject = env.get_template(f"{folder}/subject.txt.j2").render(variables)
    # one line; split() would also turn the no-break space in "175,50 €" into a space
    subject = " ".join(line.strip() for line in subject.splitlines() if line.strip())
    if not subject:
        raise ValueError(f"contact_templates/{folder}/subject.txt.j2 rendered an empty subject")
    text = env.get_template(f"{folder}/body.txt.j2").render(variables)
    html = env.get_template(f"{folder}/body.html.j2").render(variables)
    return RenderedEmail(subject=subject, text=_one_final_newline(text), html=html)


def _check(context: ContactContext, templates: tuple[str, ...], what: str) -> None:
    if context.template not in templates:
        raise ValueError(
            f"{context.template!r} is not {what} template; use one of {', '.join(templates)}"
        )
    if context.language not in LANGUAGES:
        raise ValueError(
            f"{context.language!r} has no templates; pick one with template_language(), "
            f"which returns one of {', '.join(LANGUAGES)}"
        )


def _variables(context: ContactContext) -> dict[str, Any]:
    # Top-level names in the templates: {{ customer_name }}, {{ company.name }}, ...
    return {field.name: getattr(context, field.name) for field in fields(context)}


def _one_final_newline(text: str) -> str:
    return text.strip("\n") + "\n"


def _known_language(language: str) -> Language:
    for known in LANGUAGES:
        if language == known:
            return known
    raise ValueError(f"default language {language!r} has no templates; use one of {LANGUAGES}")
