"""The monthly Metro 2 file from a small warehouse: each status rule, DOFD stability across
months, disputes, special cases, the furnishing rule, exactly once and byte-identical
regeneration, and a file that breaks a rule is never published."""

from __future__ import annotations

import datetime as dt
import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.bureau_file import BureauError, generate_bureau_file
from flows.lib.metro2_layout import BASE, K1, L1, TRAILER, split_fields
from flows.lib.metro2_validate import Metro2Invalid, validate_file
from tests.bureau_fixtures import World, bureau_settings

SEP, OCT, NOV = dt.date(2026, 9, 30), dt.date(2026, 10, 31), dt.date(2026, 11, 30)
TODAY = dt.date(2026, 12, 1)
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "metro2_2026-10.txt"


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


def generate(connection, home: Path, period: str, **settings):
    return generate_bureau_file(
        connection,
        bureau_settings(home, **settings),
        period,
        today=TODAY,
        now=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC),
    )


def bases(path: Path) -> dict[str, dict[str, str]]:
    """Each base record's fields by account number, plus its appended segments' text."""
    records = {}
    for line in path.read_text(encoding="ascii").splitlines()[1:-1]:
        fields = split_fields(BASE, line[: BASE.length])
        fields["appended"] = line[BASE.length :]
        records[fields["consumer_account_number"].strip()] = fields
    return records


def trailer(path: Path) -> dict[str, str]:
    return split_fields(TRAILER, path.read_text(encoding="ascii").splitlines()[-1])


def mmddyyyy(day: dt.date | None) -> str:
    return f"{day:%m%d%Y}" if day else "00000000"


# --- one month: each status ---------------------------------------------------------------


def october_world() -> World:
    world = World()
    for account, late in [
        ("L11", 10), ("L71", 45), ("L78", 70), ("L80", 100), ("L82", 130), ("L83", 160),
        ("L84", 200),
    ]:  # fmt: skip
        world.account(account)
        world.owes(account, OCT, "250.75", late, current="40.25" if late < 30 else "0")
    world.account("STAGE93")
    world.owes("STAGE93", OCT, "900.00", 120, stage="agency_placement")
    world.account("PLACED93")
    world.owes("PLACED93", OCT, "410.00", 95)
    world.placed("PLACED93", dt.date(2026, 10, 20))
    world.account("CHARGED")  # written off in full: no aging row, still owed
    world.adjusted("CHARGED", dt.date(2026, 9, 15), "300.00")
    world.owes("CHARGED", SEP, "300.00", 200)
    world.account("NOTHING")  # owes nothing, never reported
    world.account("BUSINESS", customer_type="business")
    world.owes("BUSINESS", OCT, "100.00", 45)
    world.account("CANADIAN", currency="CAD", country="CA")
    world.owes("CANADIAN", OCT, "100.00", 45)
    world.account("NOID", ssn=None, date_of_birth=None)
    world.owes("NOID", OCT, "100.00", 45)
    world.account("ITIN", ssn="912345678")
    world.owes("ITIN", OCT, "100.00", 45)
    world.account("DECEASED")
    world.owes("DECEASED", OCT, "100.00", 45)
    world.flagged("DECEASED", "deceased", dt.date(2026, 10, 2))
    world.account("BANKRUPT")
    world.owes("BANKRUPT", OCT, "100.00", 5)
    world.flagged("BANKRUPT", "bankruptcy", dt.date(2026, 10, 3))
    world.account("DISPUTED")
    world.owes("DISPUTED", OCT, "100.00", 45)
    world.disputed("DISPUTED", dt.date(2026, 10, 9))
    world.account("FRAUD")
    world.owes("FRAUD", OCT, "100.00", 45)
    world.flagged("FRAUD", "fraud", dt.date(2026, 10, 1))
    world.account("OBSOLETE")
    world.owes("OBSOLETE", OCT, "100.00", 3000)
    world.account("NONAME", full_name="   ")
    world.owes("NONAME", OCT, "100.00", 45)
    return world


