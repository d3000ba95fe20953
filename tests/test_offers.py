"""Plan and settlement offers (flows/lib/offers.py): who is offered what, the amounts, offers
that stand until the balance changes or they expire, exactly once, and where they show: the
reminder templates (golden files), the contacts' contexts and the phone queue's talking points.

Most tests run on tiny marts (the two tables make_offers reads) in one warehouse per module;
the last ones on one warehouse dbt built, through the contact steps."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.config import (
    NegotiationSettings,
    OfferPolicy,
    PlanOfferPolicy,
    Settings,
    SettlementOfferPolicy,
    SettlementTier,
    load_settings,
)
from flows.lib.contact_data import MartsNotForDate
from flows.lib.gates import record_build
from flows.lib.offers import (
    OfferOutcome,
    current_offers,
    make_offers,
    offer_id,
    offers_for_actions,
    talking_points,
)
from flows.lib.planner import ContactScope
from flows.lib.templates import OfferTerms, PlanOption, SettlementOption, render_email
from flows.lib.warehouse import open_warehouse

pytestmark = pytest.mark.integration

D = Decimal
AS_OF = dt.date(2026, 3, 31)
NOW = dt.datetime(2026, 3, 31, 7, 0, tzinfo=dt.UTC)


def day(offset: int) -> dt.date:
    return AS_OF + dt.timedelta(days=offset)


# The policy the tests judge by, stated here (the shipped defaults may move): the default
# segment offers plans of 3, 6 and 12 and settlements by age; enterprise plans only.
DEFAULT_POLICY = OfferPolicy(
    stages=["reminder_2", "final_notice", "manager_review", "pre_placement"],
    plan=PlanOfferPolicy(
        min_balance=D("100.00"),
        max_balance=D("10000.00"),
        min_days_past_due=15,
        max_days_past_due=365,
        no_broken_plan_months=12,
        lengths=[3, 6, 12],
        min_installment=D("25.00"),
    ),
    settlement=SettlementOfferPolicy(
        tiers=[
            SettlementTier(min_days_past_due=180, percent=D("70")),  # any order in the config
            SettlementTier(min_days_past_due=60, percent=D("90")),
            SettlementTier(min_days_past_due=120, percent=D("80")),
        ],
        min_balance=D("50.00"),
        valid_days=30,
        approval_above=D("1000.00"),
    ),
)
ENTERPRISE_POLICY = OfferPolicy(
    stages=["reminder_2", "final_notice", "manager_review", "pre_placement"],
    plan=PlanOfferPolicy(
        min_balance=D("1000.00"),
        max_balance=D("250000.00"),
        lengths=[3, 6],
        min_installment=D("500.00"),
    ),
    settlement=None,
)
NEGOTIATION = NegotiationSettings(
    offers={"default": DEFAULT_POLICY, "enterprise": ENTERPRISE_POLICY}
)

ACCOUNT_DEFAULTS: dict[str, object] = {
    "account_id": "A1",
    "customer_id": "C1",
    "segment": "residential",
    "currency": "USD",
    "stage": "final_notice",
    "is_held": False,
    "collectible_amount": D("600.00"),
    "days_past_oldest_collectible_due": 70,
}
ACCOUNT_TYPES = {
    "is_held": "BOOLEAN",
    "collectible_amount": "DECIMAL(18,2)",
    "days_past_oldest_collectible_due": "INTEGER",
}


def an_account(**overrides: object) -> dict[str, object]:
    unknown = set(overrides) - set(ACCOUNT_DEFAULTS)
    assert not unknown, f"no column {unknown}"
    return {**ACCOUNT_DEFAULTS, **overrides}


def a_plan(broken_on: dt.date | None, **overrides: object) -> dict[str, object]:
    """A plan or promise of A1 in marts.fct_payment_plans (broken on `broken_on`, if set)."""
    return {
        "plan_id": "PL1",
        "account_id": "A1",
        "plan_kind": "installment_plan",
        "plan_status": "broken" if broken_on else "kept",
        "cancelled_date": None,
        "broken_on": broken_on,
        **overrides,
    }


def on_day(
    connection: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    accounts: list[dict[str, object]],
    plans: list[dict[str, object]] | None = None,
) -> None:
    """The marts of a build for `as_of`: these accounts' stage rows (other days' rows stay,
    like the incremental mart) and these plans (the plans mart holds the latest build)."""
    connection.execute("delete from marts.fct_account_stage_history where as_of_date = ?", [as_of])
    columns = ["as_of_date", *ACCOUNT_DEFAULTS]
    connection.executemany(
        f"insert into marts.fct_account_stage_history ({', '.join(columns)}) "
        f"values ({', '.join('?' for _ in columns)})",
        [[as_of, *(account[column] for column in ACCOUNT_DEFAULTS)] for account in accounts],
    )
    connection.execute("delete from marts.fct_payment_plans")
    for plan in plans or []:
        connection.execute(
            "insert into marts.fct_payment_plans values ($plan_id, $account_id, $plan_kind, "
            "$plan_status, $cancelled_date, $broken_on)",
            plan,
        )
    record_build(connection, as_of)


@pytest.fixture(scope="module")
def module_warehouse(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path_factory.mktemp("offers") / "recoup.duckdb")
    yield connection
    connection.close()


@pytest.fixture
def warehouse(module_warehouse: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The module's warehouse with empty marts and no offers."""
    connection = module_warehouse
    connection.execute("drop table if exists ops.offers")
    connection.execute("create schema if not exists marts")
    definition = ", ".join(
        f"{column} {ACCOUNT_TYPES.get(column, 'VARCHAR')}" for column in ACCOUNT_DEFAULTS
    )
    connection.execute(
        f"create or replace table marts.fct_account_stage_history (as_of_date DATE, {definition})"
    )
    connection.execute(
        "create or replace table marts.fct_payment_plans (plan_id VARCHAR, account_id VARCHAR, "
        "plan_kind VARCHAR, plan_status VARCHAR, cancelled_date DATE, broken_on DATE)"
    )
    return connection


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("home")
    return load_settings({"RECOUP_HOME": str(home)}).model_copy(update={"negotiation": NEGOTIATION})


