"""Contacting customers on a warehouse dbt built: plan, re-check, then email (through the real
`sendgrid` client against a loopback SendGrid server), letters and the phone queue.

One billing batch, built for two run dates a week apart; each test works on its own copy of
the warehouse file, so tests never see each other's contacts."""

from __future__ import annotations

import csv
import datetime as dt
import email
import json
import shutil
import threading
import time
import zoneinfo
from email import policy
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from flows.lib import templates
from flows.lib.config import Settings, load_settings
from flows.lib.dbt_build import build_warehouse
from flows.lib.emailing import TemplatesNotReady, send_planned_emails
from flows.lib.loader import load_batch
from flows.lib.planner import build_plan, commit_plan
from flows.lib.printing import print_planned_letters
from flows.lib.recheck import cancel_outdated, recover_interrupted
from flows.lib.senders import OutboxSender, SendGridSender
from flows.lib.warehouse import open_warehouse
from flows.lib.work_queue import queue_planned_work
from tests.builders import row, write_batch
from tests.contact_fixtures import contacted

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D0 = dt.date(2026, 3, 31)  # a Tuesday
D1 = D0 + dt.timedelta(days=7)
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
INSIDE_WINDOW = dt.datetime(2026, 3, 31, 12, 0, tzinfo=CHICAGO)  # 10:00 in Los Angeles
EARLY = dt.datetime(2026, 3, 31, 6, 0, tzinfo=CHICAGO)  # before 08:00 everywhere in the US
HOSTILE = '<script>alert(1)</script> "Pepe" Núñez'


def day(offset: int) -> str:
    return (D0 + dt.timedelta(days=offset)).isoformat()


def customer(customer_id: str, **values: str) -> dict:
    return row(
        "customers",
        customer_id=customer_id,
        email=f"{customer_id.lower()}@example.com",
        phone="+15125550100",
        **values,
    )


def account_with_invoice(account_id: str, customer_id: str, due_offset: int) -> dict:
    return {
        "account": row("accounts", account_id=account_id, customer_id=customer_id),
        "invoice": row(
            "invoices",
            invoice_id=f"{account_id}-I1",
            account_id=account_id,
            invoice_number=f"N-{account_id}",
            issue_date="2026-01-01",
            due_date=day(due_offset),
            amount="120.00",
        ),
    }


# account → (customer, days until due on D0), each there for one path
ACCOUNTS = {
    "REMIND": ("C-ANN", -3),  # reminder_1 email, English, Chicago
    "SPANISH": ("C-ES", -3),  # reminder_1 email, Spanish, Los Angeles, a hostile name
    "COURTESY": ("C-SOON", 2),  # courtesy reminder before the due date
    "NOMAIL": ("C-NOMAIL", -3),  # no email address: suppressed
    "DNE": ("C-DNE", -3),  # do_not_email: suppressed
    "BANKRUPT": ("C-BANK", -3),  # bankruptcy: held, nothing at all
    "LETTER": ("C-LETTER", -40),  # final notice letter on D0, phone call on D1
    "PAYS": ("C-PAYS", -3),  # pays after the plan is made
}
CUSTOMERS = [
    customer("C-ANN", full_name="Ann Lee", timezone="America/Chicago"),
    customer(
        "C-ES",
        full_name=HOSTILE,
        language="es-MX",
        timezone="America/Los_Angeles",
        city="Los Angeles",
        state="CA",
        postal_code="90012",
    ),
    customer("C-SOON", full_name="Sam Soon", timezone="America/Chicago"),
    {**customer("C-NOMAIL", full_name="No Mail"), "email": ""},
    customer("C-DNE", full_name="Dee Nee", timezone="America/Chicago"),
    customer("C-BANK", full_name="Bo Bank", timezone="America/Chicago"),
    customer("C-LETTER", full_name="Lee Letter", timezone="America/Chicago"),
    customer("C-PAYS", full_name="Pat Pays", timezone="America/Chicago"),
]
FLAGS = [
    row("account_flags", customer_id="C-DNE", flag="do_not_email", start_date=day(-90)),
    row("account_flags", customer_id="C-BANK", flag="bankruptcy", start_date=day(-90)),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[dt.date, Path]:
    """The scenario's warehouse built for D0, and a copy built on for D1."""
    root = tmp_path_factory.mktemp("contacting")
    pairs = [account_with_invoice(a, c, due) for a, (c, due) in ACCOUNTS.items()]
    batch = write_batch(
        root / "batch",
        customers=CUSTOMERS,
        accounts=[pair["account"] for pair in pairs],
        invoices=[pair["invoice"] for pair in pairs],
        account_flags=FLAGS,
    )
    first = root / "d0" / "recoup.duckdb"
    connection = open_warehouse(first)
    assert load_batch(connection, batch).rows_quarantined == 0
    connection.close()
    build_warehouse(first, root / "state", D0)
    second = root / "d1" / "recoup.duckdb"
    second.parent.mkdir()
    shutil.copy(first, second)
    build_warehouse(second, root / "state", D1)
    return {D0: first, D1: second}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def settings_for(home: Path, server: HTTPServer | None = None, **env: str) -> Settings:
    variables = {"RECOUP_HOME": str(home), **env}
    if server is not None:
        variables |= {"SENDGRID_API_KEY": "SG.test-key", "SENDGRID_API_HOST": server.url_for("")}
    return load_settings(variables)


@pytest.fixture
def warehouse_d0(built, tmp_path: Path):
    path = tmp_path / "d0.duckdb"
    shutil.copy(built[D0], path)
    connection = open_warehouse(path)
    yield connection
    connection.close()


def plan(connection: duckdb.DuckDBPyConnection, settings: Settings, as_of: dt.date = D0) -> None:
    commit_plan(connection, build_plan(connection, settings.contact, as_of, "run-1"))
    cancel_outdated(connection, as_of=as_of, today=as_of, catch_up_days=7, run_id="run-1")


def ledger(connection: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str, str | None]]:
    rows = connection.execute(
        "select account_id, channel, status, reason from ops.action_ledger"
    ).fetchall()
    return {account: (channel, status, reason) for account, channel, status, reason in rows}