def test_each_status_maps_from_the_aging_and_the_stage(connection, tmp_path) -> None:
    october_world().write(connection)
    outcome = generate(connection, tmp_path, "2026-10")
    records = bases(outcome.path)
    status = {account: fields["account_status"] for account, fields in records.items()}
    assert status == {
        "L11": "11", "L71": "71", "L78": "78", "L80": "80", "L82": "82", "L83": "83",
        "L84": "84", "STAGE93": "93", "PLACED93": "93", "CHARGED": "97", "ITIN": "71",
        "DECEASED": "71", "BANKRUPT": "11", "DISPUTED": "71",
    }  # fmt: skip
    assert outcome.not_reported == {
        "no_ssn_or_date_of_birth": 1,
        "fraud": 1,
        "obsolete": 1,
        "incomplete_name_or_address": 1,
    }
    current, late = records["L11"], records["L71"]
    assert (current["amount_past_due"], current["date_of_first_delinquency"]) == (
        "000000000",
        "00000000",
    )
    assert current["current_balance"] == "000000250"  # whole dollars, cents cut
    assert late["amount_past_due"] == "000000250"
    assert late["date_of_first_delinquency"] == mmddyyyy(OCT - dt.timedelta(days=45 - 30))
    assert late["payment_rating"] == " " and late["date_of_account_information"] == "10312026"
    charged = records["CHARGED"]
    assert (charged["current_balance"], charged["original_charge_off_amount"]) == (
        "000000300",
        "000000300",
    )
    assert charged["amount_past_due"] == "000000300"
    # special cases
    assert records["DECEASED"]["ecoa_code"] == "X"
    assert records["BANKRUPT"]["consumer_information_indicator"] == "Z "
    assert records["BANKRUPT"]["date_of_first_delinquency"] == "10032026"  # the petition date
    assert records["DISPUTED"]["compliance_condition_code"] == "XB"
    assert records["L71"]["compliance_condition_code"] == "  "
    assert records["ITIN"]["social_security_number"] == "000000000"  # no ITIN as an SSN
    assert records["L71"]["social_security_number"] == "123456789"
    assert (records["L71"]["surname"].strip(), records["L71"]["first_name"].strip()) == (
        "LEE",
        "ANN",
    )
    assert records["L71"]["portfolio_type"] + records["L71"]["account_type"] == "O92"
    assert all(fields["appended"] == "" for fields in records.values())  # first party: no K1
    totals = trailer(outcome.path)
    assert totals["total_base_records"] == f"{len(records):09d}"
    assert totals["block_count"] == f"{len(records) + 2:09d}"
    assert totals["total_status_code_93"] == "000000002"
    assert totals["total_status_code_71"] == "000000004"
    assert totals["total_ssns_base_segments"] == f"{len(records) - 1:09d}"  # the ITIN is not
    assert validate_file(outcome.path.read_bytes(), today=TODAY) == []


def test_the_file_is_owner_only_and_lists_what_was_held_back(connection, tmp_path) -> None:
    october_world().write(connection)
    outcome = generate(connection, tmp_path, "2026-10")
    assert outcome.path == tmp_path / "out" / "credit_bureau" / "2026-10" / "metro2_202610.txt"
    assert stat.S_IMODE(outcome.path.stat().st_mode) == 0o600
    held = (outcome.path.parent / "not_reported.csv").read_text(encoding="utf-8").splitlines()
    assert held[0] == "account_id,reason" and "FRAUD,fraud" in held
    assert "123456789" not in str(outcome)  # the summary never carries an SSN
    stored = connection.execute("select * from ops.bureau_records").fetchall()
    assert "123456789" not in repr(stored)  # nor does the warehouse