def offer(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date = AS_OF,
    **options: object,
) -> OfferOutcome:
    return make_offers(connection, settings, as_of, "run-1", now=NOW, **options)  # type: ignore[arg-type]


def offers(connection: duckdb.DuckDBPyConnection, account_id: str = "A1") -> list[tuple]:
    """(kind, plan length, installment, last installment, amount, percent, needs approval)."""
    return connection.execute(
        "select kind, plan_length, installment_amount, last_installment_amount, offer_amount, "
        "percent, requires_approval from ops.offers where account_id = ? "
        "order by offer_date, kind, plan_length",
        [account_id],
    ).fetchall()


def kinds(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, int | None]]:
    return [(kind, length) for kind, length, *_ in offers(connection)]


PLANS_3_6_12 = [("installment_plan", 3), ("installment_plan", 6), ("installment_plan", 12)]
SETTLEMENT = [("settlement", None)]


# --- who is offered what ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "plans", "expected"),
    [
        pytest.param({}, [], PLANS_3_6_12 + SETTLEMENT, id="eligible for both"),
        pytest.param({"collectible_amount": D("100.00")}, [],
                     [("installment_plan", 3), *SETTLEMENT],
                     id="balance at plan minimum (6 and 12 installments under 25.00)"),
        pytest.param({"collectible_amount": D("99.99")}, [], SETTLEMENT,
                     id="balance under plan minimum"),
        pytest.param({"collectible_amount": D("10000.00")}, [], PLANS_3_6_12 + SETTLEMENT,
                     id="balance at plan maximum"),
        pytest.param({"collectible_amount": D("10000.01")}, [], SETTLEMENT,
                     id="balance over plan maximum"),
        pytest.param({"collectible_amount": D("50.00")}, [], SETTLEMENT,
                     id="balance at settlement minimum"),
        pytest.param({"collectible_amount": D("49.99")}, [], [],
                     id="balance under settlement minimum"),
        pytest.param({"days_past_oldest_collectible_due": 15}, [], PLANS_3_6_12,
                     id="days past due at plan minimum, no settlement tier yet"),
        pytest.param({"days_past_oldest_collectible_due": 14}, [], [],
                     id="days past due under every minimum"),
        pytest.param({"days_past_oldest_collectible_due": 365}, [], PLANS_3_6_12 + SETTLEMENT,
                     id="days past due at plan maximum"),
        pytest.param({"days_past_oldest_collectible_due": 366}, [], SETTLEMENT,
                     id="days past due over plan maximum"),
        pytest.param({}, [a_plan(day(-334))], SETTLEMENT, id="plan broken 11 months ago"),
        pytest.param({}, [a_plan(day(-365))], SETTLEMENT,
                     id="plan broken exactly 12 months ago"),
        pytest.param({}, [a_plan(day(-396))], PLANS_3_6_12 + SETTLEMENT,
                     id="plan broken 13 months ago"),
        pytest.param({}, [a_plan(day(-30), plan_kind="promise_to_pay")], SETTLEMENT,
                     id="promise to pay broken"),
        pytest.param({}, [a_plan(day(-30), plan_status="cancelled", cancelled_date=day(-20))],
                     SETTLEMENT, id="broken, then cancelled"),
        pytest.param({}, [a_plan(day(-30), plan_status="cancelled", cancelled_date=day(-40))],
                     PLANS_3_6_12 + SETTLEMENT, id="cancelled before it would have broken"),
        pytest.param({}, [a_plan(None)], PLANS_3_6_12 + SETTLEMENT, id="a kept plan"),
        pytest.param({}, [a_plan(day(-30), account_id="A2")], PLANS_3_6_12 + SETTLEMENT,
                     id="another account's broken plan"),
        pytest.param({"segment": "enterprise", "collectible_amount": D("1500.00")}, [],
                     [("installment_plan", 3)], id="segment without settlement offers"),
        pytest.param({"segment": "campus"}, [], PLANS_3_6_12 + SETTLEMENT,
                     id="unknown segment follows default"),
        pytest.param({"is_held": True}, [], [], id="held"),
        pytest.param({"stage": "reminder_1"}, [], [], id="stage without offers"),
        pytest.param({"collectible_amount": D("0.00")}, [], [], id="nothing collectible"),
    ],
)  # fmt: skip
def test_who_is_offered_what(
    warehouse, settings: Settings, account: dict, plans: list, expected: list
) -> None:
    on_day(warehouse, AS_OF, [an_account(**account)], plans)
    outcome = offer(warehouse, settings)
    assert kinds(warehouse) == expected
    plan_count = sum(kind == "installment_plan" for kind, _ in expected)
    assert (outcome.plan_offers, outcome.settlement_offers) == (
        plan_count,
        len(expected) - plan_count,
    )
    assert outcome.accounts_offered == (1 if expected else 0)


