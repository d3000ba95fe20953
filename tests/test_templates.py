"""Contact templates: golden renders of every template and language, escaping, the parts every
email must carry, the third-party and servicemember variants, languages and locales, letters
as PDF.

Golden files live in tests/fixtures/golden/: emails as rendered; letters as their data
(`.letter.json`) and the text of their PDF (`.letter.txt`).
`pytest tests/test_templates.py --update-golden` rewrites them from the current templates (then
read the diff before committing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import jinja2
import pytest
from markupsafe import escape
from pypdf import PdfReader

from flows.lib import letters
from flows.lib.contact_data import amounts_asked
from flows.lib.letters import LetterRenderError, letter_data, letter_pdf
from flows.lib.templates import (
    EMAIL_TEMPLATES,
    LANGUAGES,
    LETTER_TEMPLATES,
    TEMPLATES_DIR,
    CompanyIdentity,
    ContactContext,
    OpenItem,
    ValidationNotice,
    babel_locale,
    build_environment,
    environment,
    missing_templates,
    render_email,
    template_language,
)

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
AS_OF = dt.date(2026, 3, 16)
DISCLOSURE = {
    "en": "This communication is from a debt collector.",
    "es": "Esta comunicación proviene de un cobrador de deudas.",
}
# Words that only a sentence about agency placement uses: absent for servicemembers.
PLACEMENT_WORDS = {"en": "collection agency", "es": "agencia de cobranza"}
HOSTILE_NAMES = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
# Typst markup and code in a name: a letter must print them as they are.
TYPST_NAMES = ["#set page(width: 1cm) *bold* $x$", 'Ann ]) #panic("boom") // @ref <label>']
CREATED = dt.datetime(2026, 3, 16, 6, 0, tzinfo=dt.UTC)

ACME = CompanyIdentity(
    name="Acme Water & Power",  # the "&" must stay "&" in subjects and text
    address_lines=("100 Commerce Street", "Suite 400", "Chicago, IL 60601", "US"),
    phone="+1 312 555 0100",
    email="billing@acme-utilities.example",
    website="https://acme-utilities.example",
)
AGENCY = CompanyIdentity(
    name="Lakeshore Recovery Services",
    address_lines=("77 West Wacker Drive", "Chicago, IL 60601", "US"),
    phone="+1 312 555 0199",
    email="disputes@lakeshore-recovery.example",
    website="https://lakeshore-recovery.example",
)

# What each template's context looks like on the day it goes out (the default ladder in
# dbt_project/seeds/escalation_policy.csv): days past due of the oldest item, days the notice
# gives to pay, days until the next step may happen (None: the template names no next step).
STAGES: dict[str, tuple[int, int | None, int | None]] = {
    "courtesy_reminder": (-3, None, None),  # pay by the due date itself
    "reminder_1": (2, 10, None),
    "reminder_2": (16, 10, 14),  # the final notice at 30 days
    "final_notice": (31, 14, 14),  # manager review at 45 days
    "pre_placement_notice": (61, 14, 29),  # agency placement at 90 days
}


def an_item(reference: str, **overrides: object) -> OpenItem:
    values: dict[str, object] = {
        "reference": reference,
        "kind": "invoice",
        "issue_date": AS_OF - dt.timedelta(days=60),
        "due_date": AS_OF - dt.timedelta(days=30),
        "original_amount": Decimal("180.00"),
        "open_amount": Decimal("120.00"),
        "disputed_amount": Decimal("0.00"),
        "days_past_due": 30,
    }
    values.update(overrides)
    return OpenItem(**values)  # type: ignore[arg-type]


def a_context(
    template: str = "reminder_1", language: str = "en", **overrides: object
) -> ContactContext:
    """The fixed context of the golden files for one template and language."""
    days_past_due, pay_within, next_step_in = STAGES[template]
    oldest_due = AS_OF - dt.timedelta(days=days_past_due)
    items = [
        # partly paid: 60.00 of 180.00 came in
        an_item("INV-2026-0142", due_date=oldest_due, days_past_due=days_past_due),
        # 40.00 of it disputed: listed, never asked for
        an_item(
            "INV-2026-0143",
            due_date=oldest_due,
            original_amount=Decimal("95.50"),
            open_amount=Decimal("95.50"),
            disputed_amount=Decimal("40.00"),
            days_past_due=days_past_due,
        ),
    ]
    if days_past_due >= 15:  # a late fee, charged ten days after the due date
        items.append(
            an_item(
                "FEE-2026-0031",
                kind="fee",
                issue_date=None,
                due_date=oldest_due + dt.timedelta(days=10),
                original_amount=Decimal("10.00"),
                open_amount=Decimal("10.00"),
                days_past_due=days_past_due - 10,
            )
        )
    total_open = sum((item.open_amount for item in items), Decimal("0.00"))
    disputed = sum((item.disputed_amount for item in items), Decimal("0.00"))
    values: dict[str, object] = {
        "template": template,
        "language": language,
        "locale": babel_locale(language, "US"),
        "as_of": AS_OF,
        "company": ACME,
        "customer_name": {"en": "Zoë Whitfield", "es": "María José Núñez"}[language],
        "mailing_address": ("2200 Lakeview Avenue", "Apt 3B", "Austin, TX 78701"),
        "account_id": "ACC-10027",
        "currency": "USD",
        "total_open": total_open,
        "disputed_amount": disputed,
        "collectible_amount": total_open - disputed,
        "amount_due": amounts_asked(tuple(items), total_open - disputed)[0],
        "not_yet_due_amount": amounts_asked(tuple(items), total_open - disputed)[1],
        "items": tuple(items),
        "oldest_due_date": oldest_due,
        "max_days_past_due": days_past_due,
        "pay_by_date": oldest_due if pay_within is None else AS_OF + dt.timedelta(days=pay_within),
        "next_step_date": None if next_step_in is None else AS_OF + dt.timedelta(days=next_step_in),
        "pay_link": "https://pay.acme-utilities.example/accounts/ACC-10027",
        "opt_out_link": "https://acme-utilities.example/email-preferences?ref=a1b2c3&src=email",
        "third_party": False,
        "validation": None,
        "servicemember": False,
    }
    values.update(overrides)
    return ContactContext(**values)  # type: ignore[arg-type]


def a_third_party_context(template: str = "reminder_1", language: str = "en") -> ContactContext:
    """An agency's first email about the debt: disclosure and validation notice."""
    context = a_context(template, language, company=AGENCY, third_party=True)
    fees = sum((item.open_amount for item in context.items if item.kind == "fee"), Decimal(0))
    return dataclasses.replace(
        context,
        validation=ValidationNotice(
            creditor_name="Acme Water & Power",
            itemization_date=dt.date(2026, 2, 28),  # the last statement date
            # since then: the late fee charged, a payment of 25.00
            amount_on_itemization_date=context.total_open - fees + Decimal("25.00"),
            interest_since=Decimal("0.00"),
            fees_since=fees,
            payments_since=Decimal("25.00"),
            credits_since=Decimal("0.00"),
            current_amount=context.total_open,
            validation_end_date=dt.date(2026, 4, 22),  # 5 business days + 30 days
        ),
    )