def test_the_golden_file_for_a_fixed_dataset(connection, tmp_path, update_golden) -> None:
    october_world().write(connection)
    data = generate(connection, tmp_path, "2026-10").path.read_bytes()
    if update_golden:
        GOLDEN.write_bytes(data)
    assert GOLDEN.exists(), f"{GOLDEN} is missing; run pytest --update-golden and review it"
    assert data == GOLDEN.read_bytes(), (
        "the Metro 2 file changed; if that is intended, run pytest --update-golden and review "
        "the diff"
    )
    assert all(len(line) in (426, 426 + K1.length) for line in data.splitlines())


def test_regenerating_a_period_writes_the_same_bytes_and_no_second_record(
    connection, tmp_path
) -> None:
    october_world().write(connection)
    first = generate(connection, tmp_path, "2026-10")
    data = first.path.read_bytes()
    again = generate(connection, tmp_path, "2026-10")
    assert again.replaced and not first.replaced
    assert "generated again: the same bytes as before" in str(again)
    assert again.path.read_bytes() == data and again.file_sha256 == first.file_sha256
    [(rows, accounts)] = connection.execute(
        "select count(*), count(distinct account_id) from ops.bureau_records "
        "where period = '2026-10'"
    ).fetchall()
    assert rows == accounts == first.records


# --- across months ------------------------------------------------------------------------


def two_months() -> World:
    world = World()
    world.account("PARTIAL")  # 60 days late in September; a partial payment in October
    world.owes("PARTIAL", SEP, "500.00", 60)
    world.owes("PARTIAL", OCT, "200.00", 40)
    world.paid("PARTIAL", dt.date(2026, 10, 12), "300.00")
    world.account("PAID", status="closed")  # 45 days late in September, paid, closed
    world.owes("PAID", SEP, "120.00", 45)
    world.paid("PAID", dt.date(2026, 10, 4), "120.00")
    world.account("PAIDUP")  # the same, but the account stays open: current at zero
    world.owes("PAIDUP", SEP, "120.00", 45)
    world.paid("PAIDUP", dt.date(2026, 10, 4), "120.00")
    world.account("COLLECTED")  # placed, then paid
    world.owes("COLLECTED", SEP, "800.00", 130)
    world.placed("COLLECTED", dt.date(2026, 9, 1))
    world.paid("COLLECTED", dt.date(2026, 10, 20), "800.00")
    world.account("RECOVERED")  # charged off, then paid
    world.adjusted("RECOVERED", dt.date(2026, 9, 1), "300.00")
    world.paid("RECOVERED", dt.date(2026, 10, 15), "300.00")
    world.owes("RECOVERED", OCT, "0", 0)
    world.aging[-1]["credit_balance"] = world.aging[-1]["total_open"] + 300
    world.account("SETTLED")  # 71 in September; paid part and the rest settled in October
    world.owes("SETTLED", SEP, "1000.00", 50)
    world.paid("SETTLED", dt.date(2026, 10, 5), "600.00")
    world.adjusted("SETTLED", dt.date(2026, 10, 5), "400.00", reason="settlement agreed")
    world.account("REJECTED")  # disputed in September; dispute rejected in October
    world.owes("REJECTED", SEP, "100.00", 40)
    world.owes("REJECTED", OCT, "100.00", 71)
    world.disputed("REJECTED", dt.date(2026, 9, 10), dt.date(2026, 10, 10), "rejected")
    world.account("UPHELD")
    world.owes("UPHELD", SEP, "100.00", 40)
    world.owes("UPHELD", OCT, "100.00", 71)
    world.disputed("UPHELD", dt.date(2026, 9, 10), dt.date(2026, 10, 10), "upheld")
    world.account("CURED")  # late in September, current in October
    world.owes("CURED", SEP, "100.00", 35)
    world.owes("CURED", OCT, "100.00", 5)
    world.account("FRAUD")  # reported in September; a fraud flag in October
    world.owes("FRAUD", SEP, "100.00", 40)
    world.owes("FRAUD", OCT, "100.00", 71)
    world.flagged("FRAUD", "fraud", dt.date(2026, 10, 2))
    return world


