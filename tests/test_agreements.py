"""Recording agreements (issue 13): the offer policy and its approver, the import with its
quarantine (a bad line sets its whole agreement aside; the good ones load; reimports), cancel,
and the `recoup agreements` commands. The balances come from a small aging table as a build
leaves it; how recorded agreements age in dbt is in test_settlements.py."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.agreements import (
    AgreementError,
    AgreementFileError,
    AgreementRefused,
    cancel_agreement,
    ensure_agreement_schema,
    import_agreements,
    list_agreements,
    record_agreement,
)
from flows.lib.loader import load_batch
from flows.lib.warehouse import open_warehouse
from tests.agreement_fixtures import (
    FILE_COLUMNS,
    aging,
    agreement_file,
    agreement_lines,
    an_agreement,
    monthly,
    settings_for,
)
from tests.builders import row, write_batch

pytestmark = pytest.mark.integration
D = dt.date(2026, 3, 31)
SOON = D + dt.timedelta(days=5)
ACCOUNTS = {
    # account: segment, status, the aging on D (collectible, days past due)
    "A1": ("residential", "active", "1000.00", 100),
    "A2": ("residential", "closed", "500.00", 100),
    "A3": ("residential", "active", "0.00", 40),  # its balance is all disputed
    "A4": ("residential", "active", "800.00", 100),  # broke a plan in February
    "A5": ("residential", "active", "12000.00", 200),
    "A6": ("residential", "active", "300.00", 10),
    "E1": ("enterprise", "active", "5000.00", 40),  # enterprise: no settlements, 3 or 6 months
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with the accounts above, billing's plan PL1, and the aging of D (and of
    D - 1 for A1: 900.00)."""
    root = tmp_path_factory.mktemp("agreements")
    path = root / "warehouse.duckdb"
    connection = open_warehouse(path)
    ensure_agreement_schema(connection)  # open_warehouse does too, once wired
    accounts = [
        row("accounts", account_id=account, segment=segment, status=status)
        for account, (segment, status, _, _) in ACCOUNTS.items()
    ]
    batch = write_batch(
        root / "batch",
        customers=[row("customers")],
        accounts=accounts,
        payment_plans=[row("payment_plans", plan_id="PL1", account_id="A1")],
    )
    assert load_batch(connection, batch).rows_quarantined == 0
    aging(
        connection,
        [(account, D, balance, days) for account, (_, _, balance, days) in ACCOUNTS.items()]
        + [("A1", D - dt.timedelta(days=1), "900.00", 99)],
    )
    connection.execute(
        "create table marts.fct_payment_plans as select 'OLD' as plan_id, 'A4' as account_id, "
        "'broken' as plan_status, date '2026-02-01' as broken_on"
    )
    connection.close()
    return path


def copy_of(base: Path, folder: Path) -> duckdb.DuckDBPyConnection:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(base, folder / "warehouse.duckdb")
    return open_warehouse(folder / "warehouse.duckdb")


@pytest.fixture(scope="module")
def shared(base: Path, tmp_path_factory) -> Iterator[duckdb.DuckDBPyConnection]:
    """One copy for the record_agreement tests: each asserts on its own agreement ids."""
    connection = copy_of(base, tmp_path_factory.mktemp("shared"))
    yield connection
    connection.close()


