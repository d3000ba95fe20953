"""Legal referral (flows/lib/legal_referral.py) on one warehouse built by dbt for one day: the
statute of limitations, who is referred and who never is (and why), exactly once across a dry
run, a scoped run, a rerun and the next day, the hold that stops recoup's own contacts, the
withdrawal of a paid account, and the four files the attorneys get.

One batch, one dbt build for D. The day before is given as the stage history the previous
run left (the incremental mart's own rows), so an account recalled from its agency yesterday
climbs into legal_referral today, and accounts referred earlier are in ops.legal_referrals."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml

from flows.lib.config import Settings, load_settings
from flows.lib.contact_data import MartsNotForDate
from flows.lib.dbt_build import DBT_PROJECT, build_warehouse
from flows.lib.gates import record_build
from flows.lib.legal_referral import (
    HISTORY_COLUMNS,
    ITEM_COLUMNS,
    REFERRAL_COLUMNS,
    WITHDRAWAL_COLUMNS,
    LegalOutcome,
    legal_folder,
    refer_to_legal,
    referral_id,
)
from flows.lib.loader import load_batch
from flows.lib.planner import ContactScope, build_plan
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch
from tests.contact_fixtures import contacted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = dt.date(2027, 2, 28)  # a clock started on Feb 29, 2024 runs out today in New York
NEXT = D + dt.timedelta(days=1)
PAID_IN_FULL_DEBT = "2026-06-01"  # 272 days before D: past write-off (180), so a step stage
OLD_DEBT = "2023-06-01"  # three years and more before D


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


# account: (customer, its invoice's due date, amount, yesterday's stage, entered days ago)
ACCOUNTS = {
    # recalled from its agency yesterday (placement period over): steps into legal_referral
    "REFER": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "agency_placement", 200),
    "NY-BARRED": ("C-NY", OLD_DEBT, "500.00", "agency_placement", 200),  # 3 years: barred
    "OH-OPEN": ("C-OH", OLD_DEBT, "500.00", "agency_placement", 200),  # 6 years: not yet
    "NY-PAID-LATER": ("C-NY", OLD_DEBT, "500.00", "agency_placement", 200),  # paid 2024-03-01
    "NY-FEB29": ("C-NY", OLD_DEBT, "500.00", "agency_placement", 200),  # paid 2024-02-29
    "NY-REVERSED": ("C-NY", OLD_DEBT, "500.00", "agency_placement", 200),  # paid, reversed
    "SERVICEMEMBER": ("C-SM", PAID_IN_FULL_DEBT, "600.00", "agency_placement", 200),
    "DISPUTED": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "agency_placement", 200),
    "SMALL": ("C-TX", PAID_IN_FULL_DEBT, "200.00", "agency_placement", 200),  # below 250
    # held at the legal stage (a held stage freezes)
    "BANKRUPT": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
    "DECEASED": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
    "PROMISE": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
    # referred 40 days ago and still open: held, so it neither moves on nor is referred again
    "HELD-REFERRED": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
    # the same without a referral: on to the write-off recommendation (a manager contact)
    "CONTROL": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
    # referred 20 days ago, paid in full two days ago: withdrawn today
    "PAID-OFF": ("C-TX", PAID_IN_FULL_DEBT, "600.00", "legal_referral", 40),
}
STAGE_ORDER = {"agency_placement": 7, "legal_referral": 8}


def a_customer(customer_id: str, state: str, city: str, postal_code: str, **more: str) -> dict:
    return row(
        "customers",
        customer_id=customer_id,
        state=state,
        city=city,
        postal_code=postal_code,
        **more,
    )


def a_payment(payment_id: str, account_id: str, amount: str, received: str, **more: str) -> dict:
    return row(
        "payments",
        payment_id=payment_id,
        account_id=account_id,
        amount=amount,
        received_date=received,
        **more,
    )


def a_flag(account_id: str, flag: str, start: str) -> dict:
    customer = ACCOUNTS[account_id][0]
    return row(
        "account_flags", customer_id=customer, account_id=account_id, flag=flag, start_date=start
    )


BATCH = {
    "customers": [
        # a formula in the name: the referral file must defuse it
        a_customer("C-TX", "TX", "Austin", "78701", full_name="=SUM(A1) Ann Lee"),
        a_customer("C-NY", "NY", "New York", "10001", full_name="Bo Chen"),
        a_customer("C-OH", "OH", "Columbus", "43004", full_name="Cy Diaz"),
        a_customer("C-SM", "TX", "Austin", "78701", full_name="Di Evans"),
    ],
    "accounts": [
        row("accounts", account_id=account, customer_id=customer)
        for account, (customer, *_) in ACCOUNTS.items()
    ],
    "invoices": [
        row(
            "invoices",
            invoice_id=f"{account}-1",
            account_id=account,
            invoice_number=f"N-{account}",
            issue_date=(dt.date.fromisoformat(due) - dt.timedelta(days=31)).isoformat(),
            due_date=due,
            amount=amount,
        )
        for account, (_, due, amount, *_) in ACCOUNTS.items()
    ],
    "payments": [
        a_payment("REFER-P", "REFER", "100.00", "2026-08-01"),
        a_payment("NYP-P", "NY-PAID-LATER", "50.00", "2024-03-01"),
        a_payment("NYF-P", "NY-FEB29", "50.00", "2024-02-29"),
        a_payment("NYR-P", "NY-REVERSED", "50.00", "2024-06-01"),
        a_payment("NYR-X", "NY-REVERSED", "50.00", "2024-06-10", reverses_payment_id="NYR-P"),
        a_payment("PAID-P", "PAID-OFF", "600.00", day(-2).isoformat()),
    ],
    "adjustments": [
        row(
            "adjustments",
            adjustment_id="REFER-FEE",
            account_id="REFER",
            amount="25.00",
            effective_date="2026-09-01",
            reason="late fee",
        ),
    ],
    "disputes": [
        # rejected long ago: history only
        row(
            "disputes",
            dispute_id="REFER-D",
            account_id="REFER",
            invoice_id="REFER-1",
            amount="50.00",
            opened_date="2026-07-01",
            resolved_date="2026-07-15",
            resolution="rejected",
        ),
        # 100 of 600 disputed and open: 500 collectible, still never referred
        row(
            "disputes",
            dispute_id="DIS-D",
            account_id="DISPUTED",
            invoice_id="DISPUTED-1",
            amount="100.00",
            opened_date=day(-10).isoformat(),
        ),
    ],
    "payment_plans": [
        row(
            "payment_plans",
            plan_id="PROM-1",
            account_id="PROMISE",
            kind="promise_to_pay",
            installment_no="1",
            due_date=day(5).isoformat(),
            amount="100.00",
            created_date=day(-3).isoformat(),
        ),
    ],
    "account_flags": [
        a_flag("BANKRUPT", "bankruptcy", day(-5).isoformat()),
        a_flag("DECEASED", "deceased", day(-5).isoformat()),
        a_flag("SERVICEMEMBER", "servicemember", "2026-01-01"),
    ],
}


def stage_history_columns() -> dict[str, str]:
    """The stage-history mart's columns and types, from its enforced contract."""
    properties = yaml.safe_load(
        (DBT_PROJECT / "models/marts/collections/_collections__models.yml").read_text("utf-8")
    )
    [model] = [m for m in properties["models"] if m["name"] == "fct_account_stage_history"]
    return {column["name"]: column["data_type"] for column in model["columns"]}