def test_statuses_move_and_the_dofd_never_moves_later(connection, tmp_path) -> None:
    world = two_months()
    world.write(connection)
    september = bases(generate(connection, tmp_path, "2026-09").path)
    october_outcome = generate(connection, tmp_path, "2026-10")
    october = bases(october_outcome.path)
    first_delinquency = mmddyyyy(SEP - dt.timedelta(days=60 - 30))
    assert september["PARTIAL"]["date_of_first_delinquency"] == first_delinquency
    # the partial payment leaves a younger oldest item; the reported DOFD stays
    assert october["PARTIAL"]["account_status"] == "71"
    assert october["PARTIAL"]["date_of_first_delinquency"] == first_delinquency
    assert october["PARTIAL"]["actual_payment_amount"] == "000000300"
    assert october["PARTIAL"]["payment_history_profile"][0] == "2"  # September: 60-89 late
    assert september["PAID"]["account_status"] == "71"
    paid = october["PAID"]
    assert (paid["account_status"], paid["payment_rating"], paid["current_balance"]) == (
        "13",
        "1",
        "000000000",
    )
    assert paid["date_closed"] == "10042026" and paid["date_of_last_payment"] == "10042026"
    assert paid["date_of_first_delinquency"] == september["PAID"]["date_of_first_delinquency"]
    paid_up = october["PAIDUP"]
    assert (paid_up["account_status"], paid_up["current_balance"]) == ("11", "000000000")
    assert (paid_up["date_of_first_delinquency"], paid_up["date_closed"]) == ("00000000",) * 2
    assert (september["COLLECTED"]["account_status"], october["COLLECTED"]["account_status"]) == (
        "93",
        "62",
    )
    assert september["RECOVERED"]["account_status"] == "97"
    assert october["RECOVERED"]["account_status"] == "64"
    assert october["RECOVERED"]["original_charge_off_amount"] == "000000300"
    settled = october["SETTLED"]
    assert (settled["account_status"], settled["special_comment"]) == ("13", "AU")
    assert september["REJECTED"]["compliance_condition_code"] == "XB"
    assert october["REJECTED"]["compliance_condition_code"] == "XC"
    assert october["UPHELD"]["compliance_condition_code"] == "XH"
    assert october["CURED"]["account_status"] == "11"
    assert october["CURED"]["date_of_first_delinquency"] == "00000000"
    assert october["FRAUD"]["account_status"] == "DF"
    # November: the closed-out accounts are not reported again, the codes are not repeated
    world.owes("PARTIAL", NOV, "200.00", 70)
    world.owes("REJECTED", NOV, "100.00", 101)
    world.owes("RECOVERED", NOV, "0", 0)  # the recovery is still there as a credit
    world.aging[-1]["credit_balance"] = 300
    world.write(connection)
    november_outcome = generate(connection, tmp_path, "2026-11")
    november = bases(november_outcome.path)
    # open accounts that owe nothing stay reported, current at zero; PAID (closed) is not
    assert set(november) == {"PARTIAL", "REJECTED", "CURED", "UPHELD", "PAIDUP"}
    assert {november[a]["account_status"] for a in ("CURED", "UPHELD", "PAIDUP")} == {"11"}
    assert november["PARTIAL"]["date_of_first_delinquency"] == first_delinquency
    assert november["PARTIAL"]["payment_history_profile"][:2] == "12"  # Oct 30-59, Sep 60-89
    assert november["REJECTED"]["compliance_condition_code"] == "  "  # the bureaus keep XC
    assert "FRAUD" not in november and november_outcome.not_reported == {}  # deleted once