def accept_all(server: HTTPServer, times: int = 1) -> None:
    for number in range(times):
        server.expect_ordered_request("/v3/mail/send", method="POST").respond_with_response(
            Response(status=202, headers={"X-Message-Id": f"msg-{number}"})
        )


def sent_bodies(server: HTTPServer) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def send(connection, settings, sender, now=INSIDE_WINDOW, as_of=D0):
    return send_planned_emails(
        connection, settings, sender, as_of=as_of, run_id="run-1", now=now.astimezone(dt.UTC)
    )


# --- who gets what ---------------------------------------------------------------------------


def test_the_plan_on_the_first_day(warehouse_d0, home) -> None:
    plan(warehouse_d0, settings_for(home))
    assert ledger(warehouse_d0) == {
        "REMIND": ("email", "planned", None),
        "SPANISH": ("email", "planned", None),
        "COURTESY": ("email", "planned", None),
        "NOMAIL": ("email", "suppressed", "no_email_address"),
        "DNE": ("email", "suppressed", "do_not_email"),
        "LETTER": ("letter", "planned", None),
        "PAYS": ("email", "planned", None),
    }  # BANKRUPT: held, so never planned


def test_emails_go_once_through_sendgrid_and_a_rerun_sends_nothing(
    warehouse_d0, home, httpserver: HTTPServer
) -> None:
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    accept_all(httpserver)
    outcome = send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    assert outcome.total("sent") == 4
    [body] = sent_bodies(httpserver)  # one request: four different addresses
    assert sorted(p["to"][0]["email"] for p in body["personalizations"]) == [
        "c-ann@example.com", "c-es@example.com", "c-pays@example.com", "c-soon@example.com",
    ]  # fmt: skip
    keys = {p["custom_args"]["outbox_id"] for p in body["personalizations"]}
    stored = warehouse_d0.execute(
        "select action_key, provider_message_id from ops.action_ledger where status = 'sent'"
    ).fetchall()
    assert {key for key, _ in stored} == keys
    assert {message_id for _, message_id in stored} == {"msg-0"}
    # the same day again: planned again, re-checked, sent again? No: nothing is planned
    plan(warehouse_d0, settings)
    again = send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    assert again.counts == {}
    assert len(httpserver.log) == 1