def yesterdays_stages(connection: duckdb.DuckDBPyConnection) -> None:
    """The stage history the run of D - 1 left: the incremental mart with that day's rows."""
    columns = stage_history_columns()
    connection.execute("create schema if not exists marts")
    connection.execute(
        "create table marts.fct_account_stage_history ("
        + ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
        + ")"
    )
    for account, (customer, _, _, stage, entered_days_ago) in ACCOUNTS.items():
        values = {
            "as_of_date": day(-1),
            "account_id": account,
            "customer_id": customer,
            "segment": "residential",
            "currency": "USD",
            "policy_version": "2026.1",
            "policy_segment": "default",
            "stage_order": STAGE_ORDER[stage],
            "stage": stage,
            "stage_entered_date": day(-entered_days_ago),
        }
        connection.execute(
            f"insert into marts.fct_account_stage_history ({', '.join(values)}) "
            f"values ({', '.join('?' for _ in values)})",
            list(values.values()),
        )


def earlier_ledgers(connection: duckdb.DuckDBPyConnection) -> None:
    """What earlier runs wrote: REFER's placement (recalled yesterday), the two referrals still
    open, and one contact of REFER's."""
    connection.execute(
        """
        insert into ops.placements (
            placement_id, account_id, customer_id, agency_id, status, placed_date,
            placed_run_id, recalled_date, recall_reason, currency, placed_balance,
            commission_rate
        ) values ('PL-REFER', 'REFER', 'C-TX', 'northwind', 'recalled', ?, 'earlier-run', ?,
                  'placement_period_ended', 'USD', 500.00, 0.25)
        """,
        [day(-200), day(-1)],
    )
    for account, referred_on in (("HELD-REFERRED", day(-40)), ("PAID-OFF", day(-20))):
        connection.execute(
            """
            insert into ops.legal_referrals (
                referral_id, account_id, customer_id, attorney, referred_on, run_id,
                referred_at, currency, collectible_amount, total_open, statute_years,
                sol_expires_on, referral_file
            ) values (?, ?, 'C-TX', 'Example Legal LLP', ?, 'earlier-run', now(), 'USD',
                      600.00, 600.00, 4, date '2030-06-01', 'earlier')
            """,
            [referral_id(account, referred_on), account, referred_on],
        )
    contacted(connection, account_id="REFER", customer_id="C-TX", stage="final_notice",
              day=dt.date(2026, 7, 2))  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def fetch(connection: duckdb.DuckDBPyConnection, sql: str, *parameters: object) -> list[tuple]:
    return connection.execute(sql, list(parameters)).fetchall()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("legal")
    settings: Settings = load_settings({"RECOUP_HOME": str(home)})
    warehouse = settings.warehouse_path
    connection = open_warehouse(warehouse)
    assert load_batch(connection, write_batch(home / "batch", **BATCH)).rows_quarantined == 0
    yesterdays_stages(connection)
    earlier_ledgers(connection)
    connection.close()
    build_warehouse(warehouse, home / "state", D, variables=settings.dbt_vars())
    connection = open_warehouse(warehouse)
    record_build(connection, D)
    out = legal_folder(settings.path("out"), D)
    statutes = {
        account: rest
        for account, *rest in fetch(
            connection,
            "select account_id, statute_state, statute_years, clock_started_on, sol_expires_on, "
            "is_time_barred from marts.fct_statute_of_limitations where as_of_date = ?",
            D,
        )
    }
    build_plan(connection, settings.contact, D, "plan-run")
    plan = dict(fetch(connection, "select account_id, channel from _contact_plan"))

    dry = refer_to_legal(connection, settings, D, "dry-run", dry_run=True)
    after_dry = (fetch(connection, "select count(*) from ops.legal_referrals")[0][0], out.exists())
    scoped = refer_to_legal(
        connection, settings, D, "scoped-run", scope=ContactScope(account_ids=("OH-OPEN",))
    )
    first = refer_to_legal(connection, settings, D, "run-1")
    files = folder_bytes(out)
    rerun = refer_to_legal(connection, settings, D, "run-2")
    # a run for another day than the marts hold is refused before anything is written
    with pytest.raises(MartsNotForDate) as refused:
        refer_to_legal(connection, settings, NEXT, "run-3")
    next_day_folder = legal_folder(settings.path("out"), NEXT).exists()
    # the next day's marts with the same facts (as if its build did not hold the referred
    # accounts yet): the open referrals alone keep them from a second one
    for mart in ("fct_account_stage_history", "fct_account_aging"):
        connection.execute(
            f"insert into marts.{mart} select * replace (?::date as as_of_date) "
            f"from marts.{mart} where as_of_date = ?",
            [NEXT, D],
        )
    connection.execute("update marts.fct_statute_of_limitations set as_of_date = ?", [NEXT])
    record_build(connection, NEXT)
    next_day = refer_to_legal(connection, settings, NEXT, "run-next")
    yield {
        "connection": connection,
        "settings": settings,
        "out": out,
        "statutes": statutes,
        "plan": plan,
        "dry": dry,
        "after_dry": after_dry,
        "scoped": scoped,
        "first": first,
        "files": files,
        "rerun": rerun,
        "refused": refused.value,
        "next_day_folder": next_day_folder,
        "next_day": next_day,
    }
    connection.close()