def test_an_identification_number_change_sends_one_l1(connection, tmp_path) -> None:
    world = World()
    world.account("A1")
    world.owes("A1", SEP, "100.00", 40)
    world.owes("A1", OCT, "100.00", 70)
    world.owes("A1", NOV, "100.00", 100)
    world.write(connection)
    generate(connection, tmp_path, "2026-09", identification_number="OLDID0001")
    october = bases(
        generate(connection, tmp_path, "2026-10", identification_number="NEWID0002").path
    )
    record = october["A1"]
    assert record["identification_number"].strip() == "OLDID0001"  # the old number, this once
    change = split_fields(L1, record["appended"])
    assert (change["change_indicator"], change["new_identification_number"].strip()) == (
        "2",
        "NEWID0002",
    )
    november = bases(
        generate(connection, tmp_path, "2026-11", identification_number="NEWID0002").path
    )
    assert november["A1"]["identification_number"].strip() == "NEWID0002"
    assert november["A1"]["appended"] == ""


# --- third party --------------------------------------------------------------------------


def test_third_party_reports_as_an_agency_only_after_a_contact_and_a_wait(
    connection, tmp_path
) -> None:
    world = World()
    for account in ("WAITED", "TOO_SOON", "BOUNCED", "NEVER"):
        world.account(account)
        world.owes(account, OCT, "100.00", 100)
    world.contacted("WAITED", dt.datetime(2026, 10, 10, 15, tzinfo=dt.UTC))
    world.contacted("TOO_SOON", dt.datetime(2026, 10, 25, 15, tzinfo=dt.UTC))
    world.contacted("BOUNCED", dt.datetime(2026, 10, 1, 15, tzinfo=dt.UTC), "email", True)
    world.write(connection)
    outcome = generate(connection, tmp_path, "2026-10", collector_type="third_party")
    records = bases(outcome.path)
    assert set(records) == {"WAITED"}
    assert outcome.not_reported == {"not_contacted_yet": 3}
    record = records["WAITED"]
    assert record["portfolio_type"] + record["account_type"] == "O48"
    assert (record["account_status"], record["terms_duration"]) == ("93", "001")
    creditor = split_fields(K1, record["appended"])
    assert creditor["original_creditor_name"].strip() == "ACME UTILITIES"
    assert creditor["creditor_classification"] == "10"
    assert trailer(outcome.path)["total_original_creditor_segments"] == "000000001"


# --- refusals -----------------------------------------------------------------------------


def test_a_period_not_over_or_never_built_writes_nothing(connection, tmp_path) -> None:
    october_world().write(connection)
    with pytest.raises(BureauError, match="2026-12 is not over yet"):
        generate(connection, tmp_path, "2026-12")
    with pytest.raises(BureauError, match=r"never built for a date in 2026-08.*--as-of 2026-08-31"):
        generate(connection, tmp_path, "2026-08")
    assert not (tmp_path / "out").exists()


def test_a_file_that_breaks_a_rule_is_not_published_and_names_record_and_field(
    connection, tmp_path
) -> None:
    october_world().write(connection)
    # account type 48 (collection agency) needs a K1, which a first party never sends
    with pytest.raises(Metro2Invalid) as error:
        generate(connection, tmp_path, "2026-10", account_type="48")
    assert "record 2" in str(error.value) and "account_type" in str(error.value)
    assert not (tmp_path / "out" / "credit_bureau" / "2026-10").exists()
    assert connection.execute("select count(*) from ops.bureau_records").fetchone() == (0,)


def test_the_dofd_is_kept_even_when_the_history_would_move_it(connection, tmp_path) -> None:
    """The bureaus hold September's DOFD; October's history, rebuilt without the late days,
    would say later. The record keeps what was reported (never re-aged)."""
    world = World()
    world.account("A1")
    world.owes("A1", SEP, "500.00", 60)
    world.write(connection)
    september = bases(generate(connection, tmp_path, "2026-09").path)["A1"]
    world.aging.clear()  # history rebuilt: September's late row is gone
    world.owes("A1", OCT, "200.00", 40)
    world.write(connection)
    october = bases(generate(connection, tmp_path, "2026-10").path)["A1"]
    assert october["date_of_first_delinquency"] == september["date_of_first_delinquency"]
    assert october["date_of_first_delinquency"] == mmddyyyy(SEP - dt.timedelta(days=30))