def check_golden(name: str, actual: str, update_golden: bool) -> None:
    path = GOLDEN / name
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        return
    assert path.exists(), f"{path} is missing; run pytest --update-golden and review it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{name} changed; if that is intended, run pytest --update-golden and review the diff"
    )


def email_golden(context: ContactContext) -> tuple[str, str]:
    rendered = render_email(context)
    return f"Subject: {rendered.subject}\n\n{rendered.text}", rendered.html


def pdf_pages(pdf: bytes) -> list[str]:
    """The text of each page, as pypdf extracts it, without trailing spaces."""
    pages = (page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return ["\n".join(line.rstrip() for line in text.splitlines()) for text in pages]


def letter_golden(context: ContactContext) -> tuple[str, str]:
    """The letter's data as pretty JSON, and the text of its PDF page by page."""
    data = json.dumps(letter_data(context), indent=2, ensure_ascii=False) + "\n"
    pages = pdf_pages(letter_pdf(context, title="Letter", created=CREATED))
    text = "".join(f"--- page {n}/{len(pages)} ---\n{page}\n" for n, page in enumerate(pages, 1))
    return data, text


def letter_text(context: ContactContext) -> str:
    """The letter's PDF text on one line: a sentence that wraps still matches (Typst breaks
    lines at spaces and after hyphens only)."""
    text = "\n".join(pdf_pages(letter_pdf(context, title="Letter", created=CREATED)))
    return " ".join(re.sub(r"-\n", "-", text).split())


def rendered_bodies(context: ContactContext) -> list[str]:
    """The text of the letter's PDF, or the email's text and HTML."""
    if context.template in LETTER_TEMPLATES:
        return [letter_text(context)]
    rendered = render_email(context)
    return [rendered.text, rendered.html]


def every_email() -> list:
    return [
        pytest.param(template, language, id=f"{template}-{language}")
        for template in EMAIL_TEMPLATES
        for language in LANGUAGES
    ]


def every_letter() -> list:
    return [
        pytest.param(template, language, id=f"{template}-{language}")
        for template in LETTER_TEMPLATES
        for language in LANGUAGES
    ]


# --- golden files ------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "language"), every_email())
def test_email_matches_its_golden_files(template: str, language: str, update_golden: bool) -> None:
    text, html = email_golden(a_context(template, language))
    check_golden(f"{template}__{language}.txt", text, update_golden)
    check_golden(f"{template}__{language}.html", html, update_golden)


@pytest.mark.parametrize(("template", "language"), every_letter())
def test_letter_matches_its_golden_files(template: str, language: str, update_golden: bool) -> None:
    data, text = letter_golden(a_context(template, language))
    check_golden(f"{template}__{language}.letter.json", data, update_golden)
    check_golden(f"{template}__{language}.letter.txt", text, update_golden)


@pytest.mark.parametrize(
    ("template", "language", "suffixes"),
    [
        pytest.param("reminder_1", "en", ("txt", "html"), id="reminder_1-en email"),
        pytest.param("reminder_1", "es", ("txt",), id="reminder_1-es email"),
        pytest.param(
            "final_notice", "en", ("letter.json", "letter.txt"), id="final_notice-en letter"
        ),
    ],
)
def test_third_party_renders_match_their_golden_files(
    template: str, language: str, suffixes: tuple[str, ...], update_golden: bool
) -> None:
    context = a_third_party_context(template, language)
    renders = {}
    if template in LETTER_TEMPLATES:
        renders["letter.json"], renders["letter.txt"] = letter_golden(context)
    if template in EMAIL_TEMPLATES:
        renders["txt"], renders["html"] = email_golden(context)
    for suffix in suffixes:
        check_golden(
            f"{template}__{language}__third_party.{suffix}", renders[suffix], update_golden
        )


# --- escaping ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["script tag", "attribute break-out"])
@pytest.mark.parametrize(("template", "language"), every_email())
def test_customer_name_is_escaped_in_html_and_verbatim_in_text(
    template: str, language: str, name: str
) -> None:
    rendered = render_email(a_context(template, language, customer_name=name))
    assert name not in rendered.html
    assert "<script" not in rendered.html and "<img" not in rendered.html
    assert str(escape(name)) in rendered.html
    assert name in rendered.text


@pytest.mark.parametrize(
    "name",
    HOSTILE_NAMES + TYPST_NAMES,
    ids=["script tag", "attribute break-out", "typst markup", "typst code"],
)
@pytest.mark.parametrize(("template", "language"), every_letter())
def test_customer_name_prints_literally_in_letters(template: str, language: str, name: str) -> None:
    pages = pdf_pages(
        letter_pdf(a_context(template, language, customer_name=name), title="x", created=CREATED)
    )
    assert len(pages) == 1  # "#set page(...)" changed nothing
    lines = pages[0].splitlines()
    assert name in lines  # the address block, exactly as given
    assert any(name in line for line in lines if line != name)  # and the greeting


@pytest.mark.parametrize(("template", "language"), every_email())
def test_ampersand_stays_plain_in_subject_and_text(template: str, language: str) -> None:
    rendered = render_email(a_context(template, language))
    assert "Acme Water & Power" in rendered.subject
    assert "Acme Water & Power" in rendered.text
    assert "&amp;" not in rendered.subject + rendered.text
    assert "Acme Water &amp; Power" in rendered.html


def test_only_html_templates_are_autoescaped(tmp_path: Path) -> None:
    for name in ("body.txt.j2", "subject.txt.j2", "body.html.j2"):
        (tmp_path / name).write_text("{{ value }}", encoding="utf-8")
    env = build_environment(tmp_path)
    assert env.get_template("body.txt.j2").render(value="A & <B>") == "A & <B>"
    assert env.get_template("subject.txt.j2").render(value="A & <B>") == "A & <B>"
    assert env.get_template("body.html.j2").render(value="A & <B>") == "A &amp; &lt;B&gt;"
    assert environment().from_string("{{ value }}").render(value="A & B") == "A & B"


# --- strictness --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["Dear {{ customer_nmae }},", "{{ company.adress }}", "{% for item in itmes %}{% endfor %}"],
    ids=["unknown variable", "unknown attribute", "unknown loop source"],
)
def test_an_unknown_variable_fails_the_render(source: str) -> None:
    variables = {
        field.name: getattr(a_context(), field.name) for field in dataclasses.fields(ContactContext)
    }
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string(source).render(variables)