@pytest.fixture
def connection(base: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of its own, for tests that count whole tables."""
    connection = copy_of(base, tmp_path / "copy")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return settings_for(tmp_path_factory.mktemp("home"))


def recorded(connection: duckdb.DuckDBPyConnection, agreement_id: str) -> list[tuple]:
    return connection.execute(
        "select kind, balance_at_agreement, balance_date, total_amount, forgiven_amount, "
        "installments, policy_breaches, approved_by, recorded_by, source "
        "from ops.agreements where agreement_id = ?",
        [agreement_id],
    ).fetchall()


def schedule_of(connection: duckdb.DuckDBPyConnection, agreement_id: str) -> list[tuple]:
    return connection.execute(
        "select installment_no, due_date, amount from ops.agreement_installments "
        "where agreement_id = ? order by installment_no",
        [agreement_id],
    ).fetchall()


# --- record_agreement: the policy --------------------------------------------------------------


def test_a_plan_within_the_policy_is_recorded_once(shared, settings) -> None:
    plan = an_agreement("A1", "installment_plan", D, monthly(SOON, "400.00", "400.00", "200.00"))
    outcome = record_agreement(shared, settings, plan, recorded_by="ann")
    assert (outcome.status, outcome.policy_breaches, outcome.installments) == ("recorded", (), 3)
    assert recorded(shared, plan.id) == [
        ("installment_plan", Decimal("1000.00"), D, Decimal("1000.00"), Decimal("0.00"), 3, [],
         None, "ann", "cli"),
    ]  # fmt: skip
    assert schedule_of(shared, plan.id) == [
        (1, SOON, Decimal("400.00")),
        (2, SOON + dt.timedelta(days=30), Decimal("400.00")),
        (3, SOON + dt.timedelta(days=60), Decimal("200.00")),
    ]
    again = record_agreement(shared, settings, plan, recorded_by="bob")
    assert again.status == "unchanged" and "recorded before" in str(again)
    assert recorded(shared, plan.id)[0][-2] == "ann" and len(schedule_of(shared, plan.id)) == 3


def test_the_balance_is_the_agreed_date_s_when_the_marts_hold_it_else_the_latest(
    shared, settings
) -> None:
    day_before = D - dt.timedelta(days=1)
    on_held_day = an_agreement("A1", "settlement", day_before, [(SOON, "810.00")])
    later_day = an_agreement("A1", "settlement", D + dt.timedelta(days=2), [(SOON, "900.00")])
    first = record_agreement(shared, settings, on_held_day, recorded_by="ann")
    second = record_agreement(shared, settings, later_day, recorded_by="ann")
    assert (first.balance_at_agreement, first.balance_date, first.forgiven_amount) == (
        Decimal("900.00"), day_before, Decimal("90.00"),
    )  # fmt: skip
    assert (second.balance_at_agreement, second.balance_date) == (Decimal("1000.00"), D)


def test_the_last_installment_may_be_smaller_as_the_remainder(shared, settings) -> None:
    plan = an_agreement("A1", "installment_plan", D, monthly(SOON, "480.00", "480.00", "20.00"))
    assert record_agreement(shared, settings, plan, recorded_by="ann").policy_breaches == ()


@pytest.mark.parametrize(
    ("account", "kind", "schedule", "breaches"),
    [
        pytest.param("A1", "installment_plan", monthly(SOON, *["250.00"] * 4),
                     ["plan_length_not_allowed"], id="a plan of 4 installments"),
        pytest.param("A1", "installment_plan", monthly(SOON, "20.00", "20.00", "20.00"),
                     ["installment_below_minimum"], id="installments under 25.00"),
        pytest.param("A1", "installment_plan", monthly(D + dt.timedelta(days=50), *["300.00"] * 3),
                     ["first_installment_too_late"], id="first installment after 45 days"),
        pytest.param("A1", "installment_plan",
                     [(SOON, "400.00"), (SOON + dt.timedelta(days=65), "300.00"),
                      (SOON + dt.timedelta(days=95), "300.00")],
                     ["installment_gap_too_long"], id="65 days between installments"),
        pytest.param("A1", "installment_plan", monthly(SOON, "400.00", "400.00", "400.00"),
                     ["total_above_balance"], id="more than the balance"),
        pytest.param("A6", "installment_plan", monthly(SOON, "100.00", "100.00", "100.00"),
                     ["days_past_due_outside_plan_range"], id="10 days past due"),
        pytest.param("A5", "installment_plan", monthly(SOON, *["1000.00"] * 12),
                     ["balance_outside_plan_range"], id="balance above 10,000"),
        pytest.param("A4", "installment_plan", monthly(SOON, "267.00", "267.00", "266.00"),
                     ["recent_broken_plan"], id="a plan broke in February"),
        pytest.param("E1", "installment_plan", monthly(SOON, *["416.67"] * 11, "416.63"),
                     ["installment_below_minimum", "plan_length_not_allowed"],
                     id="enterprise: 12 months of less than 500"),
        pytest.param("A1", "settlement", [(SOON, "800.00")], ["settlement_below_policy"],
                     id="800 of 1,000 at 100 days (90 percent)"),
        pytest.param("A5", "settlement", [(SOON, "8400.00")],
                     ["forgiven_above_approval_threshold"], id="forgives 3,600"),
        pytest.param("E1", "settlement", [(SOON, "4000.00")], ["segment_has_no_settlements"],
                     id="enterprise settles nothing"),
        pytest.param("A6", "settlement", [(SOON, "280.00")], ["settlement_too_early"],
                     id="10 days past due: no tier yet"),
    ],
)  # fmt: skip
def test_an_agreement_outside_the_policy_is_refused_without_an_approver(
    shared, settings, account: str, kind: str, schedule, breaches: list[str]
) -> None:
    agreement = an_agreement(account, kind, D, schedule)
    with pytest.raises(AgreementRefused, match="needs a recorded approver") as refused:
        record_agreement(shared, settings, agreement, recorded_by="ann")
    assert set(refused.value.codes) == {"approval_required", *breaches}
    assert recorded(shared, agreement.id) == [] and schedule_of(shared, agreement.id) == []
    approved = replace(agreement, approved_by="Maria Chen")
    assert approved.id == agreement.id  # the approver does not change what was agreed
    outcome = record_agreement(shared, settings, approved, recorded_by="ann")
    assert (outcome.status, sorted(outcome.policy_breaches)) == ("recorded", sorted(breaches))
    [(_, _, _, _, _, _, stored_breaches, approver, _, _)] = recorded(shared, agreement.id)
    assert (sorted(stored_breaches), approver) == (sorted(breaches), "Maria Chen")
    assert len(schedule_of(shared, agreement.id)) == len(schedule)


@pytest.mark.parametrize(
    ("account", "schedule", "options", "code"),
    [
        pytest.param("NOPE", [(SOON, "100.00")], {}, "unknown_account", id="not a billing account"),
        pytest.param("A2", [(SOON, "450.00")], {}, "account_closed", id="closed"),
        pytest.param("A3", [(SOON, "10.00")], {}, "nothing_collectible", id="nothing collectible"),
        pytest.param("A1", [(D - dt.timedelta(days=3), "900.00")], {}, "due_before_agreed",
                     id="due before it was agreed"),
        pytest.param("A1", [(SOON, "950.00")], {"agreement_id": "PL1"}, "agreement_id_taken",
                     id="billing's plan id"),
        pytest.param("A1", [(SOON, "0.00")], {}, "zero_amount", id="nothing to pay"),
    ],
)  # fmt: skip
def test_an_approver_cannot_make_bad_data_good(
    shared, settings, account: str, schedule, options: dict, code: str
) -> None:
    agreement = an_agreement(
        account, "settlement", D, schedule, approved_by="Maria Chen", **options
    )
    with pytest.raises(AgreementRefused) as refused:
        record_agreement(shared, settings, agreement, recorded_by="ann")
    assert code in refused.value.codes and "was not recorded" in str(refused.value)
    assert shared.execute(
        "select count(*) from ops.agreements where agreement_id = ?", [agreement.id]
    ).fetchall() == [(0,)]


def test_an_agreement_id_recorded_with_other_content_is_a_conflict(shared, settings) -> None:
    first = an_agreement("A1", "settlement", D, [(SOON, "920.00")], agreement_id="PHONE-77")
    record_agreement(shared, settings, first, recorded_by="ann")
    other = an_agreement("A1", "settlement", D, [(SOON, "930.00")], agreement_id="PHONE-77")
    with pytest.raises(AgreementRefused) as refused:
        record_agreement(shared, settings, other, recorded_by="ann")
    assert refused.value.codes == ("agreement_conflict",)
    assert schedule_of(shared, "PHONE-77") == [(1, SOON, Decimal("920.00"))]


def test_the_offer_taken_up_is_recorded(connection, settings) -> None:
    connection.execute("drop table if exists ops.offers")
    connection.execute(
        "create table ops.offers (offer_id VARCHAR, account_id VARCHAR, kind VARCHAR, "
        "plan_length INTEGER, offer_date DATE, expires_on DATE)"
    )
    made = D - dt.timedelta(days=3)
    connection.executemany(
        "insert into ops.offers values (?, 'A1', ?, ?, ?, ?)",
        [
            ["three", "installment_plan", 3, made, made + dt.timedelta(days=30)],
            ["six", "installment_plan", 6, made, made + dt.timedelta(days=30)],
            ["settle", "settlement", None, made, made + dt.timedelta(days=30)],
            ["expired", "installment_plan", 3, made - dt.timedelta(days=60), made],
        ],
    )
    plan = an_agreement("A1", "installment_plan", D, monthly(SOON, "340.00", "330.00", "330.00"))
    assert record_agreement(connection, settings, plan, recorded_by="ann").offer_id == "three"
    settlement = an_agreement("A1", "settlement", D, [(SOON, "900.00")])
    assert record_agreement(connection, settings, settlement, recorded_by="ann").offer_id == (
        "settle"
    )
    late = an_agreement("A1", "settlement", D + dt.timedelta(days=40), [(D + dt.timedelta(days=41),
                        "900.00")])  # fmt: skip
    assert record_agreement(connection, settings, late, recorded_by="ann").offer_id is None


def test_no_agreement_is_judged_without_an_aging(tmp_path: Path, settings) -> None:
    connection = open_warehouse(tmp_path / "fresh.duckdb")
    plan = an_agreement("A1", "installment_plan", D, monthly(SOON, "400.00", "400.00", "200.00"))
    with pytest.raises(AgreementError, match="run `recoup run` first"):
        record_agreement(connection, settings, plan, recorded_by="ann")
    connection.close()


# --- import_agreements ----------------------------------------------------------------------


def good_lines() -> list[dict[str, str]]:
    return [
        *agreement_lines(
            "GOOD-1", "A1", "installment_plan", "2026-03-31",
            [("2026-04-05", "400.00"), ("2026-05-05", "400.00"), ("2026-06-05", "200.00")],
        ),
        *agreement_lines("GOOD-2", "A1", "settlement", "2026-03-31", [("2026-04-10", "900.00")]),
        *agreement_lines(
            "APPROVED", "A5", "settlement", "2026-03-31", [("2026-04-10", "8400.00")],
            approved_by="Maria Chen",
        ),
    ]  # fmt: skip


def bad_date_lines(due: str = "2026-02-30") -> list[dict[str, str]]:
    return agreement_lines(
        "BAD-DATE", "A1", "installment_plan", "2026-03-31",
        [("2026-04-05", "400.00"), (due, "400.00"), ("2026-06-05", "200.00")],
    )  # fmt: skip


def bad_lines() -> tuple[list[dict[str, str]], dict[str, set[str]]]:
    """Lines of agreements that must be set aside, and the codes each agreement's lines get."""
    plan = "installment_plan"
    three = [("2026-04-05", "400.00"), ("2026-05-05", "400.00"), ("2026-06-05", "200.00")]
    lines = [
        *bad_date_lines(),
        *agreement_lines("BAD-AMOUNT", "A1", "settlement", "2026-03-31",
                         [("2026-04-10", "1.000,50")],
                         notes="lost his job; call his wife Jane Roe on 512-555-0199"),
        *agreement_lines("ZERO", "A1", "settlement", "2026-03-31", [("2026-04-10", "0")]),
        *agreement_lines("NEGATIVE", "A1", "settlement", "2026-03-31", [("2026-04-10", "-900")]),
        *agreement_lines("UNKNOWN", "NOPE", plan, "2026-03-31", three),
        *agreement_lines("CLOSED", "A2", "settlement", "2026-03-31", [("2026-04-10", "450.00")]),
        *agreement_lines("NOTHING", "A3", "settlement", "2026-03-31", [("2026-04-10", "5.00")]),
        *agreement_lines("KIND", "A1", "promise_to_pay", "2026-03-31", [("2026-04-10", "9.00")]),
        *[{**line, "installment_no": "1"} for line in agreement_lines(
            "DUP", "A1", plan, "2026-03-31", three[:2])],
        *[{**line, "installment_no": number} for line, number in zip(agreement_lines(
            "GAP", "A1", plan, "2026-03-31", three[:2]), ("1", "3"), strict=True)],
        *agreement_lines("EARLY", "A1", "settlement", "2026-03-31", [("2026-03-30", "900.00")]),
        *agreement_lines("PL1", "A1", "settlement", "2026-03-31", [("2026-04-10", "900.00")]),
        *agreement_lines("POLICY", "A1", plan, "2026-03-31",
                         [(due, "250.00") for due, _ in three] + [("2026-07-05", "250.00")]),
        *[{**line, "approved_by": approver} for line, approver in zip(agreement_lines(
            "MIXED", "A1", plan, "2026-03-31", three), ("", "Maria Chen", ""), strict=True)],
        *agreement_lines("UNREAD", "A1", plan, "2026-03-31", three[:1]),
        {**agreement_lines("NO-ID", "A1", "settlement", "2026-03-31",
                           [("2026-04-10", "900.00")])[0], "agreement_id": ""},
    ]  # fmt: skip
    codes = {
        "BAD-DATE": {"bad_date", "agreement_rejected"},
        "BAD-AMOUNT": {"bad_amount"},
        "ZERO": {"zero_amount"},
        "NEGATIVE": {"negative_amount"},
        "UNKNOWN": {"unknown_account"},
        "CLOSED": {"account_closed"},
        "NOTHING": {"nothing_collectible"},
        "KIND": {"unknown_kind"},
        "DUP": {"duplicate_installment"},
        "GAP": {"installment_gap"},
        "EARLY": {"due_before_agreed"},
        "PL1": {"agreement_id_taken"},
        "POLICY": {"approval_required", "plan_length_not_allowed"},
        "MIXED": {"inconsistent_agreement"},
        "UNREAD": {"agreement_rejected", "unreadable_row"},
    }
    return lines, codes


UNREADABLE_LINE = "UNREAD,A1,installment_plan,2026-03-31,2,2026-05-05,400.00,,,one field too many"


def write_file(path: Path, lines: list[dict[str, str]], extra: str = "") -> Path:
    agreement_file(path, lines)
    if extra:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(extra + "\n")
    return path


def quarantined(connection: duckdb.DuckDBPyConnection) -> dict[str | None, set[str]]:
    found: dict[str | None, set[str]] = {}
    for agreement_id, codes in connection.execute(
        "select agreement_id, reason_codes from ops.agreement_quarantine"
    ).fetchall():
        found.setdefault(agreement_id, set()).update(codes)
    return found


def test_an_import_loads_the_good_agreements_and_sets_the_bad_ones_aside_whole(
    connection, settings, tmp_path: Path
) -> None:
    bad, codes = bad_lines()
    path = write_file(tmp_path / "agreements.csv", good_lines() + bad, UNREADABLE_LINE)
    outcome = import_agreements(connection, settings, path, recorded_by="ann")
    assert (outcome.agreements_recorded, outcome.agreements_unchanged) == (3, 0)
    assert outcome.agreements_quarantined == len(codes)  # the line without an id is no agreement
    assert outcome.approved_outside_policy == 1
    assert outcome.lines_read == len(good_lines()) + len(bad) + 1
    assert outcome.lines_quarantined == len(bad) + 1  # every line of every bad agreement
    assert {code for code in outcome.quarantined_by_reason} >= set().union(*codes.values())
    assert "3 recorded" in str(outcome) and "see ops.agreement_quarantine" in str(outcome)
    # the good agreements whole, with the file as source; nothing of the bad ones
    stored = connection.execute(
        "select agreement_id, installments, source, recorded_by, policy_breaches "
        "from ops.agreements order by 1"
    ).fetchall()
    assert stored == [
        ("APPROVED", 1, "agreements.csv", "ann", ["forgiven_above_approval_threshold"]),
        ("GOOD-1", 3, "agreements.csv", "ann", []),
        ("GOOD-2", 1, "agreements.csv", "ann", []),
    ]
    assert connection.execute(
        "select distinct agreement_id from ops.agreement_installments order by 1"
    ).fetchall() == [("APPROVED",), ("GOOD-1",), ("GOOD-2",)]
    # every line of a bad agreement is in the quarantine, with its reasons
    found = quarantined(connection)
    assert {key: found[key] for key in codes} == codes
    assert found[None] == {"missing_value"}
    bad_date = connection.execute(
        "select line_number, reason_codes from ops.agreement_quarantine "
        "where agreement_id = 'BAD-DATE' order by 1"
    ).fetchall()
    assert bad_date == [  # the header is line 1, then 5 good lines
        (7, ["agreement_rejected"]), (8, ["bad_date"]), (9, ["agreement_rejected"]),
    ]  # fmt: skip
    # never a customer's circumstances: the notes are neither stored nor repeated
    text = " ".join(
        message for (message,) in connection.execute(
            "select message from ops.agreement_quarantine").fetchall()
    )  # fmt: skip
    assert "Jane" not in text and "512-555" not in text
    assert "1.000,50" in text  # an amount is shown, so the sender can find it


def test_a_reimport_changes_nothing_and_a_corrected_file_adds_only_what_was_fixed(
    connection, settings, tmp_path: Path
) -> None:
    bad, _ = bad_lines()
    first = write_file(tmp_path / "monday.csv", good_lines() + bad)
    import_agreements(connection, settings, first, recorded_by="ann")
    before = connection.execute("select count(*) from ops.agreement_quarantine").fetchall()
    again = import_agreements(connection, settings, first, recorded_by="bob")
    assert again.status == "unchanged" and "nothing changed" in str(again)
    assert connection.execute("select count(*) from ops.agreement_quarantine").fetchall() == before
    corrected = write_file(
        tmp_path / "monday-fixed.csv", good_lines() + bad_date_lines("2026-05-05")
    )
    fixed = import_agreements(connection, settings, corrected, recorded_by="bob")
    assert (fixed.agreements_recorded, fixed.agreements_unchanged) == (1, 3)
    assert fixed.agreements_quarantined == 0
    assert connection.execute(
        "select agreement_id, recorded_by, source from ops.agreements "
        "where agreement_id in ('BAD-DATE', 'GOOD-1') order by 1"
    ).fetchall() == [("BAD-DATE", "bob", "monday-fixed.csv"), ("GOOD-1", "ann", "monday.csv")]


def test_a_reimport_that_changes_a_recorded_agreement_is_quarantined(
    connection, settings, tmp_path: Path
) -> None:
    import_agreements(connection, settings, write_file(tmp_path / "a.csv", good_lines()),
                      recorded_by="ann")  # fmt: skip
    changed = [
        {**line, "amount": "300.00"} if line["agreement_id"] == "GOOD-1" and
        line["installment_no"] == "3" else line
        for line in good_lines()
    ]  # fmt: skip
    outcome = import_agreements(connection, settings, write_file(tmp_path / "b.csv", changed),
                                recorded_by="ann")  # fmt: skip
    assert (outcome.agreements_unchanged, outcome.agreements_quarantined) == (2, 1)
    assert quarantined(connection) == {"GOOD-1": {"agreement_conflict"}}
    assert schedule_of(connection, "GOOD-1")[-1][-1] == Decimal("200.00")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("a.csv", b"agreement_id,account_id\n\xff\xfe,A1\n", "not UTF-8",
                     id="not UTF-8"),
        pytest.param("a.csv", ",".join(c for c in FILE_COLUMNS if c != "amount").encode() + b"\n",
                     "missing column(s) amount", id="no amount column"),
        pytest.param("a.csv", (",".join(FILE_COLUMNS) + ",customer_name\n").encode(),
                     "unknown column(s) 'customer_name'", id="an unknown column"),
        pytest.param("a.csv", b"", "is empty", id="empty"),
        pytest.param("a.xlsx", b"PK\x03\x04", "is CSV", id="a spreadsheet"),
    ],
)  # fmt: skip
def test_a_file_that_cannot_be_read_loads_nothing(
    connection, settings, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AgreementFileError, match="Nothing from this file was loaded") as refused:
        import_agreements(connection, settings, path, recorded_by="ann")
    assert message in str(refused.value)
    for table in ("agreements", "agreement_files", "agreement_quarantine"):
        assert connection.execute(f"select count(*) from ops.{table}").fetchall() == [(0,)]


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_an_agreement_once(connection, settings) -> None:
    plan = an_agreement("A1", "installment_plan", D, monthly(SOON, "400.00", "400.00", "200.00"))
    record_agreement(connection, settings, plan, recorded_by="ann")
    with pytest.raises(AgreementError, match="before it existed"):
        cancel_agreement(connection, plan.id, D - dt.timedelta(days=1), "ann")
    with pytest.raises(AgreementError, match="no agreement 'NOPE'"):
        cancel_agreement(connection, "NOPE", D, "ann")
    day = D + dt.timedelta(days=9)
    assert cancel_agreement(connection, plan.id, day, "bob").status == "cancelled"
    assert cancel_agreement(connection, plan.id, day, "bob").status == "unchanged"
    with pytest.raises(AgreementError, match="cancelled from 2026-04-09 by bob already"):
        cancel_agreement(connection, plan.id, day + dt.timedelta(days=1), "ann")
    assert connection.execute(
        "select cancelled_date, cancelled_by from ops.agreements where agreement_id = ?", [plan.id]
    ).fetchall() == [(day, "bob")]
    [listed] = list_agreements(connection, "A1")
    assert (listed["agreement_id"], listed["status"]) == (plan.id, "cancelled")


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def cli_home(base: Path, recoup_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """RECOUP_HOME holding a copy of the base warehouse; the CLI's process settings (umask,
    Prefect's environment) are put back afterwards."""
    (recoup_home / "warehouse").mkdir()
    shutil.copy(base, recoup_home / "warehouse" / "recoup.duckdb")
    for name in ("PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
                 "PREFECT_SERVER_ANALYTICS_ENABLED"):  # fmt: skip
        monkeypatch.setenv(name, os.environ.get(name, ""))
    from flows import cli

    monkeypatch.setattr(cli.console, "width", 200)  # a table is not folded into a test's 80
    umask = os.umask(0o077)
    os.umask(umask)
    yield recoup_home
    os.umask(umask)


def recoup(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from flows.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


def test_the_agreements_commands(cli_home: Path, capsys, tmp_path: Path) -> None:
    import getpass

    code, out, err = recoup(
        capsys, "agreements", "add", "--account", "A1", "--kind", "installment_plan",
        "--agreed-date", "2026-03-31", "--schedule", "2026-04-05=300.00,2026-05-05=300.00",
    )  # fmt: skip
    assert code == 1 and "was not recorded" in err
    assert "not an allowed length (3, 6, 12)" in err and "needs a recorded approver" in err
    code, out, err = recoup(
        capsys, "agreements", "add", "--account", "A1", "--kind", "installment_plan",
        "--agreed-date", "2026-03-31", "--approved-by", "Maria Chen",
        "--schedule", "2026-04-05=300.00,2026-05-05=300.00",
    )  # fmt: skip
    assert code == 0, err
    assert "Recorded installment plan AG-" in out and "approved by Maria Chen" in out
    plan_id = out.split("installment plan ")[1].split(" ")[0]
    code, _, err = recoup(
        capsys, "agreements", "add", "--account", "A1", "--kind", "settlement",
        "--agreed-date", "2026-03-31", "--schedule", "2026-04-05=1e3",
    )  # fmt: skip
    assert code == 2 and "is not DATE=AMOUNT" in err
    path = write_file(tmp_path / "phone.csv", good_lines())
    code, out, err = recoup(capsys, "agreements", "import", str(path), "--by", "Ann Lee")
    assert code == 0 and "3 agreements: 3 recorded" in out, err
    code, out, _ = recoup(capsys, "agreements", "cancel", plan_id, "--date", "2026-04-20")
    assert code == 0 and f"Cancelled agreement {plan_id} from 2026-04-20" in out
    code, out, _ = recoup(capsys, "agreements", "list", "--account", "A1")
    assert code == 0 and plan_id in out and "GOOD-1" in out and "APPROVED" not in out
    code, _, err = recoup(capsys, "agreements", "cancel", "NOPE", "--date", "2026-04-20")
    assert code == 1 and "there is no agreement 'NOPE'" in err
    connection = open_warehouse(cli_home / "warehouse" / "recoup.duckdb", read_only=True)
    by = dict(connection.execute("select agreement_id, recorded_by from ops.agreements").fetchall())
    connection.close()
    assert by[plan_id] == getpass.getuser() and by["GOOD-1"] == "Ann Lee"