# --- the amounts --------------------------------------------------------------------------


def test_installments_round_up_and_the_last_takes_the_remainder(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(collectible_amount=D("1000.01"))])
    offer(warehouse, settings)
    plans = [row[1:5] for row in offers(warehouse) if row[0] == "installment_plan"]
    assert plans == [
        (3, D("333.34"), D("333.33"), D("1000.01")),
        (6, D("166.67"), D("166.66"), D("1000.01")),
        (12, D("83.34"), D("83.27"), D("1000.01")),
    ]
    for length, installment, last, total in plans:
        assert installment * (length - 1) + last == total


def test_an_even_split_has_equal_installments(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(collectible_amount=D("600.00"))])
    offer(warehouse, settings)
    assert [row[1:4] for row in offers(warehouse) if row[0] == "installment_plan"] == [
        (3, D("200.00"), D("200.00")),
        (6, D("100.00"), D("100.00")),
        (12, D("50.00"), D("50.00")),
    ]


@pytest.mark.parametrize(
    ("days_past_due", "percent"),
    [
        pytest.param(59, None, id="59 days: no tier yet"),
        pytest.param(60, D("90.00"), id="60 days: first tier"),
        pytest.param(119, D("90.00"), id="119 days"),
        pytest.param(120, D("80.00"), id="120 days: second tier"),
        pytest.param(179, D("80.00"), id="179 days"),
        pytest.param(180, D("70.00"), id="180 days: highest tier"),
        pytest.param(900, D("70.00"), id="900 days"),
    ],
)
def test_the_settlement_tier_is_the_highest_one_met(
    warehouse, settings, days_past_due: int, percent: Decimal | None
) -> None:
    on_day(warehouse, AS_OF, [an_account(days_past_oldest_collectible_due=days_past_due)])
    offer(warehouse, settings)
    settlements = [row for row in offers(warehouse) if row[0] == "settlement"]
    assert [row[5] for row in settlements] == ([percent] if percent else [])


@pytest.mark.parametrize(
    ("balance", "amount", "needs_approval"),
    [
        pytest.param("100.05", "90.05", False, id="90.045 rounds half up"),
        pytest.param("100.04", "90.04", False, id="90.036 rounds to the nearest cent"),
        pytest.param("10000.00", "9000.00", False, id="forgives exactly approval_above"),
        pytest.param("10000.02", "9000.02", False, id="9000.018 rounds up: forgives 1000.00"),
        pytest.param("10000.12", "9000.11", True, id="forgives 1000.01: needs approval"),
    ],
)
def test_settlement_amount_and_approval(
    warehouse, settings, balance: str, amount: str, needs_approval: bool
) -> None:
    on_day(warehouse, AS_OF, [an_account(collectible_amount=D(balance))])
    outcome = offer(warehouse, settings)
    [settlement] = [row for row in offers(warehouse) if row[0] == "settlement"]
    assert settlement[4:] == (D(amount), D("90.00"), needs_approval)
    assert outcome.requiring_approval == int(needs_approval)