def test_a_missing_date_fails_instead_of_printing_today() -> None:
    with pytest.raises(TypeError, match="not a date"):
        render_email(a_context("reminder_1", oldest_due_date=None))


def test_money_refuses_floats() -> None:
    template = environment().from_string("{{ amount|money }}")
    with pytest.raises(TypeError, match="Decimal"):
        template.render(amount=12.5, currency="USD", locale="en_US")


def test_missing_templates_is_empty_for_the_repository() -> None:
    assert missing_templates() == []


def test_missing_templates_names_a_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "contact_templates"
    shutil.copytree(TEMPLATES_DIR, root)
    (root / "reminder_2" / "es" / "body.html.j2").unlink()
    (root / "_partials" / "es" / "phrases.j2").unlink()
    assert missing_templates(root) == ["_partials/es/phrases.j2", "reminder_2/es/body.html.j2"]


def test_missing_templates_names_a_missing_letter_file(tmp_path: Path) -> None:
    root = tmp_path / "contact_templates"
    shutil.copytree(TEMPLATES_DIR, root)
    (root / "final_notice" / "es" / "letter.typ").unlink()
    (root / "_partials" / "en" / "letter_phrases.typ").unlink()
    assert missing_templates(root) == [
        "_partials/en/letter_phrases.typ",
        "final_notice/es/letter.typ",
    ]


