"""Plan servicing (issue 13 part 3): one reminder email before each installment of an active
plan, promise or settlement, never twice; broken plans (with their grace period) release the
hold and the ladder resumes from the stage the account had reached.

The planner and re-check rules run on small hand-made marts (many dates, no dbt); the dbt
rules (grace edges, broken_on, the ladder resuming) run on one scenario built twice, six days
apart, which also plans, re-checks and sends a real reminder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import shutil
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal
from email import policy
from pathlib import Path

import duckdb
import pytest
import yaml
from markupsafe import escape

from flows.lib.config import ContactSettings, load_settings
from flows.lib.dbt_build import DBT_PROJECT, build_warehouse
from flows.lib.emailing import send_planned_emails
from flows.lib.ledger import action_key, transition
from flows.lib.loader import load_batch
from flows.lib.plan_servicing import (
    REMINDER_STAGE,
    InstallmentsNotBuilt,
    plan_installment_reminders,
    with_installment,
)
from flows.lib.planner import ALL_ACCOUNTS, ContactScope, build_plan, commit_plan
from flows.lib.recheck import cancel_outdated
from flows.lib.senders import OutboxSender
from flows.lib.templates import (
    CompanyIdentity,
    ContactContext,
    InstallmentDue,
    OpenItem,
    render_email,
)
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch
from tests.contact_fixtures import (
    AS_OF,
    POLICY,
    _table,
    a_customer,
    a_stage,
    make_marts,
    manual_holds,
)

pytestmark = pytest.mark.integration
GOLDEN = Path(__file__).parent / "fixtures" / "golden"
COLLECTIONS_YAML = DBT_PROJECT / "models" / "marts" / "collections" / "_collections__models.yml"
DUE = AS_OF + dt.timedelta(days=3)  # the installment's due date
CONTACT = ContactSettings()
DAYS = 3  # negotiation.installment_reminder_days


def on(offset: int) -> dt.date:
    """A day relative to the due date."""
    return DUE + dt.timedelta(days=offset)


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("empty") / "recoup.duckdb"
    connection = open_warehouse(path)
    manual_holds(connection)
    connection.close()
    return path


@pytest.fixture
def warehouse(empty_warehouse: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An empty warehouse of the module's own (a copy: opening one costs more)."""
    path = tmp_path / "recoup.duckdb"
    shutil.copy(empty_warehouse, path)
    connection = duckdb.connect(str(path))
    yield connection
    connection.close()


# --- hand-made marts ---------------------------------------------------------------------

INSTALLMENT_DEFAULTS: dict[str, object] = {
    "plan_id": "PL1",
    "installment_no": 2,
    "account_id": "A1",
    "as_of_date": AS_OF,
    "plan_kind": "installment_plan",
    "plan_source": "billing",
    "plan_status": "active",
    "installments": 3,
    "due_date": DUE,
    "grace_end_date": DUE + dt.timedelta(days=5),
    "installment_amount": Decimal("40.00"),
    "cumulative_due": Decimal("80.00"),
    "plan_paid_amount": Decimal("40.00"),
    "unpaid_amount": Decimal("40.00"),
    "remaining_after_amount": Decimal("40.00"),
    "is_paid": False,
}
INSTALLMENT_TYPES = {
    "installment_no": "INTEGER",
    "as_of_date": "DATE",
    "installments": "BIGINT",
    "due_date": "DATE",
    "grace_end_date": "DATE",
    "installment_amount": "DECIMAL(18,2)",
    "cumulative_due": "DECIMAL(18,2)",
    "plan_paid_amount": "DECIMAL(18,2)",
    "unpaid_amount": "DECIMAL(18,2)",
    "remaining_after_amount": "DECIMAL(18,2)",
    "is_paid": "BOOLEAN",
}


def on_plan(day: dt.date, **overrides: object) -> dict[str, object]:
    """An account held by its plan on `day`: its stage frozen at reminder_2."""
    values = {"is_held": True, "hold_reason": "installment_plan", "as_of_date": day}
    return a_stage("reminder_2", stage_entered_date=AS_OF - dt.timedelta(days=20),
                   **{**values, **overrides})  # fmt: skip


def an_installment(day: dt.date, **overrides: object) -> dict[str, object]:
    return {**INSTALLMENT_DEFAULTS, "as_of_date": day, **overrides}


def servicing_marts(
    connection: duckdb.DuckDBPyConnection,
    days: list[dt.date],
    *,
    stage: dict[str, object] | None = None,
    installment: dict[str, object] | None = None,
    more_stages: list[dict[str, object]] = (),  # type: ignore[assignment]
    more_installments: list[dict[str, object]] = (),  # type: ignore[assignment]
    customers: list[dict[str, object]] | None = None,
) -> None:
    """A1 on its plan every day of `days`, its second installment of three due on DUE."""
    make_marts(
        connection,
        [on_plan(day, **(stage or {})) for day in days] + list(more_stages),
        customers,
    )
    _table(
        connection,
        "marts.fct_payment_plan_installments",
        INSTALLMENT_DEFAULTS,
        INSTALLMENT_TYPES,
        [an_installment(day, **(installment or {})) for day in days] + list(more_installments),
    )


