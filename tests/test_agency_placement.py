"""Agency placement and recall (flows/lib/agency_placement.py) on tiny marts: who is placed,
with which agency, exactly once, what comes back and why, and the files the agencies get."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from collections import Counter
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.agency_placement import (
    HOLD_RECALL_REASONS,
    PLACEMENT_HEADER,
    RECALL_HEADER,
    PlacementOutcome,
    agency_file,
    choose_agency,
    place_and_recall,
)
from flows.lib.config import CommissionTier, Settings
from flows.lib.contact_data import MartsNotForDate
from flows.lib.placements import placement_id
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from tests.agency_fixtures import (
    AS_OF,
    a_customer,
    a_dispute,
    an_account,
    an_agency,
    held,
    make_agency_marts,
    paid,
    settings_with,
)
from tests.contact_fixtures import a_raw_fact

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
NOW = dt.datetime(2026, 3, 31, 7, 0, tzinfo=dt.UTC)


def run(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    as_of: dt.date = AS_OF,
    scope: ContactScope = ALL_ACCOUNTS,
    run_id: str = "run-1",
) -> PlacementOutcome:
    return place_and_recall(connection, settings, as_of=as_of, run_id=run_id, now=NOW, scope=scope)


def placements(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(account, agency, status, recall reason) of every placement, oldest first."""
    return connection.execute(
        "select account_id, agency_id, status, recall_reason from ops.placements "
        "order by placed_date, account_id, agency_id"
    ).fetchall()


def file_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


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


# --- who is placed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "account", "customer", "placed"),
    [
        pytest.param({"segments": ["residential"]}, {}, {}, True, id="segment listed"),
        pytest.param({"segments": ["commercial"]}, {}, {}, False, id="segment not listed"),
        pytest.param({"currencies": ["USD"]}, {}, {}, True, id="currency listed"),
        pytest.param({"currencies": ["CAD"]}, {}, {}, False, id="currency not listed"),
        pytest.param({"states": ["TX"]}, {}, {}, True, id="state licensed"),
        pytest.param({"states": ["tx"]}, {}, {}, True, id="state licensed, any case"),
        pytest.param({"states": ["CA", "NY"]}, {}, {}, False, id="state not licensed"),
        pytest.param({"states": ["TX"]}, {}, {"state": None}, False, id="no state on file"),
        pytest.param({}, {}, {"state": None}, True, id="no state on file, no state rule"),
        pytest.param({"min_balance": Decimal("400.00")}, {}, {}, True, id="balance at minimum"),
        pytest.param({"min_balance": Decimal("400.01")}, {}, {}, False, id="balance below minimum"),
        pytest.param({"share": 0}, {}, {}, False, id="agency paused (share 0)"),
    ],
)
def test_an_agency_takes_what_its_rules_allow(
    warehouse: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    rules: dict[str, object],
    account: dict[str, object],
    customer: dict[str, object],
    placed: bool,
) -> None:
    make_agency_marts(warehouse, [an_account(**account)], customers=[a_customer(**customer)])
    outcome = run(warehouse, settings_with(tmp_path, an_agency("alpha", **rules)))
    if placed:
        assert outcome.placed == {"alpha": 1}
        assert outcome.not_placed == {}
        assert placements(warehouse) == [("A1", "alpha", "open", None)]
    else:
        assert outcome.placed == {}
        assert outcome.not_placed == {"no_agency_takes_it": 1}
        assert placements(warehouse) == []
        assert outcome.files == []