def test_an_offer_row_carries_its_key_balance_stage_and_expiry(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(segment="enterprise", collectible_amount=D("1500.00"))])
    offer(warehouse, settings)
    rows = warehouse.execute(
        "select offer_id, customer_id, segment, currency, offer_date, balance_at_offer, "
        "expires_on, stage, run_id, created_at from ops.offers"
    ).fetchall()
    assert rows == [
        (
            offer_id("A1", AS_OF, "installment_plan", 3),
            "C1",
            "enterprise",
            "USD",
            AS_OF,
            D("1500.00"),
            day(30),  # no settlement policy: plans expire after 30 days
            "final_notice",
            "run-1",
            NOW,
        )
    ]
    assert len(offer_id("A1", AS_OF, "settlement", None)) == 32


def test_plans_expire_with_the_segment_s_settlement_offers(warehouse, settings) -> None:
    short = DEFAULT_POLICY.model_copy(
        update={"settlement": DEFAULT_POLICY.settlement.model_copy(update={"valid_days": 10})}
    )
    custom = settings.model_copy(
        update={"negotiation": NegotiationSettings(offers={"default": short})}
    )
    on_day(warehouse, AS_OF, [an_account()])
    offer(warehouse, custom)
    assert warehouse.execute("select distinct expires_on from ops.offers").fetchall() == [
        (day(10),)
    ]


# --- offers stand ---------------------------------------------------------------------------


def test_offers_stand_until_a_payment_changes_the_balance(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account()])
    first = offer(warehouse, settings)
    assert (first.accounts_offered, first.reused) == (1, 0)
    made = current_offers(warehouse, AS_OF, ["A1"])["A1"]
    # the next day: the same balance, a day older; nothing new, the same offers shown
    on_day(warehouse, day(1), [an_account(days_past_oldest_collectible_due=71)])
    second = offer(warehouse, settings, day(1))
    assert (second.accounts_offered, second.plan_offers, second.reused) == (0, 0, 1)
    assert current_offers(warehouse, day(1), ["A1"]) == {"A1": made}
    assert len(offers(warehouse)) == 4
    # a payment: new offers on the new balance that day; the old ones no longer shown
    on_day(warehouse, day(2), [an_account(collectible_amount=D("450.00"))])
    third = offer(warehouse, settings, day(2))
    assert (third.accounts_offered, third.plan_offers, third.reused) == (1, 3, 0)
    terms = current_offers(warehouse, day(2), ["A1"])["A1"]
    assert terms.balance == D("450.00") and terms.expires_on == day(32)
    assert [plan.installment_amount for plan in terms.plans] == [D("150.00"), D("75.00"),
                                                                  D("37.50")]  # fmt: skip
    assert len(offers(warehouse)) == 8  # the earlier offers stay on record


def test_expired_offers_are_made_again(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account()])
    offer(warehouse, settings)
    on_day(warehouse, day(30), [an_account()])
    assert offer(warehouse, settings, day(30)).reused == 1  # the last day they stand
    on_day(warehouse, day(31), [an_account()])
    again = offer(warehouse, settings, day(31))
    assert (again.accounts_offered, again.reused) == (1, 0)
    assert current_offers(warehouse, day(31), ["A1"])["A1"].expires_on == day(61)


def test_offers_are_not_shown_once_the_balance_changed(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account()])
    offer(warehouse, settings)
    # paid down under every minimum: no new offers, and the old ones do not stand
    on_day(warehouse, day(1), [an_account(collectible_amount=D("40.00"))])
    assert offer(warehouse, settings, day(1)).accounts_offered == 0
    assert current_offers(warehouse, day(1), ["A1"]) == {}
    assert current_offers(warehouse, AS_OF, ["A1"])["A1"].balance == D("600.00")


def test_a_rerun_of_the_day_makes_nothing_new(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(), an_account(account_id="A2", customer_id="C2")])
    offer(warehouse, settings)
    before = warehouse.execute("select * from ops.offers order by offer_id").fetchall()
    again = make_offers(warehouse, settings, AS_OF, "run-2", now=NOW + dt.timedelta(hours=1))
    assert (again.accounts_offered, again.plan_offers, again.settlement_offers) == (0, 0, 0)
    assert (again.already_made, again.reused) == (2, 0)
    assert warehouse.execute("select * from ops.offers order by offer_id").fetchall() == before