def run(
    connection: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    *,
    days: int = DAYS,
    contact: ContactSettings = CONTACT,
    scope: ContactScope = ALL_ACCOUNTS,
    commit: bool = True,
) -> dict[str, int]:
    """One day's planning; the planned contacts per channel."""
    plan = build_plan(connection, contact, as_of, f"run-{as_of}", scope,
                      installment_reminder_days=days)  # fmt: skip
    if commit:
        commit_plan(connection, plan)
    return plan.planned()


def reminders(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    return connection.execute(
        "select account_id, stage_entered_date, status, reason, times_planned, as_of_date "
        "from ops.action_ledger where stage = ? order by account_id, stage_entered_date",
        [REMINDER_STAGE],
    ).fetchall()


def sent(connection: duckdb.DuckDBPyConnection) -> None:
    keys = [key for (key,) in connection.execute(
        "select action_key from ops.action_ledger where status = 'planned'").fetchall()]  # fmt: skip
    transition(connection, keys, "sent", run_id="send")


# --- planning: once per installment ------------------------------------------------------


def test_a_reminder_goes_exactly_n_days_before_the_due_date_and_never_again(warehouse) -> None:
    days = [on(-4), on(-3), on(-2), on(-1), on(0)]
    servicing_marts(warehouse, days)
    assert run(warehouse, on(-4)) == {}  # four days before: not yet
    assert run(warehouse, on(-3)) == {"email": 1}
    [(key, stage_order, template, channel)] = warehouse.execute(
        "select action_key, stage_order, template, channel from ops.action_ledger"
    ).fetchall()
    assert key == action_key("A1", REMINDER_STAGE, "email", POLICY, DUE)
    assert (stage_order, template, channel) == (0, "installment_reminder", "email")
    assert run(warehouse, on(-3)) == {}  # the same day again: already planned
    sent(warehouse)
    for day in (on(-2), on(-1), on(0), on(-3)):  # later days, and the day rerun
        assert run(warehouse, day) == {}
    assert reminders(warehouse) == [("A1", DUE, "sent", None, 1, on(-3))]


def test_a_skipped_run_is_caught_up_once_until_the_due_date(warehouse) -> None:
    servicing_marts(warehouse, [on(-1), on(0), on(1)])
    # no run three or two days before: the day before catches up, once
    assert run(warehouse, on(-1)) == {"email": 1}
    sent(warehouse)
    assert run(warehouse, on(0)) == {}
    assert len(reminders(warehouse)) == 1


def test_no_reminder_once_the_due_date_passed(warehouse) -> None:
    servicing_marts(warehouse, [on(1)])  # runs stopped until the day after the due date
    assert run(warehouse, on(1)) == {}
    assert reminders(warehouse) == []


def test_an_installment_reminded_under_another_policy_version_is_not_reminded_again(
    warehouse,
) -> None:
    servicing_marts(warehouse, [on(-3), on(-2)], stage={"policy_version": "2026.2"})
    warehouse.execute(
        "update marts.fct_account_stage_history set policy_version = ? where as_of_date = ?",
        [POLICY, on(-3)],
    )
    assert run(warehouse, on(-3)) == {"email": 1}
    sent(warehouse)
    assert run(warehouse, on(-2)) == {}  # a new key (policy 2026.2), the same installment


def test_no_reminder_for_an_installment_not_due(warehouse) -> None:
    not_held = {"is_held": False, "hold_reason": ""}
    many_accounts(warehouse, [
        ({}, {"is_paid": True, "unpaid_amount": Decimal("0.00")}, {}),  # paid already
        (not_held, {"plan_status": "broken"}, {}),
        (not_held, {"plan_status": "cancelled"}, {}),
        (not_held, {"plan_status": "kept", "is_paid": True}, {}),
        ({}, {"due_date": on(1)}, {}),  # four days away: not yet
    ])  # fmt: skip
    assert run(warehouse, on(-3)) == {}


# hold reason → reminded? One account (and customer) each.
HOLDS = {
    "installment_plan": True,  # the plan's own hold
    "promise_to_pay": True,
    "settlement": True,  # an active settlement's own hold
    "installment_plan, promise_to_pay": True,
    "": True,
    "bankruptcy, installment_plan": False,
    "deceased, installment_plan": False,
    "cease_communication, installment_plan": False,
    "attorney_represented, installment_plan": False,
    "installment_plan, legal_hold": False,
    "fraud, installment_plan": False,
    "installment_plan, manual: complaint, under review": False,
    "dispute, installment_plan": False,  # the whole balance disputed
    "installment_plan, placed_with_agency": False,
    "settled": False,
    "installment_plan, referred_to_legal": False,
}


def many_accounts(
    connection: duckdb.DuckDBPyConnection,
    cases: list[tuple[dict[str, object], dict[str, object], dict[str, object]]],
) -> list[str]:
    """One account (and customer) per case of (stage, installment, customer) overrides, all
    due a reminder on DUE - 3 but for those overrides; their account ids."""
    names = [f"A{n}" for n in range(1, len(cases) + 1)]
    make_marts(
        connection,
        [on_plan(on(-3), account_id=name, customer_id=f"C-{name}", **stage)
         for name, (stage, _, _) in zip(names, cases, strict=True)],
        [a_customer(customer_id=f"C-{name}", **customer)
         for name, (_, _, customer) in zip(names, cases, strict=True)],
    )  # fmt: skip
    _table(
        connection,
        "marts.fct_payment_plan_installments",
        INSTALLMENT_DEFAULTS,
        INSTALLMENT_TYPES,
        [an_installment(on(-3), plan_id=f"PL-{name}", account_id=name, **installment)
         for name, (_, installment, _) in zip(names, cases, strict=True)],
    )  # fmt: skip
    return names


def test_other_holds_stop_reminders_and_the_plan_hold_does_not(warehouse) -> None:
    names = many_accounts(warehouse, [({"hold_reason": hold}, {}, {}) for hold in HOLDS])
    run(warehouse, on(-3))
    reminded = {account for account, *_ in reminders(warehouse)}
    assert {hold: name in reminded for hold, name in zip(HOLDS, names, strict=True)} == HOLDS


def test_an_account_placed_today_gets_no_reminder(warehouse) -> None:
    servicing_marts(warehouse, [on(-3)])
    warehouse.execute(
        "insert into ops.placements (placement_id, account_id, customer_id, agency_id, status, "
        "placed_date, placed_run_id, currency, placed_balance, commission_rate) "
        "values ('PLC1', 'A1', 'C1', 'AG1', 'open', ?, 'r', 'USD', 120.00, 0.2)",
        [on(-3)],
    )
    assert run(warehouse, on(-3)) == {}


def test_reminder_days_zero_turns_reminders_off(warehouse) -> None:
    servicing_marts(warehouse, [on(-3), on(-1)])
    assert run(warehouse, on(-3), days=0) == {}
    assert run(warehouse, on(-1), days=0) == {}
    assert reminders(warehouse) == []


def test_the_email_guardrails_suppress_a_reminder_for_good(warehouse) -> None:
    names = many_accounts(warehouse, [
        ({}, {}, {"email": None}),
        ({"contact_restrictions": "do_not_email"}, {}, {}),
        ({}, {}, {"email": "ann@staff.employer.example"}),  # a consumer's work address
        ({}, {}, {"email": "Bounced@Example.com"}),  # on the suppression list
        ({}, {}, {"email": "boss@employer.example", "customer_type": "business"}),
    ])  # fmt: skip
    warehouse.execute(
        "insert into ops.email_suppressions values ('bounced@example.com', 'bounce', now(), null)"
    )
    contact = ContactSettings(work_email_domains=["employer.example"])
    assert run(warehouse, on(-3), contact=contact) == {"email": 1}  # the business address
    expected = ["no_email_address", "do_not_email", "work_email", "email_bounce", None]
    assert {account: why for account, _, _, why, *_ in reminders(warehouse)} == dict(
        zip(names, expected, strict=True)
    )
    warehouse.execute("update marts.fct_account_stage_history set as_of_date = ?", [on(-2)])
    warehouse.execute("update marts.fct_payment_plan_installments set as_of_date = ?", [on(-2)])
    assert run(warehouse, on(-2), contact=contact) == {}  # suppressed is for good


def test_one_email_per_customer_per_day(warehouse) -> None:
    # the same customer's other account is due a dunning email on the reminder's day
    other = [a_stage("reminder_1", account_id="A2", as_of_date=day) for day in (on(-3), on(-2))]
    servicing_marts(warehouse, [on(-3), on(-2)], more_stages=other)
    assert run(warehouse, on(-3)) == {"email": 1}  # the dunning email
    assert reminders(warehouse) == [("A1", DUE, "deferred", "another_email_today", 1, on(-3))]
    sent(warehouse)
    assert run(warehouse, on(-2)) == {"email": 1}  # the reminder, a day later
    assert reminders(warehouse) == [("A1", DUE, "planned", None, 2, on(-2))]


def test_an_email_sent_earlier_the_same_day_defers_the_reminder(warehouse) -> None:
    servicing_marts(warehouse, [on(-3)], more_stages=[
        a_stage("reminder_1", account_id="A2", as_of_date=on(-3))])  # fmt: skip
    run(warehouse, on(-3), days=0)  # an earlier run of the day, reminders not yet on
    sent(warehouse)
    assert run(warehouse, on(-3)) == {}
    assert reminders(warehouse)[0][2:4] == ("deferred", "another_email_today")


def test_two_installments_of_one_customer_go_on_two_days_soonest_first(warehouse) -> None:
    days = [on(-3), on(-2)]
    servicing_marts(
        warehouse,
        days,
        more_stages=[on_plan(day, account_id="A3") for day in days],
        more_installments=[
            an_installment(day, plan_id="PL3", account_id="A3", due_date=on(-1)) for day in days
        ],
    )
    assert run(warehouse, on(-3)) == {"email": 1}
    assert [(account, status) for account, _, status, *_ in reminders(warehouse)] == [
        ("A1", "deferred"),
        ("A3", "planned"),  # due two days before A1's
    ]
    sent(warehouse)
    assert run(warehouse, on(-2)) == {"email": 1}
    assert [status for _, _, status, *_ in reminders(warehouse)] == ["planned", "sent"]


def test_a_scoped_run_reminds_only_in_its_scope(warehouse) -> None:
    servicing_marts(warehouse, [on(-3)])
    for scope, planned in [
        (ContactScope(account_ids=("A1",)), {"email": 1}),
        (ContactScope(account_ids=("A2",)), {}),
        (ContactScope(segment="residential"), {"email": 1}),
        (ContactScope(segment="enterprise"), {}),
    ]:
        assert run(warehouse, on(-3), scope=scope, commit=False) == planned, scope


def test_a_dry_run_counts_the_reminder_and_writes_nothing(warehouse) -> None:
    servicing_marts(warehouse, [on(-3)])
    assert run(warehouse, on(-3), commit=False) == {"email": 1}
    assert reminders(warehouse) == []


def test_reminders_refuse_marts_without_the_installments(warehouse) -> None:
    make_marts(warehouse, [on_plan(on(-3))])
    warehouse.execute("create temp table _plan (customer_id VARCHAR, channel VARCHAR, "
                      "status VARCHAR)")  # fmt: skip
    with pytest.raises(InstallmentsNotBuilt, match="fct_payment_plan_installments does not"):
        plan_installment_reminders(warehouse, CONTACT, on(-3), reminder_days=3, plan_table="_plan")
    assert reminders(warehouse) == []


# --- the re-check right before sending ---------------------------------------------------


# the next day's facts → what the re-check does with the reminder planned the day before
RECHECK_CASES: list[tuple[dict[str, object], dict[str, object], str | None]] = [
    ({}, {}, None),  # the plan's hold alone: still sent
    ({}, {"is_paid": True}, "installment_no_longer_due"),  # paid since
    ({"is_held": False, "hold_reason": ""}, {"plan_status": "broken"},
     "installment_no_longer_due"),
    ({}, {"plan_status": "cancelled"}, "installment_no_longer_due"),
    ({"hold_reason": "bankruptcy, installment_plan"}, {}, "hold: bankruptcy"),
    ({"hold_reason": "dispute, installment_plan"}, {}, "hold: dispute"),  # the whole balance
]  # fmt: skip


def next_day(connection: duckdb.DuckDBPyConnection, changes: dict[str, tuple[dict, dict]]) -> None:
    """The marts of DUE - 2: those of DUE - 3 again, with these accounts' (stage, installment)
    columns changed."""
    connection.execute(
        "insert into marts.fct_account_stage_history by name select * replace (?::date as "
        "as_of_date) from marts.fct_account_stage_history",
        [on(-2)],
    )
    connection.execute("update marts.fct_payment_plan_installments set as_of_date = ?", [on(-2)])
    for account, (stage, installment) in changes.items():
        for table, values in (
            ("fct_account_stage_history", stage),
            ("fct_payment_plan_installments", installment),
        ):
            for column, value in values.items():
                connection.execute(
                    f"update marts.{table} set {column} = ? "
                    "where account_id = ? and as_of_date = ?",
                    [value, account, on(-2)],
                )


def test_the_recheck_cancels_a_reminder_no_longer_due(warehouse) -> None:
    names = many_accounts(warehouse, [({}, {}, {}) for _ in RECHECK_CASES])
    assert run(warehouse, on(-3)) == {"email": len(names)}
    next_day(
        warehouse,
        {
            name: (stage, installment)
            for name, (stage, installment, _) in zip(names, RECHECK_CASES, strict=True)
        },
    )
    cancelled = cancel_outdated(
        warehouse, as_of=on(-2), today=on(-2), catch_up_days=7, run_id="recheck"
    )
    assert cancelled == {"installment_no_longer_due": 3, "hold: bankruptcy": 1, "hold: dispute": 1}
    assert {account: (status, why) for account, _, status, why, *_ in reminders(warehouse)} == {
        name: ("cancelled", reason) if reason else ("planned", None)
        for name, (_, _, reason) in zip(names, RECHECK_CASES, strict=True)
    }  # fmt: skip


def test_the_recheck_never_sends_a_reminder_after_its_due_date(warehouse) -> None:
    # a resumed run, or a rerun for a past date, sending on the day after the due date
    servicing_marts(warehouse, [on(-3)])
    assert run(warehouse, on(-3)) == {"email": 1}
    cancelled = cancel_outdated(
        warehouse, as_of=on(-3), today=on(1), catch_up_days=7, run_id="recheck"
    )
    assert cancelled == {"installment_due_date_passed": 1}


# --- the email ---------------------------------------------------------------------------

ACME = CompanyIdentity(
    name="Acme Water & Power",
    address_lines=("100 Commerce Street", "Suite 400", "Chicago, IL 60601", "US"),
    phone="+1 312 555 0100",
    email="billing@acme-utilities.example",
    website="https://acme-utilities.example",
)
REMINDED_ON = dt.date(2026, 5, 11)
INSTALLMENT = InstallmentDue(
    plan_id="PL-7",
    plan_kind="installment_plan",
    number=2,
    installments=3,
    due_date=dt.date(2026, 5, 14),
    amount=Decimal("150.00"),
    amount_due=Decimal("110.00"),  # 40.00 of it paid early
    remaining_after=Decimal("150.00"),
    grace_end_date=dt.date(2026, 5, 19),
)


def a_reminder(language: str = "en", **overrides: object) -> ContactContext:
    """The fixed context of the golden files: installment 2 of 3 of a plan, partly paid."""
    item = OpenItem(
        reference="INV-2026-0142",
        kind="invoice",
        issue_date=dt.date(2026, 2, 1),
        due_date=dt.date(2026, 3, 1),
        original_amount=Decimal("450.00"),
        open_amount=Decimal("260.00"),
        disputed_amount=Decimal("0.00"),
        days_past_due=71,
    )
    dunning = ContactContext(
        template="installment_reminder",
        language=language,  # type: ignore[arg-type]
        locale={"en": "en_US", "es": "es_US"}[language],
        as_of=REMINDED_ON,
        company=ACME,
        customer_name={"en": "Zoë Whitfield", "es": "María José Núñez"}[language],
        mailing_address=("2200 Lakeview Avenue", "Austin, TX 78701"),
        account_id="ACC-10027",
        currency="USD",
        total_open=Decimal("260.00"),
        disputed_amount=Decimal("0.00"),
        collectible_amount=Decimal("260.00"),
        amount_due=Decimal("260.00"),
        not_yet_due_amount=Decimal("0.00"),
        items=(item,),
        oldest_due_date=item.due_date,
        max_days_past_due=71,
        pay_by_date=REMINDED_ON + dt.timedelta(days=10),
        next_step_date=REMINDED_ON + dt.timedelta(days=14),
        pay_link="https://pay.acme-utilities.example/accounts/ACC-10027",
        opt_out_link="https://acme-utilities.example/email-preferences?ref=a1b2c3&src=email",
        third_party=False,
        validation=None,
        servicemember=False,
    )
    context = with_installment(dunning, INSTALLMENT)
    return dataclasses.replace(context, **overrides)


def check_golden(name: str, actual: str, update_golden: bool) -> None:
    path = GOLDEN / name
    if update_golden:
        path.write_text(actual, encoding="utf-8", newline="")
        return
    assert path.exists(), f"{path} is missing; run pytest --update-golden and review it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{name} changed; if that is intended, run pytest --update-golden and review the diff"
    )