def test_a_new_delinquency_after_a_closed_record_starts_a_new_dofd(connection, tmp_path) -> None:
    world = World()
    world.account("A1", status="closed")
    world.owes("A1", SEP, "100.00", 45)
    world.paid("A1", dt.date(2026, 10, 3), "100.00")
    world.built(OCT)
    world.write(connection)
    generate(connection, tmp_path, "2026-09")
    assert bases(generate(connection, tmp_path, "2026-10").path)["A1"]["account_status"] == "13"
    world.owes("A1", NOV, "80.00", 35)  # billed again, and late again
    world.write(connection)
    november = bases(generate(connection, tmp_path, "2026-11").path)["A1"]
    assert november["account_status"] == "71"
    assert november["date_of_first_delinquency"] == mmddyyyy(NOV - dt.timedelta(days=5))


def test_bankruptcy_reports_the_petition_date_without_re_aging(connection, tmp_path) -> None:
    world = World()
    world.account("A1")  # late in September; current and in bankruptcy in October
    world.owes("A1", SEP, "100.00", 45)
    world.owes("A1", OCT, "100.00", 5)
    world.flagged("A1", "bankruptcy", dt.date(2026, 10, 3))
    world.account("A2")  # in bankruptcy while current in September; late in October
    world.owes("A2", SEP, "100.00", 5)
    world.owes("A2", OCT, "100.00", 45)
    world.flagged("A2", "bankruptcy", dt.date(2026, 9, 3))
    world.write(connection)
    september = bases(generate(connection, tmp_path, "2026-09").path)
    october = bases(generate(connection, tmp_path, "2026-10").path)  # not refused
    assert september["A2"]["date_of_first_delinquency"] == "09032026"  # the petition
    assert (october["A1"]["account_status"], october["A1"]["date_of_first_delinquency"]) == (
        "11",
        "10032026",
    )
    assert october["A1"]["consumer_information_indicator"] == "Z "
    # the petition date is not a delinquency: October's DOFD is the real one
    assert (october["A2"]["account_status"], october["A2"]["date_of_first_delinquency"]) == (
        "71",
        mmddyyyy(OCT - dt.timedelta(days=15)),
    )


def test_the_profile_uses_what_was_reported_for_a_month(connection, tmp_path) -> None:
    world = World()
    world.account("A1")  # placed in September (93, G) though 95 days late (3)
    world.owes("A1", SEP, "400.00", 95)
    world.placed("A1", dt.date(2026, 9, 20))
    world.owes("A1", OCT, "400.00", 126)
    world.write(connection)
    assert bases(generate(connection, tmp_path, "2026-09").path)["A1"]["account_status"] == "93"
    october = bases(generate(connection, tmp_path, "2026-10").path)["A1"]
    # September as reported (G), not as the aging says (3); nothing built before: D, then B
    # for the months before the account was opened (2025-01-15)
    assert october["payment_history_profile"] == "G" + "D" * 20 + "B" * 3


def test_third_party_reports_paid_as_62(connection, tmp_path) -> None:
    world = World()
    world.account("A1")
    world.owes("A1", SEP, "100.00", 100)
    world.contacted("A1", dt.datetime(2026, 9, 1, 15, tzinfo=dt.UTC))
    world.paid("A1", dt.date(2026, 10, 7), "100.00")
    world.built(OCT)
    world.write(connection)
    generate(connection, tmp_path, "2026-09", collector_type="third_party")
    october = bases(generate(connection, tmp_path, "2026-10", collector_type="third_party").path)
    record = october["A1"]
    assert (record["account_status"], record["current_balance"]) == ("62", "000000000")
    assert record["date_of_first_delinquency"] != "00000000"
    assert split_fields(K1, record["appended"])["segment_identifier"] == "K1"