def test_the_rules_pick_the_agency_before_the_split(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # every account in CAD can only go to the one agency that takes CAD, whatever the shares
    make_agency_marts(
        warehouse,
        [an_account(f"A{n}", currency="CAD" if n % 2 else "USD") for n in range(20)],
    )
    settings = settings_with(
        tmp_path,
        an_agency("usd-only", currencies=["USD"], share=100),
        an_agency("cad-only", currencies=["CAD"], share=1),
    )
    outcome = run(warehouse, settings)
    assert outcome.placed == {"cad-only": 10, "usd-only": 10}
    by_currency = warehouse.execute(
        "select currency, list(distinct agency_id) from ops.placements group by 1 order by 1"
    ).fetchall()
    assert by_currency == [("CAD", ["cad-only"]), ("USD", ["usd-only"])]


@pytest.mark.parametrize(
    "account",
    [
        *[pytest.param(held(reason), id=f"held: {reason}") for reason in HOLD_RECALL_REASONS],
        pytest.param(held("payment_plan"), id="held: payment plan"),
        pytest.param(held("manual: counsel review"), id="held: manual hold"),
        pytest.param(
            held(
                "dispute",
                disputed_amount=Decimal("400.00"),
                collectible_amount=Decimal("0.00"),
            ),
            id="held: whole balance disputed",
        ),
        pytest.param(held("bankruptcy, placed_with_agency"), id="held: bankruptcy and placed"),
        pytest.param(held(None), id="held without a reason given"),
        pytest.param(
            an_account(stage="pre_placement", stage_channel="letter"), id="not in agency stage"
        ),
        pytest.param(paid(stage_channel="agency"), id="nothing owed"),
    ],
)
def test_an_account_held_or_not_due_is_never_placed(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, account: dict[str, object]
) -> None:
    make_agency_marts(warehouse, [account])
    outcome = run(warehouse, settings_with(tmp_path, an_agency("alpha")))
    assert outcome == PlacementOutcome()
    assert placements(warehouse) == []
    assert not (tmp_path / "out" / "agencies").exists()


def test_an_account_with_an_open_dispute_is_not_placed(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # part of the balance is disputed: the account is not held and still has a collectible
    # balance, but it would be recalled as disputed on the next run
    make_agency_marts(
        warehouse,
        [an_account(disputed_amount=Decimal("50.00"), collectible_amount=Decimal("350.00"))],
        disputes=[a_dispute()],
    )
    outcome = run(warehouse, settings_with(tmp_path, an_agency("alpha")))
    assert outcome.not_placed == {"open_dispute": 1}
    assert placements(warehouse) == []


# --- which agency ----------------------------------------------------------------------------


def test_the_share_split_follows_the_shares_and_is_the_same_every_time(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    accounts = [an_account(f"ACC-{n:04d}") for n in range(300)]
    make_agency_marts(warehouse, accounts)
    champion = an_agency("champion", share=2)
    challenger = an_agency("challenger", share=1)
    outcome = run(warehouse, settings_with(tmp_path, champion, challenger))
    assert sum(outcome.placed.values()) == 300
    assert 170 <= outcome.placed["champion"] <= 230  # two thirds of 300 is 200
    assigned = dict(
        warehouse.execute("select account_id, agency_id from ops.placements").fetchall()
    )
    # the config's order plays no part: the same account goes to the same agency
    for account in accounts:
        account_id = str(account["account_id"])
        assert choose_agency(account_id, [challenger, champion], "share").id == assigned[account_id]
        assert choose_agency(account_id, [champion, challenger], "share").id == assigned[account_id]


def test_round_robin_spreads_evenly_whatever_the_shares(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    make_agency_marts(warehouse, [an_account(f"ACC-{n:04d}") for n in range(300)])
    settings = settings_with(
        tmp_path,
        an_agency("first", share=5),
        an_agency("second", share=1),
        an_agency("third", share=1),
        split="round_robin",
    )
    outcome = run(warehouse, settings)
    assert set(outcome.placed) == {"first", "second", "third"}
    assert all(75 <= count <= 125 for count in outcome.placed.values()), outcome.placed


def test_choose_agency_depends_only_on_the_account_and_the_agencies_that_take_it() -> None:
    alpha, beta, paused = an_agency("alpha"), an_agency("beta", share=3), an_agency("off", share=0)
    for split in ("share", "round_robin"):
        picks = Counter(choose_agency(f"A{n}", [alpha, beta, paused], split).id for n in range(200))
        assert set(picks) == {"alpha", "beta"}, "a paused agency takes no new placement"
        assert all(
            choose_agency(f"A{n}", [beta, alpha], split)
            == choose_agency(f"A{n}", [alpha, beta], split)
            for n in range(200)
        )
    assert choose_agency("A1", [], "share") is None
    assert choose_agency("A1", [paused], "round_robin") is None


# --- exactly once ----------------------------------------------------------------------------


def test_a_rerun_of_the_day_places_nothing_new_and_keeps_the_file_whole(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    make_agency_marts(warehouse, [an_account("A1"), an_account("A2")])
    settings = settings_with(tmp_path, an_agency("alpha"))
    first = run(warehouse, settings, run_id="run-1")
    path = agency_file(tmp_path / "out" / "agencies", "alpha", AS_OF, "placements")
    before = path.read_bytes()
    assert first.placed == {"alpha": 2}
    assert first.files == [str(path)]

    again = run(warehouse, settings, run_id="run-2")
    assert again.placed == {}
    assert again.not_placed == {}, "an account placed today is no candidate"
    assert again.files == [str(path)]
    assert path.read_bytes() == before
    assert len(path.read_text().splitlines()) == 3  # header and two placements
    assert warehouse.execute(
        "select count(*), count(distinct placed_run_id) from ops.placements"
    ).fetchall() == [(2, 1)]
    assert warehouse.execute(
        "select event, count(*) from ops.placement_log group by 1"
    ).fetchall() == [("placed", 2)]


def test_an_open_placement_is_never_placed_again_nor_with_another_agency(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings_with(tmp_path, an_agency("alpha")))
    # the next day the account still owes and, before dbt adds its placed_with_agency hold,
    # is not held; alpha is paused and beta would take every new account
    next_day = AS_OF + dt.timedelta(days=1)
    make_agency_marts(warehouse, [an_account()], as_of=next_day)
    settings = settings_with(tmp_path, an_agency("alpha", share=0), an_agency("beta"))
    outcome = run(warehouse, settings, as_of=next_day)
    assert outcome == PlacementOutcome()
    assert placements(warehouse) == [("A1", "alpha", "open", None)]


# --- recall ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "disputes", "reason", "balance"),
    [
        pytest.param(paid(), [], "paid_in_full", "0.00", id="paid: no aging row"),
        pytest.param(
            an_account(total_open=Decimal("0.00"), collectible_amount=Decimal("0.00")),
            [],
            "paid_in_full",
            "0.00",
            id="paid: total open 0",
        ),
        pytest.param(
            held("dispute", disputed_amount=Decimal("400.00"), collectible_amount=Decimal("0")),
            [a_dispute(disputed_amount=Decimal("400.00"))],
            "nothing_collectible",
            "0.00",
            id="all of it disputed",
        ),
        pytest.param(
            an_account(disputed_amount=Decimal("50.00"), collectible_amount=Decimal("350.00")),
            [a_dispute()],
            "disputed",
            "350.00",
            id="part of it disputed",
        ),
        *[
            pytest.param(
                held(f"{reason}, placed_with_agency"), [], reason, "400.00", id=f"held: {reason}"
            )
            for reason in HOLD_RECALL_REASONS
        ],
        pytest.param(
            held("bankruptcy", has_aging=False), [], "bankruptcy", "0.00", id="bankrupt and paid"
        ),
        pytest.param(
            held("deceased, fraud"), [], "deceased", "400.00", id="two holds: the first named"
        ),
    ],
)
def test_a_placed_account_is_recalled_with_the_first_reason_that_applies(
    warehouse: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    account: dict[str, object],
    disputes: list[dict[str, object]],
    reason: str,
    balance: str,
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    next_day = AS_OF + dt.timedelta(days=3)
    make_agency_marts(warehouse, [account], as_of=next_day, disputes=disputes)

    outcome = run(warehouse, settings, as_of=next_day, run_id="run-2")

    recalls = agency_file(tmp_path / "out" / "agencies", "alpha", next_day, "recalls")
    assert outcome.recalled == {reason: 1}
    assert outcome.placed == {}
    assert outcome.files == [str(recalls)]
    assert warehouse.execute(
        "select status, recalled_date, recall_reason, recall_file from ops.placements"
    ).fetchall() == [("recalled", next_day, reason, str(recalls))]
    assert warehouse.execute(
        "select event, event_date, reason, run_id from ops.placement_log where event = 'recalled'"
    ).fetchall() == [("recalled", next_day, reason, "run-2")]
    assert file_rows(recalls) == [
        {
            "layout_version": "1",
            "placement_id": placement_id("A1", "alpha", AS_OF),
            "recalled_date": next_day.isoformat(),
            "agency_id": "alpha",
            "account_id": "A1",
            "reason": reason,
            "balance": balance,
            "recall_contact": "recalls@alpha.example",
        }
    ]


def test_a_placement_that_still_owes_and_is_only_held_as_placed_stays_open(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    next_day = AS_OF + dt.timedelta(days=1)
    make_agency_marts(warehouse, [held("placed_with_agency")], as_of=next_day)
    assert run(warehouse, settings, as_of=next_day) == PlacementOutcome()
    assert placements(warehouse) == [("A1", "alpha", "open", None)]


def test_a_rerun_for_an_earlier_date_leaves_a_later_placement_alone(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    # the week before, the account owed nothing (or the marts say so): it was not placed yet
    week_before = AS_OF - dt.timedelta(days=7)
    make_agency_marts(warehouse, [paid()], as_of=week_before)
    assert run(warehouse, settings, as_of=week_before) == PlacementOutcome()
    assert placements(warehouse) == [("A1", "alpha", "open", None)]


def test_the_end_of_the_placement_period_recalls_and_places_with_another_agency(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(
        tmp_path,
        an_agency("alpha", max_placement_days=30),
        an_agency("beta", max_placement_days=30),
    )
    make_agency_marts(warehouse, [an_account()])
    first = run(warehouse, settings)
    (first_agency,) = first.placed
    (other_agency,) = {"alpha", "beta"} - {first_agency}

    # still placed (and held for it) the day before the period ends: nothing happens
    day_29 = AS_OF + dt.timedelta(days=29)
    make_agency_marts(warehouse, [held("placed_with_agency")], as_of=day_29)
    assert run(warehouse, settings, as_of=day_29) == PlacementOutcome()

    day_30 = AS_OF + dt.timedelta(days=30)
    make_agency_marts(warehouse, [held("placed_with_agency")], as_of=day_30)
    outcome = run(warehouse, settings, as_of=day_30, run_id="run-30")
    assert outcome.recalled == {"placement_period_ended": 1}
    assert outcome.placed == {other_agency: 1}
    assert placements(warehouse) == [
        ("A1", first_agency, "recalled", "placement_period_ended"),
        ("A1", other_agency, "open", None),
    ]
    root = tmp_path / "out" / "agencies"
    assert sorted(outcome.files) == sorted(
        [
            str(agency_file(root, other_agency, day_30, "placements")),
            str(agency_file(root, first_agency, day_30, "recalls")),
        ]
    )

    # the second agency's period ends too: no agency that never had it is left
    day_60 = AS_OF + dt.timedelta(days=60)
    make_agency_marts(warehouse, [held("placed_with_agency")], as_of=day_60)
    outcome = run(warehouse, settings, as_of=day_60)
    assert outcome.recalled == {"placement_period_ended": 1}
    assert outcome.placed == {}
    assert outcome.not_placed == {"no_agency_takes_it": 1}


def test_an_account_recalled_for_another_reason_is_never_placed_again(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"), an_agency("beta"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    day_2, day_40 = AS_OF + dt.timedelta(days=2), AS_OF + dt.timedelta(days=40)
    make_agency_marts(warehouse, [paid()], as_of=day_2)
    assert run(warehouse, settings, as_of=day_2).recalled == {"paid_in_full": 1}
    # new debt, all the way up the ladder again
    make_agency_marts(warehouse, [an_account()], as_of=day_40)
    outcome = run(warehouse, settings, as_of=day_40)
    assert outcome.not_placed == {"placed_before": 1}
    assert len(placements(warehouse)) == 1


# --- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "placed"),
    [
        pytest.param(ContactScope(segment="residential"), ["A1"], id="one segment"),
        pytest.param(ContactScope(account_ids=("A2", "A9")), ["A2"], id="an account list"),
        pytest.param(ALL_ACCOUNTS, ["A1", "A2"], id="everyone"),
    ],
)
def test_a_scoped_run_places_only_within_its_scope(
    warehouse: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    scope: ContactScope,
    placed: list[str],
) -> None:
    make_agency_marts(warehouse, [an_account("A1"), an_account("A2", segment="commercial")])
    run(warehouse, settings_with(tmp_path, an_agency("alpha")), scope=scope)
    assert [row[0] for row in placements(warehouse)] == placed


def test_a_scoped_run_still_recalls_outside_its_scope(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account("A1")])
    run(warehouse, settings)
    next_day = AS_OF + dt.timedelta(days=1)
    make_agency_marts(warehouse, [paid("A1"), an_account("A2")], as_of=next_day)
    outcome = run(warehouse, settings, as_of=next_day, scope=ContactScope(account_ids=("A2",)))
    assert outcome.recalled == {"paid_in_full": 1}
    assert outcome.placed == {"alpha": 1}


# --- what a placement records ----------------------------------------------------------------


def test_a_placement_records_the_itemization_dates_and_commission(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    loaded = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)
    for payment_id, received, reverses in (
        ("P1", "2026-03-01", ""),  # the last payment that counts
        ("P2", "2026-03-10", ""),  # bounced: reversed by P3
        ("P3", "2026-03-12", "P2"),
        ("P4", "2026-04-02", ""),  # after the as-of date
    ):
        a_raw_fact(
            warehouse, "payments", loaded_at=loaded, payment_id=payment_id,
            received_date=received, reverses_payment_id=reverses,
        )  # fmt: skip
    make_agency_marts(warehouse, [an_account(max_days_past_due=200)])
    tiered = an_agency(
        "alpha", commission_tiers=[CommissionTier(min_days_past_due=180, rate=Decimal("0.35"))]
    )
    run(warehouse, settings_with(tmp_path, tiered), run_id="run-1")
    row = warehouse.execute(
        """
        select placement_id, customer_id, status, placed_date, placed_run_id, currency,
            placed_balance, principal, fees, interest, payments_since, credits_since,
            itemization_date, first_delinquency_date, last_payment_date, days_past_due,
            commission_rate, placement_file
        from ops.placements
        """
    ).fetchall()
    assert row == [
        (
            placement_id("A1", "alpha", AS_OF),
            "C1",
            "open",
            AS_OF,
            "run-1",
            "USD",
            Decimal("400.00"),
            Decimal("380.00"),
            Decimal("25.00"),
            Decimal("5.00"),
            Decimal("10.00"),
            Decimal("0.00"),
            dt.date(2026, 2, 1),
            dt.date(2026, 1, 25),  # the oldest open item 30 days past due (Metro 2 DOFD)
            dt.date(2026, 3, 1),
            200,
            Decimal("0.3500"),
            str(agency_file(tmp_path / "out" / "agencies", "alpha", AS_OF, "placements")),
        )
    ]


# --- files -----------------------------------------------------------------------------------


def golden_day(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> Settings:
    """Two placements with everything the layout shows: a second address line, a phone
    number, do_not_call, an email address on the suppression list (stored in lower case, on
    file with capitals), a last payment, and a name that is a spreadsheet formula."""
    warehouse.execute(
        "insert into ops.email_suppressions values ('ann@example.com', 'bounce', ?, null)", [NOW]
    )
    a_raw_fact(warehouse, "payments", loaded_at=NOW, payment_id="P1", received_date="2026-03-01")
    make_agency_marts(
        warehouse,
        [
            an_account("A1", contact_restrictions="do_not_call, do_not_email"),
            an_account(
                "A2",
                customer_id="C2",
                collectible_amount=Decimal("1234.56"),
                total_open=Decimal("1234.56"),
                amount_on_itemization_date=Decimal("1200.00"),
                interest_since=Decimal("4.56"),
                fees_since=Decimal("30.00"),
                payments_since=Decimal("0.00"),
                max_days_past_due=120,
            ),
        ],
        customers=[
            a_customer("C1", email="Ann@Example.com", address_line2="Apt 4"),
            a_customer(
                "C2",
                customer_type="business",
                full_name='=HYPERLINK("http://evil.example","click")',
                email="billing@bob.example",
                phone=None,
                city="El Paso",
                postal_code="79901",
                language="es",
            ),
        ],
    )
    return settings_with(tmp_path, an_agency("alpha"))


def test_the_placement_file_matches_its_golden_file(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, update_golden: bool
) -> None:
    settings = golden_day(warehouse, tmp_path)
    run(warehouse, settings)
    path = agency_file(tmp_path / "out" / "agencies", "alpha", AS_OF, "placements")
    text = path.read_text(encoding="utf-8")
    check_golden("agency_placements_v1.csv", text, update_golden)
    rows = file_rows(path)
    assert list(rows[0]) == list(PLACEMENT_HEADER)
    assert [row["account_id"] for row in rows] == ["A1", "A2"]
    assert rows[0]["do_not_call"] == "true" and rows[1]["do_not_call"] == "false"
    assert rows[0]["email_opted_out"] == "true" and rows[1]["email_opted_out"] == "false"
    assert rows[0]["original_creditor"] == settings.company.name


def test_a_formula_in_a_name_is_defused_in_the_placement_file(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    run(warehouse, golden_day(warehouse, tmp_path))
    path = agency_file(tmp_path / "out" / "agencies", "alpha", AS_OF, "placements")
    (formula,) = [row["full_name"] for row in file_rows(path) if row["account_id"] == "A2"]
    assert formula == '\'=HYPERLINK("http://evil.example","click")'


def test_the_recall_file_matches_its_golden_file(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, update_golden: bool
) -> None:
    settings = golden_day(warehouse, tmp_path)
    run(warehouse, settings)
    next_day = AS_OF + dt.timedelta(days=1)
    make_agency_marts(
        warehouse,
        [paid("A1"), held("bankruptcy, placed_with_agency", "A2", customer_id="C2")],
        as_of=next_day,
    )
    run(warehouse, settings, as_of=next_day)
    path = agency_file(tmp_path / "out" / "agencies", "alpha", next_day, "recalls")
    check_golden("agency_recalls_v1.csv", path.read_text(encoding="utf-8"), update_golden)
    assert list(file_rows(path)[0]) == list(RECALL_HEADER)


def test_a_placement_carries_the_dofd_the_bureaus_hold(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Metro 2: the agency's tradeline must carry the creditor's DOFD, which a partial
    payment (a younger oldest open item) must not move."""
    from flows.lib.bureau_records import ensure_bureau_schema

    ensure_bureau_schema(warehouse)
    warehouse.execute(
        "insert into ops.bureau_records (period, account_id, customer_id, "
        "identification_number, account_status, payment_history_profile, ecoa_code, "
        "current_balance, amount_past_due, highest_credit, original_charge_off_amount, "
        "date_of_first_delinquency, date_of_account_information, file_sha256, generated_at) "
        "values ('2026-02', 'A1', 'C1', 'ACMEUTIL01', '78', 'BBBBBBBBBBBBBBBBBBBBBBBB', '1', "
        "400, 400, 400, 0, '2025-11-30', '2026-02-28', 'x', now())"
    )
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    assert warehouse.execute(
        "select first_delinquency_date from ops.placements where account_id = 'A1'"
    ).fetchall() == [(dt.date(2025, 11, 30),)]


def test_the_files_are_readable_by_the_owner_only(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = golden_day(warehouse, tmp_path)
    placed = run(warehouse, settings)
    next_day = AS_OF + dt.timedelta(days=1)
    make_agency_marts(warehouse, [paid("A1"), paid("A2", customer_id="C2")], as_of=next_day)
    recalled = run(warehouse, settings, as_of=next_day)
    files = [*placed.files, *recalled.files]
    assert len(files) == 2
    assert all(stat.S_IMODE(Path(each).stat().st_mode) == 0o600 for each in files)


def test_marts_of_another_day_are_refused_before_anything_changes(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account()])
    run(warehouse, settings)
    # a run for the next day on marts still built for today: A1 would look paid
    with pytest.raises(MartsNotForDate, match="Build the date first"):
        run(warehouse, settings, as_of=AS_OF + dt.timedelta(days=1))
    assert placements(warehouse) == [("A1", "alpha", "open", None)]