@pytest.mark.unit
@pytest.mark.parametrize("language", ["en", "es"])
def test_the_reminder_email_matches_its_golden_files(language: str, update_golden: bool) -> None:
    rendered = render_email(a_reminder(language))
    text = f"Subject: {rendered.subject}\n\n{rendered.text}"
    check_golden(f"installment_reminder__{language}.txt", text, update_golden)
    check_golden(f"installment_reminder__{language}.html", rendered.html, update_golden)


@pytest.mark.unit
@pytest.mark.parametrize("language", ["en", "es"])
def test_the_reminder_asks_for_the_installment_with_identity_and_opt_out(language: str) -> None:
    context = a_reminder(language)
    rendered = render_email(context)
    assert context.amount_due == Decimal("110.00") and context.next_step_date is None
    assert "$110.00" in rendered.subject and {"en": "2 of 3", "es": "2 de 3"}[language] in (
        rendered.subject
    )
    for body, name in ((rendered.text, ACME.name), (rendered.html, str(escape(ACME.name)))):
        assert name in body and ACME.phone in body and ACME.website in body
        assert "$150.00" in body and "$110.00" in body  # the installment; what to pay
        assert {"en": "May 14, 2026", "es": "14 de mayo de 2026"}[language] in body
        assert {"en": "May 19, 2026", "es": "19 de mayo de 2026"}[language] in body
        assert context.pay_link in body or str(escape(context.pay_link)) in body
        assert str(escape(context.opt_out_link)) in body or context.opt_out_link in body
    assert "debt collector" not in rendered.text and "cobrador" not in rendered.text