def test_renderers_refuse_a_template_of_the_other_channel() -> None:
    with pytest.raises(ValueError, match="not an email template"):
        render_email(a_context("final_notice"))
    with pytest.raises(ValueError, match="not a letter template"):
        letter_pdf(a_context("reminder_1"), title="x", created=CREATED)
    with pytest.raises(ValueError, match="not a letter template"):
        letter_data(a_context("reminder_1"))


# --- what every contact carries ----------------------------------------------------------


@pytest.mark.parametrize("third_party", [False, True], ids=["first party", "third party"])
@pytest.mark.parametrize(("template", "language"), every_email())
def test_every_email_has_pay_link_opt_out_identity_and_amount(
    template: str, language: str, third_party: bool
) -> None:
    if third_party:
        context = a_third_party_context(template, language)
    else:
        context = a_context(template, language)
    rendered = render_email(context)
    assert context.opt_out_link in rendered.text
    assert f'href="{escape(context.opt_out_link)}"' in rendered.html
    assert context.pay_link in rendered.text
    assert f'href="{escape(context.pay_link)}"' in rendered.html
    company = context.company
    details = (*company.address_lines, company.phone, company.email, company.website)
    for body, name in ((rendered.text, company.name), (rendered.html, escape(company.name))):
        assert name in body
        for detail in details:
            assert detail in body
        assert f"${context.collectible_amount:,.2f}" in body  # asked for
        assert "$40.00" in body  # the disputed part, stated separately


@pytest.mark.parametrize(("template", "language"), every_email() + every_letter())
def test_debt_collector_disclosure_only_in_third_party_mode(template: str, language: str) -> None:
    for body in rendered_bodies(a_third_party_context(template, language)):
        assert DISCLOSURE[language] in body
        assert "www.cfpb.gov/debt-collection" in body  # the validation notice
    for body in rendered_bodies(a_context(template, language)):
        assert DISCLOSURE[language] not in body
        assert "cfpb.gov" not in body