def test_a_rerun_on_other_facts_replaces_the_day_s_offers(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(), an_account(account_id="A2", customer_id="C2")])
    offer(warehouse, settings)
    # a late batch: A1 paid (balance 90.00: settlement only), A2 is now held
    on_day(warehouse, AS_OF, [an_account(collectible_amount=D("90.00")),
                              an_account(account_id="A2", customer_id="C2", is_held=True)])  # fmt: skip
    again = make_offers(warehouse, settings, AS_OF, "run-2", now=NOW)
    assert (again.accounts_offered, again.settlement_offers, again.plan_offers) == (1, 1, 0)
    assert offers(warehouse) == [("settlement", None, None, None, D("81.00"), D("90.00"), False)]
    assert offers(warehouse, "A2") == []
    assert warehouse.execute("select distinct run_id from ops.offers").fetchall() == [("run-2",)]


def test_a_run_for_a_past_date_judges_by_the_offers_made_before_it(warehouse, settings) -> None:
    on_day(warehouse, day(10), [an_account()])
    offer(warehouse, settings, day(10))
    # the run for day 5 comes later: it does not see day 10's offers, it makes its own
    on_day(warehouse, day(5), [an_account()])
    past = offer(warehouse, settings, day(5))
    assert (past.accounts_offered, past.reused) == (1, 0)
    assert current_offers(warehouse, day(5), ["A1"])["A1"].expires_on == day(35)
    assert current_offers(warehouse, day(10), ["A1"])["A1"].expires_on == day(40)


def test_a_dry_run_counts_and_writes_nothing(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account(), an_account(account_id="A2", customer_id="C2")])
    dry = offer(warehouse, settings, dry_run=True)
    tables = (
        "select count(*) from duckdb_tables() where schema_name = 'ops' and table_name = 'offers'"
    )
    assert warehouse.execute(tables).fetchall() == [(0,)]  # not even the table
    temporary = "select table_name from duckdb_tables() where temporary"
    assert warehouse.execute(temporary).fetchall() == []  # its working tables are gone
    real = offer(warehouse, settings)
    assert dataclasses.replace(dry, dry_run=False) == real
    assert "would offer 2 accounts (6 plans, 2 settlements" in str(dry)
    rows = warehouse.execute("select * from ops.offers").fetchall()
    # on the next day, with the table there: still nothing written
    on_day(warehouse, day(1), [an_account(), an_account(account_id="A2", customer_id="C2",
                                                         collectible_amount=D("300.00"))])  # fmt: skip
    tomorrow = offer(warehouse, settings, day(1), dry_run=True)
    assert (tomorrow.reused, tomorrow.accounts_offered) == (1, 1)
    assert warehouse.execute("select * from ops.offers").fetchall() == rows


def test_a_scoped_run_offers_only_within_its_scope(warehouse, settings) -> None:
    accounts = [an_account(), an_account(account_id="A2", customer_id="C2", segment="campus")]
    on_day(warehouse, AS_OF, accounts)
    outcome = offer(warehouse, settings, scope=ContactScope(account_ids=("A2",)))
    assert outcome.accounts_offered == 1 and offers(warehouse) == []
    assert len(offers(warehouse, "A2")) == 4
    # a run scoped to the other segment leaves A2's offers of the day alone
    offer(warehouse, settings, scope=ContactScope(segment="residential"))
    assert len(offers(warehouse)) == 4 and len(offers(warehouse, "A2")) == 4


# --- talking points and the contacts' offers, by ledger key -------------------------------