@pytest.mark.unit
def test_the_reminder_words_follow_the_agreement() -> None:
    last = a_reminder(installment=dataclasses.replace(
        INSTALLMENT, number=1, installments=1, plan_kind="promise_to_pay", amount_due=INSTALLMENT.amount,
        remaining_after=Decimal("0.00")))  # fmt: skip
    rendered = render_email(last)
    assert "your payment of $150.00 is due on May 14, 2026" in rendered.subject
    assert "under your promise to pay" in rendered.text
    assert "paid in full" in rendered.text and "With what you have paid" not in rendered.text
    settlement = dataclasses.replace(INSTALLMENT, plan_kind="settlement")
    assert "settlement agreement" in render_email(a_reminder(installment=settlement)).text


@pytest.mark.unit
def test_the_reminder_in_third_party_mode_and_to_a_servicemember() -> None:
    third_party = render_email(a_reminder("es", third_party=True))
    assert third_party.text.startswith("Esta comunicación proviene de un cobrador de deudas.")
    assert "cobrador de deudas" in third_party.html
    servicemember = render_email(a_reminder(servicemember=True))
    assert "may end" not in servicemember.text and "collection process" not in servicemember.text
    assert "$110.00" in servicemember.text  # the amount and how to pay stay


@pytest.mark.unit
def test_a_reminder_never_asks_for_more_than_the_balance() -> None:
    context = a_reminder(collectible_amount=Decimal("60.00"))
    capped = with_installment(context, INSTALLMENT)
    assert capped.amount_due == capped.installment.amount_due == Decimal("60.00")


