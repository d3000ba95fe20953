"""Planning the day's contacts: who is due one, and the guardrails that stop or defer it."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from flows.lib.config import ContactSettings
from flows.lib.ledger import action_key
from flows.lib.planner import ALL_ACCOUNTS, ContactScope, build_plan, commit_plan
from tests.contact_fixtures import (
    AS_OF,
    POLICY,
    a_customer,
    a_stage,
    contacted,
    make_marts,
    no_stage,
)

pytestmark = pytest.mark.integration
CONTACT = ContactSettings()
YESTERDAY = AS_OF - dt.timedelta(days=1)


def plan_rows(
    connection: duckdb.DuckDBPyConnection,
    *,
    contact: ContactSettings = CONTACT,
    scope: ContactScope = ALL_ACCOUNTS,
    as_of: dt.date = AS_OF,
) -> dict[str, tuple[str, str | None]]:
    """account_id → (status, reason) of the judged plan."""
    build_plan(connection, contact, as_of, "run-1", scope)
    rows = connection.execute("select account_id, status, reason from _contact_plan").fetchall()
    return {account: (status, reason) for account, status, reason in rows}


def test_an_account_entering_a_stage_gets_one_contact_under_its_key(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_1")])
    plan = build_plan(warehouse, CONTACT, AS_OF, "run-1")
    assert plan.planned() == {"email": 1}
    [(key,)] = warehouse.execute("select action_key from _contact_plan").fetchall()
    assert key == action_key("A1", "reminder_1", "email", POLICY, AS_OF)


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        pytest.param(a_stage("reminder_1", is_held=True, hold_reason="bankruptcy"), {},
                     id="held: never planned"),
        pytest.param(no_stage(), {}, id="no stage"),
        pytest.param(a_stage("reminder_1", stage_entered_date=AS_OF - dt.timedelta(days=8)), {},
                     id="in the stage for longer than catch_up_days"),
        pytest.param(a_stage("reminder_1", stage_entered_date=AS_OF - dt.timedelta(days=7)),
                     {"A1": ("planned", None)}, id="in the stage within catch_up_days"),
        pytest.param(a_stage("reminder_1", as_of_date=YESTERDAY), {}, id="another day"),
    ],
)  # fmt: skip
def test_who_is_due_a_contact(warehouse, stage: dict, expected: dict) -> None:
    make_marts(warehouse, [stage])
    assert plan_rows(warehouse) == expected


@pytest.mark.parametrize(
    ("stage", "customer", "expected"),
    [
        pytest.param(a_stage("reminder_1"), a_customer(email=None),
                     ("suppressed", "no_email_address"), id="no email address"),
        pytest.param(a_stage("reminder_1", contact_restrictions="do_not_email, servicemember"),
                     a_customer(), ("suppressed", "do_not_email"), id="do_not_email"),
        pytest.param(a_stage("reminder_1"), a_customer(email="ann@bigcorp.example"),
                     ("suppressed", "work_email"), id="a consumer's work address"),
        pytest.param(a_stage("reminder_1"),
                     a_customer(email="ap@bigcorp.example", customer_type="business"),
                     ("planned", None), id="a business at that domain is fine"),
        pytest.param(a_stage("final_notice"), a_customer(postal_code=None),
                     ("suppressed", "no_postal_address"), id="letter without an address"),
        pytest.param(a_stage("manager_review"), a_customer(phone=None),
                     ("suppressed", "no_phone_number"), id="call without a number"),
        pytest.param(a_stage("manager_review", contact_restrictions="do_not_call"),
                     a_customer(), ("suppressed", "do_not_call"), id="do_not_call"),
        pytest.param(a_stage("reminder_1", contact_restrictions="do_not_call"), a_customer(),
                     ("planned", None), id="do_not_call does not stop an email"),
    ],
)  # fmt: skip
def test_guardrails_suppress_with_their_reason(
    warehouse, stage: dict, customer: dict, expected: tuple
) -> None:
    make_marts(warehouse, [stage], [customer])
    contact = ContactSettings(work_email_domains=["BigCorp.example"])
    assert plan_rows(warehouse, contact=contact) == {"A1": expected}


def test_a_bounced_or_unsubscribed_address_is_not_emailed(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_1")], [a_customer(email=" Ann@Example.com")])
    warehouse.execute(
        "insert into ops.email_suppressions values ('ann@example.com', 'hard_bounce', now(), null)"
    )
    assert plan_rows(warehouse) == {"A1": ("suppressed", "email_hard_bounce")}


@pytest.mark.parametrize(
    ("stage", "customer", "expected"),
    [
        pytest.param(a_stage("final_notice"), a_customer(is_address_returned=True),
                     ("suppressed", "address_returned"), id="a letter came back from there"),
        pytest.param(a_stage("manager_review"), a_customer(is_phone_invalid=True),
                     ("suppressed", "phone_invalid"), id="the number is invalid"),
        pytest.param(a_stage("reminder_1"), a_customer(is_address_returned=True,
                     is_phone_invalid=True), ("planned", None), id="email still works"),
    ],
)  # fmt: skip
def test_a_returned_address_or_invalid_phone_is_not_used(
    warehouse, stage: dict, customer: dict, expected: tuple
) -> None:
    make_marts(warehouse, [stage], [customer])
    assert plan_rows(warehouse) == {"A1": expected}


def test_new_contact_details_put_the_account_back_in_its_stage_under_a_new_key(warehouse) -> None:
    """The stage's email went to an address that bounced; a skip-trace result gave a new one
    yesterday: the account re-enters the stage on that day, and the new address is emailed."""
    entered = AS_OF - dt.timedelta(days=5)
    make_marts(
        warehouse,
        [a_stage("reminder_1", stage_entered_date=entered)],
        [a_customer(email="ann.new@example.com", email_updated_on=YESTERDAY)],
    )
    old_key = contacted(warehouse, day=entered, entered=entered)
    plan = commit_plan(warehouse, build_plan(warehouse, CONTACT, AS_OF, "run-1"))
    assert plan.planned() == {"email": 1}
    rows = warehouse.execute(
        "select action_key, stage_entered_date, reentered_on, status from ops.action_ledger "
        "where action_key <> ?",
        [old_key],
    ).fetchall()
    new_key = action_key("A1", "reminder_1", "email", POLICY, entered, YESTERDAY)
    assert rows == [(new_key, entered, YESTERDAY, "planned")]
    assert new_key not in (old_key, action_key("A1", "reminder_1", "email", POLICY, entered))
    # the same day again plans nothing more
    assert build_plan(warehouse, CONTACT, AS_OF, "run-2").planned() == {}


@pytest.mark.parametrize(
    ("updated_on", "expected"),
    [
        pytest.param(AS_OF - dt.timedelta(days=6), ("suppressed", "already_contacted"),
                     id="changed before the stage began: no re-entry"),
        pytest.param(AS_OF + dt.timedelta(days=1), ("suppressed", "already_contacted"),
                     id="changed after the run's date (a rerun for a past date): no re-entry"),
        pytest.param(AS_OF, ("planned", None), id="changed on the run's date"),
    ],
)  # fmt: skip
def test_a_re_entry_needs_details_changed_inside_the_stay(
    warehouse, updated_on: dt.date, expected: tuple
) -> None:
    entered = AS_OF - dt.timedelta(days=5)
    make_marts(
        warehouse,
        [a_stage("reminder_1", stage_entered_date=entered)],
        [a_customer(email_updated_on=updated_on)],
    )
    contacted(warehouse, day=entered, entered=AS_OF - dt.timedelta(days=30))  # another key
    assert plan_rows(warehouse) == {"A1": expected}


def test_catch_up_counts_from_the_re_entry(warehouse) -> None:
    entered = AS_OF - dt.timedelta(days=20)  # beyond catch_up_days
    stages = [a_stage("final_notice", stage_entered_date=entered)]
    make_marts(warehouse, stages, [a_customer(address_updated_on=YESTERDAY)])
    assert plan_rows(warehouse) == {"A1": ("planned", None)}
    make_marts(warehouse, stages, [a_customer(email_updated_on=YESTERDAY)])  # not the letter's
    assert plan_rows(warehouse) == {}


def test_the_email_cap_per_seven_days_defers(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_2")])
    for days_back in (3, 5, 6):  # three emails inside the last seven days
        contacted(warehouse, stage="courtesy_reminder", day=AS_OF - dt.timedelta(days=days_back),
                  entered=AS_OF - dt.timedelta(days=days_back + 20))  # fmt: skip
    assert plan_rows(warehouse) == {"A1": ("deferred", "frequency_cap")}


def test_an_email_seven_days_ago_no_longer_counts_against_the_cap(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_2")])
    for days_back in (3, 5, 7):
        contacted(warehouse, stage="courtesy_reminder", day=AS_OF - dt.timedelta(days=days_back),
                  entered=AS_OF - dt.timedelta(days=days_back + 20))  # fmt: skip
    assert plan_rows(warehouse) == {"A1": ("planned", None)}


@pytest.mark.parametrize(
    ("days_back", "expected"),
    [
        pytest.param(1, ("deferred", "min_days_between_contacts"), id="a letter yesterday"),
        pytest.param(2, ("planned", None), id="a letter two days ago"),
    ],
)
def test_contacts_are_spaced_by_min_days_between_contacts(
    warehouse, days_back: int, expected: tuple
) -> None:
    make_marts(warehouse, [a_stage("manager_review")])
    contacted(warehouse, stage="final_notice", day=AS_OF - dt.timedelta(days=days_back))
    assert plan_rows(warehouse) == {"A1": expected}


def test_the_manager_queue_ignores_customer_caps(warehouse) -> None:
    make_marts(warehouse, [a_stage("write_off_recommendation")], [a_customer(email=None)])
    contacted(warehouse, stage="final_notice", day=YESTERDAY)
    assert plan_rows(warehouse) == {"A1": ("planned", None)}


def test_a_contact_sent_or_suppressed_is_never_planned_again(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_1", stage_entered_date=YESTERDAY)])
    contacted(warehouse, day=YESTERDAY, status="sent")
    assert plan_rows(warehouse) == {}
    warehouse.execute("update ops.action_ledger set status = 'suppressed'")
    assert plan_rows(warehouse) == {}
    warehouse.execute("update ops.action_ledger set status = 'maybe_sent'")
    assert plan_rows(warehouse) == {}


@pytest.mark.parametrize("earlier", ["deferred", "cancelled", "failed"])
def test_a_deferred_cancelled_or_failed_contact_is_planned_again(warehouse, earlier: str) -> None:
    make_marts(warehouse, [a_stage("reminder_1", stage_entered_date=YESTERDAY)])
    key = contacted(warehouse, day=YESTERDAY, status=earlier)
    plan = commit_plan(warehouse, build_plan(warehouse, CONTACT, AS_OF, "run-2"))
    assert plan.planned() == {"email": 1}
    row = warehouse.execute(
        "select status, as_of_date, run_id, times_planned from ops.action_ledger "
        "where action_key = ?",
        [key],
    ).fetchall()
    assert row == [("planned", AS_OF, "run-2", 2)]
    log = warehouse.execute("select from_status, to_status from ops.action_log").fetchall()
    assert log == [(earlier, "planned")]


def test_committing_twice_plans_nothing_more(warehouse) -> None:
    make_marts(
        warehouse,
        [a_stage("reminder_1"), a_stage("final_notice", account_id="A2", customer_id="C2")],
        [a_customer(), a_customer(customer_id="C2")],
    )
    first = commit_plan(warehouse, build_plan(warehouse, CONTACT, AS_OF, "run-1"))
    second = commit_plan(warehouse, build_plan(warehouse, CONTACT, AS_OF, "run-2"))
    assert first.planned() == {"email": 1, "letter": 1}
    assert second.counts == {}
    assert warehouse.execute("select count(*) from ops.action_ledger").fetchall() == [(2,)]
    assert warehouse.execute("select count(*) from ops.action_log").fetchall() == [(2,)]


def test_a_rerun_for_a_past_date_does_not_contact_a_stage_again(warehouse) -> None:
    """A skipped run, then a rerun for it: the rerun dates the stage entry a day earlier than
    the run that already sent it. Same stay, so no second email."""
    day_before = AS_OF - dt.timedelta(days=2)
    make_marts(
        warehouse,
        [
            a_stage("reminder_1", as_of_date=day_before, stage_entered_date=day_before),
            a_stage("reminder_2", as_of_date=AS_OF, stage_entered_date=AS_OF),
            # the rerun for the skipped day: already in reminder_2 then
            a_stage("reminder_2", as_of_date=YESTERDAY, stage_entered_date=YESTERDAY),
        ],
    )
    contacted(warehouse, stage="reminder_2", day=AS_OF)
    assert plan_rows(warehouse, as_of=YESTERDAY) == {"A1": ("suppressed", "already_contacted")}


def test_a_stage_reached_again_after_leaving_it_is_contacted_again(warehouse) -> None:
    """reminder_1 in January, paid, past due again in March: a new stay, a new email."""
    january = AS_OF - dt.timedelta(days=60)
    make_marts(
        warehouse,
        [
            a_stage("reminder_1", as_of_date=january, stage_entered_date=january),
            no_stage(as_of_date=january + dt.timedelta(days=10)),
            a_stage("reminder_1", as_of_date=AS_OF, stage_entered_date=AS_OF),
        ],
    )  # fmt: skip
    contacted(warehouse, stage="reminder_1", day=january)
    assert plan_rows(warehouse) == {"A1": ("planned", None)}


def test_a_run_can_be_narrowed_to_a_segment_or_accounts(warehouse) -> None:
    make_marts(
        warehouse,
        [
            a_stage("reminder_1", account_id="A1"),
            a_stage("reminder_1", account_id="A2", customer_id="C2", segment="smb"),
            a_stage("reminder_1", account_id="A3", customer_id="C3", segment="smb"),
        ],
        [a_customer(), a_customer(customer_id="C2"), a_customer(customer_id="C3")],
    )
    assert set(plan_rows(warehouse, scope=ContactScope(segment="smb"))) == {"A2", "A3"}
    assert set(plan_rows(warehouse, scope=ContactScope(account_ids=("A1", "A3")))) == {"A1", "A3"}
    both = ContactScope(segment="smb", account_ids=("A1", "A3"))
    assert set(plan_rows(warehouse, scope=both)) == {"A3"}


def test_a_customer_with_two_past_due_accounts_hears_about_one_per_day(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_1"), a_stage("final_notice", account_id="A2")])
    assert plan_rows(warehouse) == {
        "A2": ("planned", None),  # the higher stage first
        "A1": ("deferred", "min_days_between_contacts"),
    }


def test_spacing_counts_contacts_about_the_customers_other_accounts(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_1")])
    contacted(warehouse, account_id="A2", stage="final_notice", day=YESTERDAY)
    assert plan_rows(warehouse) == {"A1": ("deferred", "min_days_between_contacts")}


def test_a_contact_still_planned_by_an_earlier_run_counts(warehouse) -> None:
    make_marts(warehouse, [a_stage("reminder_2")])
    contacted(warehouse, stage="reminder_1", day=YESTERDAY, status="planned")
    assert plan_rows(warehouse) == {"A1": ("deferred", "min_days_between_contacts")}


def test_a_rerun_for_a_past_date_never_goes_back_down_the_ladder(warehouse) -> None:
    """reminder_2 went out today; a rerun for three days ago would plan reminder_1."""
    earlier = AS_OF - dt.timedelta(days=3)
    make_marts(warehouse, [a_stage("reminder_1", as_of_date=earlier, stage_entered_date=earlier)])
    contacted(warehouse, stage="reminder_2", day=AS_OF)
    assert plan_rows(warehouse, as_of=earlier) == {"A1": ("suppressed", "superseded")}


def test_a_new_policy_version_does_not_contact_the_same_stay_again(warehouse) -> None:
    three_days_ago = AS_OF - dt.timedelta(days=3)
    make_marts(
        warehouse,
        [
            a_stage("reminder_1", as_of_date=three_days_ago, stage_entered_date=three_days_ago),
            a_stage("reminder_1", policy_version="2026.2", stage_entered_date=AS_OF),
        ],
    )
    contacted(warehouse, stage="reminder_1", day=three_days_ago)  # under 2026.1
    assert plan_rows(warehouse) == {"A1": ("suppressed", "already_contacted")}


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("ann@mail.bigcorp.example", ("suppressed", "work_email"), id="a subdomain"),
        pytest.param(" Ann@BIGCORP.example ", ("suppressed", "work_email"), id="case and spaces"),
        pytest.param("ann@notbigcorp.example", ("planned", None), id="another domain"),
    ],
)
def test_work_domains_cover_their_subdomains(warehouse, address: str, expected: tuple) -> None:
    make_marts(warehouse, [a_stage("reminder_1")], [a_customer(email=address)])
    contact = ContactSettings(work_email_domains=["bigcorp.example"])
    assert plan_rows(warehouse, contact=contact) == {"A1": expected}


def test_an_account_placed_with_an_agency_gets_no_internal_contact(warehouse) -> None:
    make_marts(warehouse, [a_stage("manager_review"), a_stage("reminder_1", account_id="A2",
                                                            customer_id="C2")],
               [a_customer(), a_customer(customer_id="C2")])  # fmt: skip
    warehouse.execute(
        "insert into ops.placements (placement_id, account_id, customer_id, agency_id, status, "
        "placed_date, placed_run_id, currency, placed_balance, commission_rate) values "
        "('p1', 'A1', 'C1', 'summit', 'open', '2026-03-30', 'r0', 'USD', 120.00, 0.28)"
    )
    assert plan_rows(warehouse) == {"A2": ("planned", None)}