def test_talking_points_say_every_term_and_only_for_stages_that_use_offers(
    warehouse, settings
) -> None:
    from tests.contact_fixtures import contacted

    tiers = [SettlementTier(min_days_past_due=60, percent=D("87.50"))]
    half = DEFAULT_POLICY.model_copy(
        update={"settlement": DEFAULT_POLICY.settlement.model_copy(update={"tiers": tiers})}
    )
    custom = settings.model_copy(
        update={"negotiation": NegotiationSettings(offers={"default": DEFAULT_POLICY,
                                                           "campus": half})}
    )  # fmt: skip
    on_day(warehouse, AS_OF, [
        # 120 days past due: the 80 % tier, which forgives 1200.00: it needs approval
        an_account(collectible_amount=D("6000.01"), days_past_oldest_collectible_due=130),
        an_account(account_id="A2", customer_id="C2", segment="campus",
                   collectible_amount=D("200.00")),
        an_account(account_id="A3", customer_id="C3", collectible_amount=D("40.00")),  # none
    ])  # fmt: skip
    offer(warehouse, custom)
    warehouse.execute("delete from ops.action_ledger")
    call = contacted(warehouse, stage="manager_review", day=AS_OF, status="planned")
    review = contacted(warehouse, stage="write_off_recommendation", day=AS_OF, status="planned")
    campus = contacted(warehouse, account_id="A2", customer_id="C2", stage="manager_review",
                       day=AS_OF, status="planned")  # fmt: skip
    warehouse.execute("update ops.action_ledger set segment = 'campus' where account_id = 'A2'")
    nothing = contacted(warehouse, account_id="A3", customer_id="C3", stage="manager_review",
                        day=AS_OF, status="planned")  # fmt: skip
    keys = [call, review, campus, nothing]
    points = talking_points(warehouse, custom, AS_OF, keys)
    assert points == {
        call: "Plan: 3 x 2000.01 USD (last 1999.99), 6 x 1000.01 USD (last 999.96), "
        "12 x 500.01 USD (last 499.90); settlement 4800.01 USD (80%) until 2026-04-30 "
        "(needs approval)",
        campus: "Plan: 3 x 66.67 USD (last 66.66), 6 x 33.34 USD (last 33.30); "
        "settlement 175.00 USD (87.5%) until 2026-04-30",
    }
    terms = offers_for_actions(warehouse, custom, AS_OF, keys)
    assert set(terms) == {call, campus}
    assert terms[campus].settlement == SettlementOption(D("175.00"), D("87.5"), day(30), False)
    assert terms[call].settlement.requires_approval
    assert terms[campus].plans[1] == PlanOption(6, D("33.34"), D("33.30"), D("200.00"))


# --- bad input ------------------------------------------------------------------------------


def test_a_percent_with_three_decimals_is_refused_before_anything_is_written(
    warehouse, settings
) -> None:
    tiers = [SettlementTier(min_days_past_due=60, percent=D("87.125"))]
    odd = DEFAULT_POLICY.model_copy(
        update={"settlement": DEFAULT_POLICY.settlement.model_copy(update={"tiers": tiers})}
    )
    custom = settings.model_copy(
        update={"negotiation": NegotiationSettings(offers={"default": odd})}
    )
    on_day(warehouse, AS_OF, [an_account()])
    offer(warehouse, settings)
    before = warehouse.execute("select * from ops.offers order by all").fetchall()
    # a payment the next day would make new offers: the bad policy makes none, removes none
    on_day(warehouse, day(1), [an_account(collectible_amount=D("500.00"))])
    with pytest.raises(ValueError, match=r"default\.settlement\.tiers\[0\]\.percent is 87\.125; "
                                         r"use at most two decimals"):  # fmt: skip
        offer(warehouse, custom, day(1))
    assert warehouse.execute("select * from ops.offers order by all").fetchall() == before
    temporary = "select table_name from duckdb_tables() where temporary"
    assert warehouse.execute(temporary).fetchall() == []


def test_marts_of_another_day_make_no_offer(warehouse, settings) -> None:
    on_day(warehouse, AS_OF, [an_account()])
    record_build(warehouse, day(-1))
    with pytest.raises(MartsNotForDate, match="no offer was made"):
        offer(warehouse, settings)
    assert warehouse.execute(
        "select count(*) from duckdb_tables() where table_name = 'offers'"
    ).fetchall() == [(0,)]


# --- where offers show: the templates --------------------------------------------------------


def offer_terms(context, *, needs_approval: bool = False, plans: bool = True) -> OfferTerms:
    """The offers of the golden context (balance 185.50, 31 days past due on 2026-03-16)."""
    expires = context.as_of + dt.timedelta(days=30)
    balance = context.collectible_amount
    return OfferTerms(
        balance=balance,
        expires_on=expires,
        plans=(
            (
                PlanOption(3, D("61.84"), D("61.82"), balance),
                PlanOption(6, D("30.92"), D("30.90"), balance),
            )
            if plans
            else ()
        ),
        settlement=SettlementOption(D("166.95"), D("90"), expires, needs_approval),
    )


@pytest.mark.parametrize("language", ["en", "es"])
def test_reminder_2_with_offers_matches_its_golden_files(language: str, update_golden) -> None:
    from tests.test_templates import a_context, check_golden, email_golden

    base = a_context("reminder_2", language)
    text, html = email_golden(dataclasses.replace(base, offer=offer_terms(base)))
    check_golden(f"reminder_2__{language}__offers.txt", text, update_golden)
    check_golden(f"reminder_2__{language}__offers.html", html, update_golden)
    for body in (text, html):
        for amount in ("$61.84", "$61.82", "$30.92", "$30.90", "$185.50", "$166.95", "90%"):
            assert amount in body
        assert {"en": "April 15, 2026", "es": "15 de abril de 2026"}[language] in body