@pytest.mark.unit
def test_a_reminder_without_its_installment_does_not_render() -> None:
    with pytest.raises(Exception, match="installment"):
        render_email(a_reminder(installment=None))


# --- on a built warehouse: breaking with grace, the ladder resuming, a reminder sent ---------

X = dt.date(2026, 5, 5)  # a Tuesday: the previous run's decisions (stated, not built)
Y = X + dt.timedelta(days=6)  # Monday: the one build
GRACE = 2  # negotiation.plan_grace_days, passed to dbt as a var


def day(offset: int, base: dt.date = Y) -> str:
    return (base + dt.timedelta(days=offset)).isoformat()


def account(account_id: str, segment: str = "residential") -> dict:
    return row("accounts", account_id=account_id, customer_id=f"C-{account_id}", segment=segment)


def invoice(account_id: str, due_date: str) -> dict:
    return row("invoices", invoice_id=f"{account_id}-I", account_id=account_id,
               invoice_number=f"N-{account_id}", issue_date="2026-01-02", due_date=due_date,
               amount="500.00")  # fmt: skip


def plan(account_id: str, created: str, *schedule: tuple[str, str], **values: str) -> list[dict]:
    return [
        row("payment_plans", plan_id=f"PL-{account_id}", account_id=account_id,
            kind="installment_plan", installment_no=str(number), due_date=due, amount=amount,
            created_date=created, **values)
        for number, (due, amount) in enumerate(schedule, 1)
    ]  # fmt: skip