@pytest.mark.parametrize(("template", "language"), every_email() + every_letter())
def test_servicemember_contacts_state_amount_and_payment_only(template: str, language: str) -> None:
    for body in rendered_bodies(a_context(template, language, servicemember=True)):
        assert PLACEMENT_WORDS[language] not in body
        assert "debt collector" not in body and "cobrador de deudas" not in body
        assert "final notice" not in body and "último aviso" not in body
        assert "https://pay.acme-utilities.example/accounts/ACC-10027" in body


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("template", "next_step_words"),
    [
        ("reminder_2", {"en": "final notice", "es": "último aviso"}),
        ("final_notice", PLACEMENT_WORDS),
        ("pre_placement_notice", PLACEMENT_WORDS),
    ],
)
def test_other_customers_are_told_what_may_happen_next(
    template: str, next_step_words: dict[str, str], language: str
) -> None:
    for body in rendered_bodies(a_context(template, language)):
        assert next_step_words[language] in body


def test_pre_placement_notice_offers_the_email_opt_out_before_placement() -> None:
    text = letter_text(a_context("pre_placement_notice"))
    assert "We may transfer this debt to a debt collector" in text
    assert "within 35 days of the date of this letter" in text
    assert "on or after April 14, 2026" in text


# --- languages and locales ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "default", "expected"),
    [
        ("es", "en", "es"),
        ("es-MX", "en", "es"),
        ("ES_us", "en", "es"),
        ("en-GB", "es", "en"),
        ("fr", "en", "en"),
        ("de", "es", "es"),
        (None, "en", "en"),
        ("", "es", "es"),
    ],
)
def test_template_language(language: str | None, default: str, expected: str) -> None:
    assert template_language(language, default) == expected


def test_template_language_refuses_a_default_without_templates() -> None:
    with pytest.raises(ValueError, match="no templates"):
        template_language("es", "fr")


@pytest.mark.parametrize(
    ("language", "country", "expected"),
    [
        ("es", "US", "es_US"),
        ("en", "GB", "en_GB"),
        ("es", "mx", "es_MX"),
        ("en", "MX", "en"),
        ("es", None, "es"),
    ],
)
def test_babel_locale(language: str, country: str | None, expected: str) -> None:
    assert babel_locale(language, country) == expected


@pytest.mark.parametrize(
    ("locale", "currency", "expected"),
    [
        ("en_US", "USD", "$1,234.50"),
        ("es_US", "USD", "$1,234.50"),
        ("en_GB", "GBP", "£1,234.50"),
        ("es_ES", "EUR", "1.234,50\xa0€"),
    ],
)
def test_money_follows_the_locale(locale: str, currency: str, expected: str) -> None:
    template = environment().from_string("{{ amount|money }}")
    assert template.render(amount=Decimal("1234.50"), currency=currency, locale=locale) == expected


def test_a_spanish_email_in_euros_formats_money_and_dates_in_spanish() -> None:
    context = a_context("reminder_1", "es", locale="es_ES", currency="EUR")
    rendered = render_email(context)
    assert "175,50\xa0€" in rendered.subject
    assert "26 de marzo de 2026" in rendered.text  # pay by
    assert "14 de marzo de 2026" in rendered.html  # the oldest due date


# --- letters as PDF ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Łukasz Żółć", "Zoë Brontë-Ørsted"])
def test_letter_pdf_prints_any_customer_name_and_the_amount(name: str) -> None:
    context = a_context("final_notice", customer_name=name)
    pdf = letter_pdf(context, title="Final notice", created=CREATED)
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert name in text
    assert "$185.50" in text
    assert reader.metadata is not None
    assert reader.metadata.title == "Final notice"
    assert reader.metadata.creation_date == CREATED
    assert reader.pages[0].mediabox.width == 612 and reader.pages[0].mediabox.height == 792