def test_a_settlement_that_needs_approval_is_no_firm_offer() -> None:
    from tests.test_templates import a_context

    base = a_context("reminder_2")
    for terms, firm_words in (
        (offer_terms(base, needs_approval=True), "To choose an option"),
        (offer_terms(base, needs_approval=True, plans=False), "may be available. Call us"),
    ):
        rendered = render_email(dataclasses.replace(base, offer=terms))
        for body in (rendered.text, rendered.html):
            assert "$166.95" not in body and "90%" not in body  # no amount promised
            assert "may" in body and "settlement for less than your balance" in body
            assert firm_words in body


def test_offers_keep_the_servicemember_and_third_party_wording() -> None:
    from tests.test_templates import (
        DISCLOSURE,
        PLACEMENT_WORDS,
        a_context,
        a_third_party_context,
        rendered_bodies,
    )

    for template in ("reminder_2", "final_notice", "pre_placement_notice"):
        soldier = a_context(template, "es", servicemember=True)
        for body in rendered_bodies(dataclasses.replace(soldier, offer=offer_terms(soldier))):
            assert PLACEMENT_WORDS["es"] not in body and "cobrador de deudas" not in body
            assert "$61.84" in body and "$166.95" in body
    collector = a_third_party_context("reminder_2")
    for body in rendered_bodies(dataclasses.replace(collector, offer=offer_terms(collector))):
        assert DISCLOSURE["en"] in body and "www.cfpb.gov/debt-collection" in body
        assert "do not change your right to dispute the debt" in body


@pytest.mark.parametrize("template", ["final_notice", "pre_placement_notice"])
def test_a_letter_shows_the_offers_and_one_without_has_no_offer_key(template: str) -> None:
    from flows.lib.letters import letter_data
    from tests.test_templates import a_context, letter_text

    base = a_context(template)
    assert "offer" not in letter_data(base)
    text = letter_text(dataclasses.replace(base, offer=offer_terms(base)))
    assert (
        "A payment plan of 3 monthly payments of $61.84 (the last one $61.82), $185.50 in total"
        in text
    )
    assert "A settlement: pay $166.95 (90% of your balance of $185.50) by April 15, 2026" in text


# --- where offers show: the contacts and the phone queue, on a warehouse dbt built ------------