def payment(account_id: str, received: str, amount: str, n: int = 1) -> dict:
    return row("payments", payment_id=f"{account_id}-P{n}", account_id=account_id,
               amount=amount, received_date=received)  # fmt: skip


# account → (segment, invoice due date): each there for one rule
SCENARIO = {
    # final_notice from X; a plan from X+1 breaks at X+4 (first installment unpaid): at Y it
    # resumes from final_notice and waits out the 7 days' minimum stay before manager review
    "RESUME": ("residential", day(-50, X)),
    # the same on the enterprise ladder (5 days' minimum stay): moves on to manager review at Y
    "RESUME-E": ("enterprise", "2026-03-20"),
    # RESUME-E's facts with no earlier decision: where a ladder starting over would put it
    "FRESH-E": ("enterprise", "2026-03-20"),
    # held by an active plan: final notice frozen, its second installment reminded at Y
    "HELD-E": ("enterprise", "2026-03-20"),
    "GRACE-OK": ("residential", day(-60)),  # paid on the last day of grace: kept
    "GRACE-LATE": ("residential", day(-60)),  # paid the day after: broken that day
    "PARTIAL": ("residential", day(-60)),  # short of the cumulative due: broken
    "CANCELLED": ("residential", day(-60)),  # cancelled before its deadline: never broken
    "BANKRUPT": ("residential", day(-60)),  # an active plan, a bankruptcy: no reminder
    "AHEAD": ("residential", day(-60)),  # the installment paid ahead: no reminder
}
PLANS = [
    *plan("RESUME", day(1, X), (day(1, X), "50.00"), (day(3), "50.00")),
    *plan("RESUME-E", day(1, X), (day(1, X), "50.00"), (day(3), "50.00")),
    *plan("FRESH-E", day(1, X), (day(1, X), "50.00"), (day(3), "50.00")),
    *plan("HELD-E", day(1, X), (day(2, X), "50.00"), (day(3), "50.00"), (day(33), "50.00")),
    *plan("GRACE-OK", day(-20), (day(-3), "80.00")),
    *plan("GRACE-LATE", day(-20), (day(-3), "80.00")),
    *plan("PARTIAL", day(-20), (day(-15), "100.00"), (day(-3), "100.00")),
    *plan("CANCELLED", day(-20), (day(-3), "80.00"), cancelled_date=day(-2)),
    *plan("BANKRUPT", day(-20), (day(3), "80.00")),
    *plan("AHEAD", day(-20), (day(3), "80.00"), (day(33), "80.00")),
]
PAYMENTS = [
    payment("HELD-E", day(2, X), "50.00"),
    payment("HELD-E", day(-1), "20.00", 2),  # 20.00 towards the second installment
    payment("GRACE-OK", day(-1), "80.00"),  # the deadline: due Y-3 + 2 days
    payment("GRACE-LATE", day(0), "80.00"),
    payment("PARTIAL", day(-15), "100.00"),
    payment("PARTIAL", day(-2), "30.00", 2),
    payment("AHEAD", day(-1), "80.00"),
]