def referrals(connection: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """account → (referred_on, run_id, withdrawn_on, withdrawn_reason) of every referral."""
    return {
        account: rest
        for account, *rest in fetch(
            connection,
            "select account_id, referred_on, run_id, withdrawn_on, withdrawn_reason "
            "from ops.legal_referrals order by account_id",
        )
    }


# --- the statute of limitations ------------------------------------------------------------


def test_the_statute_runs_from_the_later_of_payment_and_default(world) -> None:
    statutes = world["statutes"]
    date = dt.date.fromisoformat
    assert statutes["NY-BARRED"] == ["NY", 3, date(OLD_DEBT), date("2026-06-01"), True]
    assert statutes["OH-OPEN"] == ["OH", 6, date(OLD_DEBT), date("2029-06-01"), False]
    # a payment restarts the clock ...
    assert statutes["NY-PAID-LATER"][2:] == [date("2024-03-01"), date("2027-03-01"), False]
    # ... from Feb 29 it runs out on Feb 28 of a common year: today
    assert statutes["NY-FEB29"][2:] == [date("2024-02-29"), date("2027-02-28"), True]
    # a reversed payment never happened: the clock runs from the due date
    assert statutes["NY-REVERSED"][2:] == [date(OLD_DEBT), date("2026-06-01"), True]
    # the payment came after the default: it starts the clock
    assert statutes["REFER"] == ["TX", 4, date("2026-08-01"), date("2030-08-01"), False]


# --- the ladder and the hold ---------------------------------------------------------------


def test_a_recalled_agency_account_steps_into_legal_referral(world) -> None:
    stages = dict(
        fetch(
            world["connection"],
            "select account_id, stage from marts.fct_account_stage_history where as_of_date = ?",
            D,
        )
    )
    # 272 days past due matches write-off, but legal_referral is a step stage
    assert stages["REFER"] == stages["OH-OPEN"] == "legal_referral"
    assert stages["CONTROL"] == "write_off_recommendation"
    assert stages["HELD-REFERRED"] == "legal_referral"
    assert "PAID-OFF" not in stages  # nothing owed


def test_the_referral_hold_stops_the_ladder_and_every_contact(world) -> None:
    held = fetch(
        world["connection"],
        "select is_held, hold_reason, next_action_due_date from marts.fct_account_stage_history "
        "where as_of_date = ? and account_id = 'HELD-REFERRED'",
        D,
    )
    assert held == [(True, "referred_to_legal", None)]
    plan = world["plan"]
    assert "HELD-REFERRED" not in plan
    assert plan.get("CONTROL") == "manager"  # the same account unreferred is worked on
    assert "legal" not in plan.values()  # the attorneys' stage contacts nobody


# --- who is referred, who never is ---------------------------------------------------------


def test_only_accounts_free_of_every_bar_are_referred(world) -> None:
    made = referrals(world["connection"])
    new = {account for account, (on, *_) in made.items() if on == D}
    assert new == {"REFER", "OH-OPEN", "NY-PAID-LATER"}
    assert world["first"].referred == 2 and world["scoped"].referred == 1
    assert world["first"].referred_amounts == {"USD": Decimal("975.00")}  # 525 + 450
    exclusions = {
        account: (reason, reasons)
        for account, reason, reasons in fetch(
            world["connection"],
            "select account_id, reason, reasons from ops.legal_exclusions where as_of_date = ?",
            D,
        )
    }
    assert exclusions == {
        "NY-BARRED": ("time_barred", ["time_barred"]),
        "NY-FEB29": ("time_barred", ["time_barred"]),
        "NY-REVERSED": ("time_barred", ["time_barred"]),
        "BANKRUPT": ("bankruptcy", ["bankruptcy"]),
        "DECEASED": ("deceased", ["deceased"]),
        "SERVICEMEMBER": ("servicemember", ["servicemember"]),
        "DISPUTED": ("disputed", ["disputed"]),
        "PROMISE": ("on_hold", ["on_hold"]),
        "SMALL": ("below_min_balance", ["below_min_balance"]),
    }
    assert world["first"].excluded == {
        "time_barred": 3, "bankruptcy": 1, "deceased": 1, "servicemember": 1, "disputed": 1,
        "on_hold": 1, "below_min_balance": 1,
    }  # fmt: skip


def test_a_paid_account_is_withdrawn_and_listed(world) -> None:
    made = referrals(world["connection"])
    assert made["PAID-OFF"] == [day(-20), "earlier-run", D, "paid_in_full"]
    assert made["HELD-REFERRED"] == [day(-40), "earlier-run", None, None]  # still open
    assert world["first"].withdrawn == {"paid_in_full": 1}
    # the scoped run left the account outside its scope alone
    assert world["scoped"].withdrawn == {}
    [line] = read_csv(world["out"] / "withdrawals.csv")
    assert (line["account_id"], line["referred_on"], line["withdrawn_on"], line["reason"]) == (
        "PAID-OFF",
        day(-20).isoformat(),
        D.isoformat(),
        "paid_in_full",
    )
    assert (line["total_open"], line["collectible_amount"]) == ("0.00", "0.00")


# --- exactly once --------------------------------------------------------------------------


def test_a_dry_run_counts_and_writes_nothing(world) -> None:
    dry = world["dry"]
    assert (dry.referred, dry.withdrawn, dry.dry_run, dry.files) == (
        3,
        {"paid_in_full": 1},
        True,
        (),
    )
    assert dry.excluded == world["first"].excluded
    assert world["after_dry"] == (2, False)  # the two earlier referrals, no folder
    assert str(dry).startswith("would refer 3 (USD 1,475.00); would withdraw 1")


def test_a_rerun_of_the_day_refers_nobody_again_and_writes_the_same_files(world) -> None:
    rerun: LegalOutcome = world["rerun"]
    assert (rerun.referred, rerun.withdrawn, rerun.open_referrals) == (0, {}, 4)
    assert rerun.excluded == world["first"].excluded
    assert len(referrals(world["connection"])) == 5
    assert folder_bytes(world["out"]) == world["files"]
    # the ids are sha256(account|date), the same in SQL and Python
    ids = dict(
        fetch(world["connection"], "select account_id, referral_id from ops.legal_referrals")
    )
    assert ids["REFER"] == referral_id("REFER", D)


def test_the_next_day_refers_nobody_with_a_referral_open(world) -> None:
    assert f"the marts hold {D}, not {NEXT}" in str(world["refused"])
    assert not world["next_day_folder"]  # the refused run wrote nothing
    next_day: LegalOutcome = world["next_day"]
    assert (next_day.referred, next_day.withdrawn, next_day.files) == (0, {}, ())
    assert next_day.excluded == world["first"].excluded
    assert len(referrals(world["connection"])) == 5


# --- the files -----------------------------------------------------------------------------


def test_the_referral_file_carries_the_account_and_defuses_formulas(world) -> None:
    lines = {line["account_id"]: line for line in read_csv(world["out"] / "referrals.csv")}
    assert list(lines) == ["NY-PAID-LATER", "OH-OPEN", "REFER"]
    assert list(next(iter(lines.values()))) == list(REFERRAL_COLUMNS)
    refer = lines["REFER"]
    assert refer["full_name"] == "'=SUM(A1) Ann Lee"
    assert (refer["address_line1"], refer["city"], refer["state"], refer["postal_code"]) == (
        "1 Main St",
        "Austin",
        "TX",
        "78701",
    )
    assert (refer["collectible_amount"], refer["total_open"], refer["currency"]) == (
        "525.00",
        "525.00",
        "USD",
    )  # 600 + 25 fee - 100 paid
    assert (refer["oldest_due_date"], refer["last_payment_date"]) == (
        PAID_IN_FULL_DEBT,
        "2026-08-01",
    )
    assert (refer["statute_state"], refer["statute_years"], refer["sol_expires_on"]) == (
        "TX",
        "4",
        "2030-08-01",
    )
    assert refer["attorney"] == "Example Legal LLP"
    assert refer["stage_history"] == (
        f"agency_placement {day(-200).isoformat()}; legal_referral {D.isoformat()}"
    )
    assert refer["referral_id"] == referral_id("REFER", D)


def test_the_itemization_lists_every_open_item_then_the_statement(world) -> None:
    lines = [
        line for line in read_csv(world["out"] / "referral_items.csv")
        if line["account_id"] == "REFER"
    ]  # fmt: skip
    assert list(lines[0]) == list(ITEM_COLUMNS)
    assert [(line["record_type"], line["item_type"], line["open_amount"]) for line in lines] == [
        ("open_item", "invoice", "500.00"),
        ("open_item", "fee", "25.00"),
        ("itemization", "", ""),
    ]
    assert lines[-1]["current_amount"] == "525.00"


def test_the_history_holds_billing_facts_and_what_recoup_did(world) -> None:
    lines = [
        line for line in read_csv(world["out"] / "referral_history.csv")
        if line["account_id"] == "REFER"
    ]  # fmt: skip
    assert list(lines[0]) == list(HISTORY_COLUMNS)
    events = [(line["event_date"], line["event"], line["amount"]) for line in lines]
    assert events == [
        ("2026-05-01", "invoice", "600.00"),
        ("2026-07-01", "dispute_opened", "50.00"),
        ("2026-07-02", "contact", "120.00"),
        ("2026-07-15", "dispute_resolved", ""),
        ("2026-08-01", "payment", "100.00"),
        ("2026-08-12", "agency_placement", "500.00"),
        ("2026-09-01", "fee", "25.00"),
        (day(-1).isoformat(), "agency_recall", ""),
    ]
    assert lines[2]["detail"] == "letter final_notice sent"
    assert lines[-1]["detail"] == "northwind placement_period_ended"
    nyr = [line["event"] for line in read_csv(world["out"] / "referral_history.csv")
           if line["account_id"] == "NY-PAID-LATER"]  # fmt: skip
    assert nyr == ["invoice", "payment"]


def test_the_files_are_owner_only(world) -> None:
    out: Path = world["out"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(path.name for path in out.iterdir()) == [
        "referral_history.csv",
        "referral_items.csv",
        "referrals.csv",
        "withdrawals.csv",
    ]
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_csv(out / "withdrawals.csv")[0].keys() == set(WITHDRAWAL_COLUMNS)