def test_a_period_with_blanks_is_the_same_period(connection, tmp_path) -> None:
    october_world().write(connection)
    first = generate(connection, tmp_path, " 2026-10 ")
    assert first.period == "2026-10" and first.path.parent.name == "2026-10"
    again = generate(connection, tmp_path, "2026-10")
    assert again.replaced
    [(periods,)] = connection.execute(
        "select count(distinct period) from ops.bureau_records"
    ).fetchall()
    assert periods == 1


def test_a_failure_while_recording_publishes_nothing(connection, tmp_path, monkeypatch) -> None:
    import flows.lib.bureau_file as bureau_file

    october_world().write(connection)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bureau_file, "_store", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(connection, tmp_path, "2026-10")
    folder = tmp_path / "out" / "credit_bureau" / "2026-10"
    assert list(folder.iterdir()) == []  # no file, not even a pending one


def test_cents_left_on_an_old_invoice_do_not_make_an_account_late(connection, tmp_path) -> None:
    """Money is whole dollars: an account 126 days late by 61 cents is not 120 days late
    (status 82 with an amount past due of 0 would break Metro 2), it is as late as its
    whole dollars are."""
    world = World()
    world.account("CENTS")  # 0.61 at 126 days, 78.22 at 20 days
    world.owes("CENTS", OCT, "78.83", 126)
    world.aging[-1].update(dpd_121_150=Decimal("0.61"), dpd_1_30=Decimal("78.22"))
    world.account("MIXED")  # 0.50 at 200 days, 50.00 at 70 days
    world.owes("MIXED", OCT, "50.50", 200)
    world.aging[-1].update(dpd_181_plus=Decimal("0.50"), dpd_61_90=Decimal("50.00"))
    world.write(connection)
    records = bases(generate(connection, tmp_path, "2026-10").path)
    cents, mixed = records["CENTS"], records["MIXED"]
    assert (cents["account_status"], cents["amount_past_due"]) == ("11", "000000000")
    assert cents["date_of_first_delinquency"] == "00000000"
    assert (mixed["account_status"], mixed["amount_past_due"]) == ("78", "000000050")


def test_portfolio_and_account_type_follow_the_segment(connection, tmp_path) -> None:
    world = World()
    world.account("CLINIC", segment="healthcare")
    world.owes("CLINIC", OCT, "100.00", 45)
    world.account("HOME")
    world.owes("HOME", OCT, "100.00", 45)
    world.account("SHOP", segment="retail")
    world.owes("SHOP", OCT, "100.00", 45)
    world.write(connection)
    segments = {"retail": {"portfolio_type": "R", "account_type": "18"}}
    records = bases(generate(connection, tmp_path, "2026-10", segments=segments).path)
    kinds = {
        a: r["portfolio_type"] + r["account_type"] + r["terms_duration"] for a, r in records.items()
    }
    assert kinds == {"CLINIC": "O92001", "HOME": "O92001", "SHOP": "R18REV"}
    defaults = bases(generate(connection, tmp_path, "2026-10").path)  # the shipped settings
    assert defaults["CLINIC"]["account_type"] == "90"  # medical debt


def test_no_ssn_reaches_a_log_line_or_an_error(connection, tmp_path, caplog) -> None:
    """The SSN is in the file only: not in any log record, even at DEBUG, nor in the error of
    a file that fails validation."""
    import logging

    caplog.set_level(logging.DEBUG)
    october_world().write(connection)
    generate(connection, tmp_path, "2026-10")
    with pytest.raises(Metro2Invalid) as refused:
        generate(connection, tmp_path, "2026-10", account_type="48")
    assert "123456789" not in caplog.text
    assert "123456789" not in str(refused.value)
    assert all("123456789" not in str(problem) for problem in refused.value.problems)