def previous_run(connection: duckdb.DuckDBPyConnection, accounts: dict[str, str]) -> None:
    """The run of X as it decided: these accounts (→ ladder) entered final_notice that day,
    not held. One build costs seconds: the earlier day's decisions are written as that
    build would have, in the mart's contracted columns (its YAML), so the build of Y reads
    them as its previous run."""
    models = yaml.safe_load(COLLECTIONS_YAML.read_text(encoding="utf-8"))["models"]
    [history] = [model for model in models if model["name"] == "fct_account_stage_history"]
    columns = {column["name"]: column["data_type"] for column in history["columns"]}
    connection.execute("create schema if not exists marts")
    connection.execute(
        "create table marts.fct_account_stage_history ("
        + ", ".join(f"{name} {data_type}" for name, data_type in columns.items())
        + ")"
    )
    for account_id, ladder in accounts.items():
        decided = {
            "as_of_date": X, "account_id": account_id, "customer_id": f"C-{account_id}",
            "segment": SCENARIO[account_id][0], "currency": "USD", "policy_version": POLICY,
            "policy_segment": ladder, "stage_order": 4, "stage": "final_notice",
            "stage_entered_date": X, "days_in_stage": 0, "stage_channel": "letter",
            "stage_template": "final_notice", "is_held": False, "hold_reason": "",
            "contact_restrictions": "", "total_open": Decimal("500.00"),
            "disputed_amount": Decimal("0.00"), "collectible_amount": Decimal("500.00"),
            "credit_balance": Decimal("0.00"),
        }  # fmt: skip
        names = [name for name in columns if name in decided]
        connection.execute(
            f"insert into marts.fct_account_stage_history ({', '.join(names)}) "
            f"values ({', '.join('?' for _ in names)})",
            [decided[name] for name in names],
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("plan_servicing")
    batch = write_batch(
        root / "batch",
        customers=[
            row(
                "customers",
                customer_id=f"C-{name}",
                email=f"{name.lower()}@example.com",
                full_name=f"Customer {name}",
                timezone="America/Chicago",
            )
            for name in SCENARIO
        ],
        accounts=[account(name, segment) for name, (segment, _) in SCENARIO.items()],
        invoices=[invoice(name, due) for name, (_, due) in SCENARIO.items()],
        payments=PAYMENTS,
        payment_plans=PLANS,
        account_flags=[
            row("account_flags", customer_id="C-BANKRUPT", flag="bankruptcy", start_date=day(-30))
        ],
    )
    warehouse = root / "recoup.duckdb"
    connection = open_warehouse(warehouse)
    assert load_batch(connection, batch).rows_quarantined == 0
    previous_run(
        connection, {"RESUME": "default", "RESUME-E": "enterprise", "HELD-E": "enterprise"}
    )
    connection.close()
    build_warehouse(warehouse, root / "state", Y, variables={"plan_grace_days": GRACE})
    connection = open_warehouse(warehouse)
    yield {"root": root, "connection": connection}
    connection.close()


def query(built: dict, sql: str, *parameters: object) -> dict:
    cursor = built["connection"].execute(sql, list(parameters))
    names = [column[0] for column in cursor.description]
    return {values[0]: dict(zip(names, values, strict=True)) for values in cursor.fetchall()}


def plans(built: dict) -> dict:
    return query(built, "select account_id, plan_status, broken_installment_no, broken_on "
                        "from marts.fct_payment_plans")  # fmt: skip


def stages(built: dict, as_of: dt.date) -> dict:
    return query(built, "select account_id, stage, stage_entered_date, previous_stage, is_held, "
                        "hold_reason from marts.fct_account_stage_history where as_of_date = ?",
                 as_of)  # fmt: skip


@pytest.mark.slow
def test_grace_edges_partial_payments_and_cancellations(built) -> None:
    found = plans(built)
    assert found["GRACE-OK"]["plan_status"] == "kept"  # paid on its deadline
    assert (found["GRACE-LATE"]["plan_status"], found["GRACE-LATE"]["broken_on"]) == (
        "broken", Y)  # fmt: skip
    assert (found["PARTIAL"]["plan_status"], found["PARTIAL"]["broken_installment_no"]) == (
        "broken", 2)  # fmt: skip
    assert (found["CANCELLED"]["plan_status"], found["CANCELLED"]["broken_on"]) == (
        "cancelled", None)  # fmt: skip
    # broken the day after the first installment's deadline (due X+1, grace 2)
    assert found["RESUME"]["broken_on"] == X + dt.timedelta(days=4)


@pytest.mark.slow
def test_a_broken_plan_releases_the_hold_and_the_ladder_resumes_where_it_was(built) -> None:
    after = stages(built, Y)
    # all at final_notice since X (previous_run), the plans agreed at X+1
    # default ladder: 6 days in final notice, 7 needed: it stays, its stay counted from X
    resumed = after["RESUME"]
    assert (resumed["is_held"], resumed["stage"], resumed["stage_entered_date"]) == (
        False, "final_notice", X)  # fmt: skip
    # enterprise: 5 days needed, so it moves on from the stage it had reached
    assert (after["RESUME-E"]["stage"], after["RESUME-E"]["previous_stage"]) == (
        "manager_review", "final_notice")  # fmt: skip
    # a ladder that started over would have stepped only to final notice, entered today
    fresh = after["FRESH-E"]
    assert (fresh["is_held"], fresh["stage"], fresh["stage_entered_date"]) == (
        False, "final_notice", Y)  # fmt: skip
    # the active plan holds its account: the stage stays frozen
    held = after["HELD-E"]
    assert (held["is_held"], held["hold_reason"], held["stage"]) == (
        True, "installment_plan", "final_notice")  # fmt: skip
    assert held["stage_entered_date"] == X


@pytest.mark.slow
def test_the_built_day_reminds_the_held_plan_only_and_sends_it_once(built, tmp_path) -> None:
    connection = built["connection"]
    settings = load_settings({"RECOUP_HOME": str(tmp_path / "home")})
    days = settings.negotiation.installment_reminder_days
    assert days == 3
    plan_today = build_plan(
        connection, settings.contact, Y, "run-y", installment_reminder_days=days
    )
    commit_plan(connection, plan_today)
    assert [row[0] for row in reminders(connection)] == ["HELD-E"]  # not RESUME (broken),
    # not BANKRUPT (held), not AHEAD (paid), not GRACE-*/PARTIAL/CANCELLED (nothing due)
    assert cancel_outdated(connection, as_of=Y, today=Y, catch_up_days=7, run_id="run-y") == {}
    outbox = tmp_path / "outbox"
    noon = dt.datetime.combine(Y, dt.time(12), zoneinfo.ZoneInfo("America/Chicago"))
    outcome = send_planned_emails(connection, settings, OutboxSender.from_settings(settings, outbox),
                                  as_of=Y, run_id="run-y", now=noon.astimezone(dt.UTC))  # fmt: skip
    assert outcome.total("sent") >= 1
    [(key,)] = connection.execute(
        "select action_key from ops.action_ledger where stage = ? and status = 'sent'",
        [REMINDER_STAGE],
    ).fetchall()
    message = email.message_from_bytes((outbox / f"{key}.eml").read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    assert "installment 2 of 3" in message["Subject"] and "$30.00" in message["Subject"]
    assert "installment 2 of 3 of your payment plan for account HELD-E, $50.00" in text
    assert "the amount to pay by then is $30.00" in text  # 20.00 of it paid already
    assert "$50.00 will remain to pay" in text  # the third installment
    # a rerun of the day plans and sends nothing more
    commit_plan(connection, build_plan(connection, settings.contact, Y, "run-y2",
                                       installment_reminder_days=days))  # fmt: skip
    assert len(reminders(connection)) == 1
    again = send_planned_emails(connection, settings, OutboxSender.from_settings(settings, outbox),
                                as_of=Y, run_id="run-y2", now=noon.astimezone(dt.UTC))  # fmt: skip
    assert again.total("sent") == 0