# account -> (invoice amount, days past due on AS_OF), each there for one path
BUILT = {
    "R2": ("600.00", 20),  # reminder_2 email: plans, no settlement tier yet
    "CALL": ("900.00", 70),  # final notice letter, and a call queued: plans and a settlement
    "BROKE": ("300.00", 70),  # broke a promise 35 days ago: settlement only; a manager review
}


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The three accounts, built by dbt for AS_OF, offered and planned."""
    from flows.lib.dbt_build import build_warehouse
    from flows.lib.loader import load_batch
    from flows.lib.planner import build_plan, commit_plan
    from tests.builders import row, write_batch

    root = tmp_path_factory.mktemp("built")
    batch = write_batch(
        root / "batch",
        customers=[
            row("customers", customer_id=f"C-{account}", full_name=f"Customer {account}",
                email=f"{account.lower()}@example.com", phone="+15125550100")
            for account in BUILT
        ],
        accounts=[row("accounts", account_id=account, customer_id=f"C-{account}")
                  for account in BUILT],
        invoices=[
            row("invoices", invoice_id=f"{account}-I1", account_id=account,
                invoice_number=f"N-{account}", issue_date="2025-12-01",
                due_date=day(-days).isoformat(), amount=amount)
            for account, (amount, days) in BUILT.items()
        ],
        payment_plans=[
            row("payment_plans", plan_id="PL-BROKE", account_id="BROKE", due_date=day(-40).isoformat(),
                created_date=day(-50).isoformat(), amount="100.00")
        ],
    )  # fmt: skip
    path = root / "warehouse" / "recoup.duckdb"
    connection = open_warehouse(path)
    assert load_batch(connection, batch).rows_quarantined == 0
    connection.close()
    build_warehouse(path, root / "state", AS_OF, variables=settings.dbt_vars())
    connection = open_warehouse(path)
    record_build(connection, AS_OF)
    commit_plan(connection, build_plan(connection, settings.contact, AS_OF, "run-1"))
    yield connection
    connection.close()


@pytest.mark.slow  # the module's one dbt build
def test_offers_on_the_built_marts(built, settings) -> None:
    outcome = offer(built, settings)
    assert (outcome.accounts_offered, outcome.plan_offers, outcome.settlement_offers) == (3, 6, 2)
    assert offers(built, "R2") == [
        ("installment_plan", 3, D("200.00"), D("200.00"), D("600.00"), None, False),
        ("installment_plan", 6, D("100.00"), D("100.00"), D("600.00"), None, False),
        ("installment_plan", 12, D("50.00"), D("50.00"), D("600.00"), None, False),
    ]
    assert offers(built, "BROKE") == [  # the broken promise: no plan
        ("settlement", None, None, None, D("270.00"), D("90.00"), False)
    ]
    stages = built.execute("select account_id, stage from ops.offers group by all order by 1")
    assert stages.fetchall() == [("BROKE", "final_notice"), ("CALL", "final_notice"),
                                 ("R2", "reminder_2")]  # fmt: skip


@pytest.mark.slow  # the module's one dbt build
def test_the_reminder_of_an_offer_stage_carries_the_offers(built, settings) -> None:
    from flows.lib.contact_data import load_planned_contacts
    from flows.lib.letters import letter_data

    offer(built, settings)
    keys = [key for (key,) in built.execute(
        "select action_key from ops.action_ledger where status = 'planned' order by account_id"
    ).fetchall()]  # fmt: skip
    contacts, _ = load_planned_contacts(built, settings, keys, AS_OF)
    by_account = {contact.account_id: contact for contact in contacts}
    assert {account: contact.template for account, contact in by_account.items()} == {
        "BROKE": "final_notice", "CALL": "final_notice", "R2": "reminder_2",
    }  # fmt: skip
    email = render_email(by_account["R2"].context)
    assert "3 monthly payments of $200.00, $600.00 in total" in email.text
    assert "12 monthly payments of $50.00, $600.00 in total" in email.text
    assert "until April 30, 2026" in email.text and "settlement" not in email.text
    letter = letter_data(by_account["CALL"].context)
    assert letter["offer"]["settlement"] == {
        "amount": "$810.00", "percent": "90", "requires_approval": False,
    }  # fmt: skip
    assert [plan["installment_amount"] for plan in letter["offer"]["plans"]] == [
        "$300.00", "$150.00", "$75.00",
    ]  # fmt: skip
    # a policy whose stages leave reminder_2 out: its reminder carries no offers
    only_later = DEFAULT_POLICY.model_copy(update={"stages": ["final_notice"]})
    narrow = settings.model_copy(
        update={"negotiation": NegotiationSettings(offers={"default": only_later})}
    )
    contacts, _ = load_planned_contacts(built, narrow, keys, AS_OF)
    assert {c.account_id: c.context.offer is not None for c in contacts} == {
        "BROKE": True, "CALL": True, "R2": False,
    }  # fmt: skip


@pytest.mark.slow  # the module's one dbt build
def test_the_phone_queue_lists_the_talking_points(built, settings) -> None:
    from flows.lib.work_queue import QUEUE_HEADER, queue_planned_work
    from tests.contact_fixtures import contacted

    offer(built, settings)
    contacted(built, account_id="CALL", customer_id="C-CALL", stage="manager_review", day=AS_OF,
              status="planned")  # fmt: skip
    contacted(built, account_id="BROKE", customer_id="C-BROKE", stage="write_off_recommendation",
              day=AS_OF, status="planned")  # fmt: skip
    outcome = queue_planned_work(built, settings, as_of=AS_OF, run_id="run-1", now=NOW)
    assert outcome.total("sent") == 2
    text = Path(outcome.files[0]).read_text(encoding="utf-8")
    items = {item["account_id"]: item for item in csv.DictReader(io.StringIO(text))}
    assert list(QUEUE_HEADER)[-1] == "talking_points"
    assert items["CALL"]["talking_points"] == (
        "Plan: 3 x 300.00 USD, 6 x 150.00 USD, 12 x 75.00 USD; settlement 810.00 USD (90%) "
        "until 2026-04-30"
    )
    assert items["BROKE"]["talking_points"] == ""  # a manager review is no offer stage
    points = talking_points(built, settings, AS_OF, [
        key for (key,) in built.execute(
            "select action_key from ops.action_ledger where account_id = 'BROKE'"
        ).fetchall()
    ])  # fmt: skip
    assert list(points.values()) == ["Settlement 270.00 USD (90%) until 2026-04-30"]