def test_the_spanish_email_is_in_spanish_and_escapes_the_name(warehouse_d0, home, tmp_path) -> None:
    settings = settings_for(home)
    plan(warehouse_d0, settings)
    outbox = tmp_path / "outbox"
    send(warehouse_d0, settings, OutboxSender.from_settings(settings, outbox))
    [key] = warehouse_d0.execute(
        "select action_key from ops.action_ledger where account_id = 'SPANISH'"
    ).fetchall()[0]
    message = email.message_from_bytes((outbox / f"{key}.eml").read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert HOSTILE in text  # plain text is not HTML: the name stays as it is
    assert "vencido" in message["Subject"] and "Según nuestros registros" in text
    assert "120,00" not in text and "$120.00" in text  # es_US formats dollars the US way


def test_a_send_before_the_window_is_scheduled_inside_it_in_each_customers_zone(
    warehouse_d0, home, httpserver: HTTPServer
) -> None:
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    accept_all(httpserver)
    outcome = send(warehouse_d0, settings, SendGridSender.from_settings(settings), now=EARLY)
    assert outcome.scheduled == 4
    [body] = sent_bodies(httpserver)
    by_address = {p["to"][0]["email"]: p["send_at"] for p in body["personalizations"]}
    nine_chicago = dt.datetime(2026, 3, 31, 9, tzinfo=CHICAGO)  # 08:00 plus the margin
    nine_la = dt.datetime(2026, 3, 31, 9, tzinfo=zoneinfo.ZoneInfo("America/Los_Angeles"))
    assert by_address["c-ann@example.com"] == int(nine_chicago.timestamp())
    assert by_address["c-es@example.com"] == int(nine_la.timestamp())
    stored = warehouse_d0.execute(
        "select send_at from ops.action_ledger where account_id = 'SPANISH'"
    ).fetchall()
    assert stored == [(nine_la.astimezone(dt.UTC),)]


def test_inside_the_window_nothing_is_scheduled(warehouse_d0, home, httpserver) -> None:
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    accept_all(httpserver)
    send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    [body] = sent_bodies(httpserver)
    assert all("send_at" not in p for p in body["personalizations"])


# --- what the newest facts change ------------------------------------------------------------


def test_a_payment_arriving_after_planning_cancels_the_send(
    warehouse_d0, home, tmp_path, httpserver: HTTPServer
) -> None:
    settings = settings_for(home, httpserver)
    commit_plan(warehouse_d0, build_plan(warehouse_d0, settings.contact, D0, "run-1"))
    late = row("payments", payment_id="LATE", account_id="PAYS", amount="120.00",
               received_date=day(0))  # fmt: skip
    load_batch(warehouse_d0, write_batch(tmp_path / "late", payments=[late]))
    cancel_outdated(warehouse_d0, as_of=D0, today=D0, catch_up_days=7, run_id="run-1")
    accept_all(httpserver)
    send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    assert ledger(warehouse_d0)["PAYS"] == ("email", "cancelled", "paid_since_planning")
    [body] = sent_bodies(httpserver)
    assert "c-pays@example.com" not in {p["to"][0]["email"] for p in body["personalizations"]}


def test_a_bankruptcy_filed_after_planning_stops_every_channel(
    warehouse_d0, home, tmp_path
) -> None:
    settings = settings_for(home)
    commit_plan(warehouse_d0, build_plan(warehouse_d0, settings.contact, D0, "run-1"))
    flag = row("account_flags", customer_id="C-LETTER", flag="bankruptcy", start_date=day(0))
    load_batch(warehouse_d0, write_batch(tmp_path / "flag", account_flags=[flag]))
    cancel_outdated(warehouse_d0, as_of=D0, today=D0, catch_up_days=7, run_id="run-1")
    outcome = print_planned_letters(
        warehouse_d0, settings, as_of=D0, run_id="run-1", now=INSIDE_WINDOW
    )
    assert outcome.counts == {}
    assert ledger(warehouse_d0)["LETTER"] == ("letter", "cancelled", "hold: bankruptcy")
    assert not (settings.path("out") / "letters").exists()


# --- provider answers and crashes ------------------------------------------------------------


def test_a_malformed_400_is_recorded_as_failed_and_a_later_run_retries_it(
    warehouse_d0, home, httpserver: HTTPServer
) -> None:
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    httpserver.expect_request("/v3/mail/send").respond_with_data(
        "<html>Bad Request</html>", status=400
    )
    outcome = send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    assert outcome.total("failed") == 4
    assert len(httpserver.log) == 7  # halved until each message stood alone: 1 + 2 + 4
    reasons = {reason for _, status, reason in ledger(warehouse_d0).values() if status == "failed"}
    assert reasons == {"HTTP 400 with an unreadable body: <html>Bad Request</html>"}
    # the next run plans the failed keys again and sends them
    httpserver.clear()
    accept_all(httpserver)
    plan(warehouse_d0, settings)
    assert send(warehouse_d0, settings, SendGridSender.from_settings(settings)).total("sent") == 4
    attempts = warehouse_d0.execute(
        "select distinct attempts, times_planned from ops.action_ledger where status = 'sent'"
    ).fetchall()
    assert attempts == [(4, 2)]  # three refused requests each, then the one that went


def test_a_timeout_is_maybe_sent_and_never_sent_again(warehouse_d0, home, httpserver) -> None:
    settings = settings_for(home, httpserver, RECOUP_EMAIL__TIMEOUT_SECONDS="0.3")
    plan(warehouse_d0, settings)

    calls, answered = [], threading.Event()

    def slow(request):
        calls.append(request.path)
        time.sleep(0.8)  # longer than the client waits
        answered.set()
        return Response(status=202)

    httpserver.expect_ordered_request("/v3/mail/send").respond_with_handler(slow)
    send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    emails = {status for channel, status, _ in ledger(warehouse_d0).values() if channel == "email"}
    assert emails == {"maybe_sent", "suppressed"}
    plan(warehouse_d0, settings)  # maybe_sent is not planned again
    assert send(warehouse_d0, settings, SendGridSender.from_settings(settings)).counts == {}
    assert answered.wait(5)  # let the slow answer finish before the server is reused
    assert calls == ["/v3/mail/send"]


class CrashAfterTheCall:
    """The real sender, then the process dies before the ledger hears the answer."""

    def __init__(self, sender: SendGridSender) -> None:
        self.sender, self.provider = sender, sender.provider

    def send(self, messages):
        self.sender.send(messages)
        raise KeyboardInterrupt("killed between the API call and the ledger update")


def test_a_crash_between_the_call_and_the_ledger_never_sends_twice(
    warehouse_d0, home, httpserver: HTTPServer
) -> None:
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    accept_all(httpserver)
    with pytest.raises(KeyboardInterrupt):
        send(warehouse_d0, settings, CrashAfterTheCall(SendGridSender.from_settings(settings)))
    assert {status for _, status, _ in ledger(warehouse_d0).values()} >= {"sending"}
    # the next run: settle what was left sending, plan, send
    assert recover_interrupted(warehouse_d0, "run-2")["maybe_sent"] == 4
    plan(warehouse_d0, settings)
    assert send(warehouse_d0, settings, SendGridSender.from_settings(settings)).counts == {}
    assert len(httpserver.log) == 1  # SendGrid saw the four messages once


def test_a_template_that_does_not_render_stops_before_anything_is_sent(
    warehouse_d0, home, tmp_path, httpserver: HTTPServer, monkeypatch
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(templates.TEMPLATES_DIR, broken)
    subject = broken / "reminder_1" / "en" / "subject.txt.j2"
    subject.write_text("{{ no_such_variable }} " + subject.read_text(encoding="utf-8"), "utf-8")
    monkeypatch.setattr(templates, "environment", lambda: templates.build_environment(broken))
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    with pytest.raises(TemplatesNotReady, match=r"reminder_1 \(en\).*no_such_variable"):
        send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    assert httpserver.log == []
    assert {status for _, status, _ in ledger(warehouse_d0).values()} <= {"planned", "suppressed"}


# --- letters and the phone queue ---------------------------------------------------------------


def test_a_letter_is_a_pdf_in_the_print_manifest(warehouse_d0, home) -> None:
    settings = settings_for(home)
    plan(warehouse_d0, settings)
    outcome = print_planned_letters(
        warehouse_d0, settings, as_of=D0, run_id="run-1", now=INSIDE_WINDOW
    )
    assert outcome.total("sent") == 1
    manifest = Path(outcome.files[0])
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("letter_id,account_id,template,language,recipient_name")
    assert ',LETTER,final_notice,en,Lee Letter,1 Main St,"Austin, TX 78701"' in lines[1]
    pdf = manifest.parent / lines[1].split(",")[-1]
    assert pdf.read_bytes().startswith(b"%PDF") and oct(pdf.stat().st_mode & 0o777) == "0o600"
    from pypdf import PdfReader

    text = PdfReader(pdf).pages[0].extract_text()
    assert "Lee Letter" in text and "$120.00" in text
    # a rerun prints nothing more
    plan(warehouse_d0, settings)
    again = print_planned_letters(warehouse_d0, settings, as_of=D0, run_id="r2", now=INSIDE_WINDOW)
    assert again.counts == {}


def test_a_week_later_the_letter_account_is_queued_for_a_call(built, home, tmp_path) -> None:
    path = tmp_path / "d1.duckdb"
    shutil.copy(built[D1], path)
    connection = open_warehouse(path)
    settings = settings_for(home, RECOUP_WORK_QUEUE__PHONE_OWNERS="ana,ben")
    # the final notice went out on D0 (a contact the D1 plan must count)
    contacted(connection, account_id="LETTER", customer_id="C-LETTER", stage="final_notice",
              day=D0)  # fmt: skip
    plan(connection, settings, as_of=D1)
    outcome = queue_planned_work(connection, settings, as_of=D1, run_id="run-2", now=INSIDE_WINDOW)
    assert outcome.total("sent") == 1
    lines = Path(outcome.files[0]).read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    item = dict(zip(header, next(csv.reader([lines[1]])), strict=True))
    assert header[:4] == ["item_id", "queue", "owner", "due_date"]
    assert item["queue"] == "phone" and item["owner"] in {"ana", "ben"}
    assert item["due_date"] == "2026-04-09"  # two business days after Tuesday 2026-04-07
    assert item["stage"] == "manager_review"
    assert item["phone"] == "+15125550100"  # a phone number is not defused like a formula
    assert item["call_window"] == "09:00-20:00 America/Chicago"
    stored = connection.execute(
        "select owner, due_date, status from ops.action_ledger where channel = 'phone'"
    ).fetchall()
    assert stored == [(item["owner"], dt.date(2026, 4, 9), "sent")]
    connection.close()


# --- third-party mode ---------------------------------------------------------------------------


def eml_text(outbox: Path, connection: duckdb.DuckDBPyConnection, account: str) -> str:
    [(key,)] = connection.execute(
        "select action_key from ops.action_ledger "
        "where account_id = ? and channel = 'email' and output_path is not null",
        [account],
    ).fetchall()
    message = email.message_from_bytes((outbox / f"{key}.eml").read_bytes(), policy=policy.default)
    return message.get_body(("plain",)).get_content()


def test_a_debt_collectors_first_email_carries_the_validation_notice(
    warehouse_d0, home, tmp_path
) -> None:
    settings = settings_for(
        home, RECOUP_COLLECTOR_TYPE="third_party", RECOUP_COMPANY__CREDITOR_NAME="Acme Clinic"
    )
    # REMIND heard from us before (a courtesy reminder); SPANISH never did
    contacted(warehouse_d0, account_id="REMIND", customer_id="C-ANN", stage="courtesy_reminder",
              day=D0 - dt.timedelta(days=6))  # fmt: skip
    plan(warehouse_d0, settings)
    outbox = tmp_path / "outbox"
    send(warehouse_d0, settings, OutboxSender.from_settings(settings, outbox))
    first = eml_text(outbox, warehouse_d0, "COURTESY")
    later = eml_text(outbox, warehouse_d0, "REMIND")
    disclosure = "This communication is from a debt collector."
    assert disclosure in first and disclosure in later
    assert "Acme Clinic" in first
    # provided Tuesday 2026-03-31: receipt assumed 5 business days later (Tuesday 2026-04-07),
    # the validation period ends 30 days after that
    assert "May 7, 2026" in first
    assert "$120.00" in first and "January 1, 2026" in first  # owed on the last statement date
    assert "Acme Clinic" not in later and "May 7, 2026" not in later  # not the initial contact


def test_a_first_party_email_never_says_it_is_from_a_debt_collector(
    warehouse_d0, home, tmp_path
) -> None:
    settings = settings_for(home)
    plan(warehouse_d0, settings)
    outbox = tmp_path / "outbox"
    send(warehouse_d0, settings, OutboxSender.from_settings(settings, outbox))
    assert "debt collector" not in eml_text(outbox, warehouse_d0, "COURTESY")


def test_the_send_window_is_judged_when_each_request_leaves(warehouse_d0, home, httpserver) -> None:
    """Two requests: the first leaves at 19:50 in Chicago, the second (after rate-limit waits,
    say) at 20:05, past the window less its margin: it is scheduled for the next morning."""
    settings = settings_for(home, httpserver)
    plan(warehouse_d0, settings)
    accept_all(httpserver, times=2)
    times = iter(
        [
            dt.datetime(2026, 3, 31, 19, 50, tzinfo=CHICAGO).astimezone(dt.UTC),
            dt.datetime(2026, 3, 31, 20, 5, tzinfo=CHICAGO).astimezone(dt.UTC),
        ]
    )
    send_planned_emails(
        warehouse_d0, settings, SendGridSender.from_settings(settings), as_of=D0,
        run_id="run-1", now=EARLY.astimezone(dt.UTC), request_size=2, clock=lambda: next(times),
    )  # fmt: skip
    first, second = sent_bodies(httpserver)

    def scheduled(body: dict) -> dict[str, int | None]:
        return {p["to"][0]["email"]: p.get("send_at") for p in body["personalizations"]}

    tomorrow_nine = int(dt.datetime(2026, 4, 1, 9, tzinfo=CHICAGO).timestamp())
    assert set(scheduled(first).values()) == {None}  # 19:50 in Chicago: still inside
    assert {address: at for address, at in scheduled(second).items()} == {
        address: (None if address == "c-es@example.com" else tomorrow_nine)  # 18:05 in LA
        for address in scheduled(second)
    }
    assert tomorrow_nine in scheduled(second).values()


def test_a_letter_that_cannot_be_made_fails_alone(warehouse_d0, home, monkeypatch) -> None:
    from flows.lib import printing

    def broken(context, **_):
        raise ValueError(f"no template for {context.template}")

    monkeypatch.setattr(printing, "letter_pdf", broken)
    settings = settings_for(home)
    plan(warehouse_d0, settings)
    outcome = print_planned_letters(warehouse_d0, settings, as_of=D0, run_id="r", now=INSIDE_WINDOW)
    assert outcome.counts == {
        ("failed", "letter error: ValueError: no template for final_notice"): 1
    }
    assert ledger(warehouse_d0)["LETTER"][1] == "failed"
    assert not (settings.path("out") / "letters").exists()  # no manifest of nothing


def test_sandbox_mode_sends_nothing_and_leaves_the_contacts_to_a_real_run(
    warehouse_d0, home, httpserver
) -> None:
    settings = settings_for(home, httpserver, RECOUP_EMAIL__SANDBOX_MODE="true")
    plan(warehouse_d0, settings)
    httpserver.expect_ordered_request("/v3/mail/send").respond_with_data("", status=200)
    send(warehouse_d0, settings, SendGridSender.from_settings(settings))
    [body] = sent_bodies(httpserver)
    assert body["mail_settings"]["sandbox_mode"]["enable"] is True
    emails = {status for channel, status, _ in ledger(warehouse_d0).values() if channel == "email"}
    assert emails == {"cancelled", "suppressed"}
    # a real run plans them again (the letter is still planned from the first plan)
    assert build_plan(warehouse_d0, settings.contact, D0, "run-2").planned() == {"email": 4}


def test_contacts_are_refused_on_marts_built_for_another_date(built, home, tmp_path) -> None:
    """The D1 warehouse holds D1's build: planned D0 contacts would carry D1's open items."""
    from flows.lib.contact_data import MartsNotForDate

    path = tmp_path / "d1.duckdb"
    shutil.copy(built[D1], path)
    connection = open_warehouse(path)
    settings = settings_for(home)
    contacted(connection, account_id="REMIND", customer_id="C-ANN", stage="reminder_1", day=D0,
              status="planned")  # fmt: skip
    with pytest.raises(MartsNotForDate, match="the marts hold 2026-04-07, not 2026-03-31"):
        send(connection, settings, OutboxSender.from_settings(settings, tmp_path / "outbox"))
    assert not (tmp_path / "outbox").exists()
    connection.close()