def test_letter_pdf_embeds_only_the_shipped_fonts() -> None:
    reader = PdfReader(
        io.BytesIO(
            letter_pdf(a_third_party_context("final_notice", "es"), title="x", created=CREATED)
        )
    )
    fonts = {
        str(font.get_object()["/BaseFont"]).split("+")[-1]
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert fonts == {"DejaVuSans", "DejaVuSans-Bold"}  # subset prefix ("ABCDEF+") dropped


def test_letter_data_is_plain_json() -> None:
    data = letter_data(a_third_party_context("final_notice", "es"))
    assert json.loads(json.dumps(data)) == data  # no Decimal, no date, no tuple
    assert data["third_party"] is True and data["servicemember"] is False
    assert data["amount_due"] == "$185.50"
    assert data["validation"]["validation_end_date"] == "22 de abril de 2026"
    assert data["items"][0]["due_date"] == "13 feb 2026"
    assert data["items"][0]["disputed_amount"] is None  # nothing disputed: nothing shown


def test_a_letter_lists_what_is_not_yet_due_apart_from_what_it_asks_for() -> None:
    text = letter_text(a_context("final_notice", not_yet_due_amount=Decimal("50.00")))
    assert "Not yet due (for your information) $50.00" in text
    assert "Amount to pay $185.50" in text


def test_letter_data_refuses_a_missing_date() -> None:
    with pytest.raises(TypeError, match="oldest_due_date is None, not a date"):
        letter_data(a_context("final_notice", oldest_due_date=None))


def test_letter_pdf_is_deterministic() -> None:
    context = a_third_party_context("final_notice", "es")
    first = letter_pdf(context, title="Último aviso", created=CREATED)
    assert letter_pdf(context, title="Último aviso", created=CREATED) == first
    later = CREATED + dt.timedelta(days=1)
    assert letter_pdf(context, title="Último aviso", created=later) != first


def test_a_letter_does_not_depend_on_the_letters_rendered_before_it() -> None:
    # The compilers are cached per template file; each letter brings its own sys.inputs.
    ann, bob = (a_context("final_notice", customer_name=name) for name in ("Ann Lee", "Bob Roe"))
    letters._compiler.cache_clear()
    ann_first = letter_pdf(ann, title="x", created=CREATED)
    letters._compiler.cache_clear()
    letter_pdf(bob, title="x", created=CREATED)
    assert letter_pdf(ann, title="x", created=CREATED) == ann_first


def test_letters_can_be_rendered_from_several_threads() -> None:
    contexts = [a_context("final_notice", customer_name=f"Customer {n}") for n in range(12)]
    alone = [letter_pdf(context, title="x", created=CREATED) for context in contexts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda c: letter_pdf(c, title="x", created=CREATED), contexts))
    assert together == alone


def test_the_validation_notice_has_a_page_of_its_own() -> None:
    first, second = pdf_pages(
        letter_pdf(a_third_party_context("final_notice"), title="x", created=CREATED)
    )
    assert "Validation notice" not in first and "Validation notice" in second
    assert "Lakeshore Recovery Services · Account: ACC-10027 · Zoë Whitfield" in second
    assert first.rstrip().endswith("1/2") and second.rstrip().endswith("2/2")


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        pytest.param(
            ("#data.pay_by_date", "#data.pay_by_dat"),
            'does not contain key "pay_by_dat"',
            id="unknown field",
        ),
        pytest.param(
            ("heading: [Final notice]", "heading: [Final notice"), "unclosed", id="syntax error"
        ),
        pytest.param(
            ("heading: [Final notice]", 'heading: text(font: "Arial")[Final notice]'),
            "unknown font family: arial",
            id="a warning: a font that is not shipped",
        ),
    ],
)
def test_a_broken_template_names_itself_and_the_typst_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: tuple[str, str], expected: str
) -> None:
    root = tmp_path / "contact_templates"
    shutil.copytree(TEMPLATES_DIR, root)
    letter = root / "final_notice" / "en" / "letter.typ"
    letter.write_text(letter.read_text(encoding="utf-8").replace(*broken), encoding="utf-8")
    monkeypatch.setattr(letters, "TEMPLATES_DIR", root)
    with pytest.raises(LetterRenderError) as error:
        letter_pdf(a_context("final_notice"), title="x", created=CREATED)
    assert "contact_templates/final_notice/en/letter.typ did not compile" in str(error.value)
    assert expected in str(error.value)


def test_a_missing_letter_template_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "contact_templates"
    shutil.copytree(TEMPLATES_DIR, root)
    (root / "final_notice" / "es" / "letter.typ").unlink()
    monkeypatch.setattr(letters, "TEMPLATES_DIR", root)
    with pytest.raises(LetterRenderError, match=r"final_notice/es/letter\.typ does not exist"):
        letter_pdf(a_context("final_notice", "es"), title="x", created=CREATED)


def test_letter_pdf_wants_an_aware_creation_date() -> None:
    with pytest.raises(ValueError, match="time zone"):
        letter_pdf(a_context("final_notice"), title="x", created=dt.datetime(2026, 3, 16))
