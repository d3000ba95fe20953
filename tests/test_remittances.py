"""Remittance files from collection agencies (issue 7, items 4 and 5): the import's checks and
quarantine (flows/lib/remittances.py), then, after one dbt build, how agency collections
reach balances (counted once), holds and the agency marts.

Placements are written straight into ops.placements here: placing accounts is another step's
job, and these tests only need the ledger rows it writes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.dbt_build import build_warehouse
from flows.lib.loader import load_batch
from flows.lib.placements import placement_id
from flows.lib.remittances import RemittanceFileError, import_remittance_file
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration]
AS_OF = dt.date(2026, 3, 31)
AGENCIES = ("northwind", "summit")
HEADER = (
    "remittance_id,account_id,placement_id,paid_date,collected_amount,commission_amount,currency"
)


def place(
    connection: duckdb.DuckDBPyConnection,
    account_id: str,
    agency_id: str = "northwind",
    placed: str = "2026-02-01",
    balance: str = "100.00",
    currency: str = "USD",
    recalled: str | None = None,
    reason: str | None = None,
) -> str:
    """One placement row as the placement step writes it; returns its id."""
    placed_date = dt.date.fromisoformat(placed)
    identifier = placement_id(account_id, agency_id, placed_date)
    connection.execute(
        """
        insert into ops.placements (placement_id, account_id, customer_id, agency_id, status,
            placed_date, placed_run_id, recalled_date, recall_reason, currency, placed_balance,
            commission_rate)
        values (?, ?, 'C1', ?, ?, ?, 'test-run', ?, ?, ?, ?, 0.25)
        """,
        [
            identifier,
            account_id,
            agency_id,
            "recalled" if recalled else "open",
            placed_date,
            recalled,
            reason,
            currency,
            Decimal(balance),
        ],
    )
    return identifier


def remittance_file(folder: Path, name: str, *lines: str, header: str = HEADER) -> Path:
    path = folder / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def load(connection, path: Path, agency_id: str = "northwind"):
    return import_remittance_file(connection, path, agency_id, today=AS_OF, agency_ids=AGENCIES)


def loaded_ids(connection) -> list[str]:
    return [
        key
        for (key,) in connection.execute(
            "select remittance_key from ops.remittances order by 1"
        ).fetchall()
    ]


def quarantined(connection) -> dict[int, list[str]]:
    rows = connection.execute(
        "select line_number, reason_codes from ops.remittance_quarantine order by 1"
    ).fetchall()
    return {line: codes for line, codes in rows}


# --- the import ---------------------------------------------------------------------------


def test_a_good_file_loads_with_its_placement_and_totals_per_currency(warehouse, tmp_path) -> None:
    usd = place(warehouse, "A1", balance="500.00")
    cad = place(warehouse, "A2", balance="500.00", currency="CAD")
    path = remittance_file(
        tmp_path,
        "northwind-2026-03-31.csv",
        "R1,A1,,2026-03-01,100,25.00,USD",  # no placement_id: the account's placement
        f"R2,A1,{usd},2026-03-02,50.5,12.63,USD",
        "R3,A2,,2026-03-03,80.00,0,CAD",  # a commission of 0 is allowed
    )
    outcome = load(warehouse, path)
    assert (outcome.status, outcome.lines_read, outcome.lines_loaded, outcome.lines_quarantined) == (
        "loaded", 3, 3, 0,
    )  # fmt: skip
    assert outcome.collected_by_currency == {"USD": Decimal("150.50"), "CAD": Decimal("80.00")}
    assert outcome.commission_by_currency == {"USD": Decimal("37.63"), "CAD": Decimal("0.00")}
    rows = warehouse.execute(
        "select remittance_key, placement_id, collected_amount, line_number, file_name "
        "from ops.remittances order by 1"
    ).fetchall()
    assert rows == [
        ("northwind:R1", usd, Decimal("100.00"), 2, path.name),
        ("northwind:R2", usd, Decimal("50.50"), 3, path.name),
        ("northwind:R3", cad, Decimal("80.00"), 4, path.name),
    ]
    files = warehouse.execute(
        "select lines_read, lines_loaded, lines_quarantined from ops.remittance_files"
    ).fetchall()
    assert files == [(3, 3, 0)]
    assert "3 loaded" in str(outcome) and "USD: collected 150.50" in str(outcome)


BAD_LINES = [
    pytest.param("R9,NOBODY,,2026-03-05,10,1,USD", "unknown_account", id="account not placed"),
    pytest.param("R9,A1,,2026-01-15,10,1,USD", "unknown_account", id="paid before the placement"),
    pytest.param(
        "R9,A1,not-a-placement,2026-03-05,10,1,USD", "unknown_account", id="another placement"
    ),
    pytest.param("R9,A2,,2026-03-05,10,1,USD", "unknown_account", id="placed with another agency"),
    pytest.param("R1,A1,,2026-03-05,10,1,USD", "duplicate_line", id="remittance id twice"),
    pytest.param("R9,A1,,2026-03-05,60.00,1,USD", "exceeds_balance", id="above placed balance"),
    pytest.param("R9,A1,,2026-02-30,10,1,USD", "bad_date", id="no such day"),
    pytest.param("R9,A1,,03/05/2026,10,1,USD", "bad_date", id="not YYYY-MM-DD"),
    pytest.param("R9,A1,,2026-04-01,10,1,USD", "future_date", id="paid after today"),
    pytest.param("R9,A1,,2026-03-05,1e3,1,USD", "bad_amount", id="exponent"),
    pytest.param("R9,A1,,2026-03-05,10.005,1,USD", "bad_amount", id="three decimals"),
    pytest.param("R9,A1,,2026-03-05,0.00,0,USD", "zero_amount", id="nothing collected"),
    pytest.param("R9,A1,,2026-03-05,-10,1,USD", "negative_amount", id="negative collected"),
    pytest.param("R9,A1,,2026-03-05,10,-1,USD", "negative_amount", id="negative commission"),
    pytest.param(
        "R9,A1,,2026-03-05,10,11,USD", "commission_exceeds_collected", id="commission too big"
    ),
    pytest.param("R9,A1,,2026-03-05,10,1,CAD", "currency_mismatch", id="other currency"),
    pytest.param(",A1,,2026-03-05,10,1,USD", "missing_value", id="no remittance id"),
    pytest.param("R9,A1,,2026-03-05,,1,USD", "missing_value", id="no amount"),
    pytest.param("R9,A1,,2026-03-05,10", "unreadable_row", id="too few fields"),
]


@pytest.mark.parametrize(("bad_line", "reason"), BAD_LINES)
def test_a_bad_line_is_quarantined_with_its_reason_and_line(
    warehouse, tmp_path, bad_line: str, reason: str
) -> None:
    place(warehouse, "A1", balance="100.00")  # placed 2026-02-01
    place(warehouse, "A2", agency_id="summit")
    path = remittance_file(
        tmp_path,
        "remit.csv",
        "R1,A1,,2026-03-01,50.00,12.50,USD",  # line 2: good
        bad_line,  # line 3
        "R2,A1,,2026-03-10,40.00,10.00,USD",  # line 4: good (50 + 40 stay within 100)
    )
    outcome = load(warehouse, path)
    assert quarantined(warehouse) == {3: [reason]}
    assert loaded_ids(warehouse) == ["northwind:R1", "northwind:R2"]
    assert (outcome.lines_read, outcome.lines_loaded, outcome.quarantined_by_reason) == (
        3, 2, {reason: 1},
    )  # fmt: skip
    [(file_name, message)] = warehouse.execute(
        "select file_name, reasons from ops.remittance_quarantine"
    ).fetchall()
    assert file_name == "remit.csv" and len(message) > 20  # says what is wrong and what to do


def test_reasons_say_what_is_wrong_and_what_to_do(warehouse, tmp_path) -> None:
    identifier = place(warehouse, "A1", balance="100.00")
    remittance_file(tmp_path, "first.csv", "R1,A1,,2026-03-01,70.00,0,USD")
    load(warehouse, tmp_path / "first.csv")
    remittance_file(
        tmp_path,
        "second.csv",
        "R1,A1,,2026-03-02,5.00,0,USD",
        "R2,A1,,2026-03-02,40.00,0,USD",
        "R3,NOBODY,,2026-03-02,5.00,0,USD",
        "R4,A1,,2026-03-02,5.00,0,EUR",
    )
    load(warehouse, tmp_path / "second.csv")
    reasons = dict(
        warehouse.execute(
            "select line_number, reasons from ops.remittance_quarantine order by 1"
        ).fetchall()
    )
    assert "was loaded before (first.csv, line 2)" in reasons[2]
    assert f"placement {identifier} to 110.00, above its placed balance 100.00" in reasons[3]
    assert "'NOBODY' has no placement with northwind made on or before" in reasons[4]
    assert "'EUR' differs from the currency USD" in reasons[5]


def test_a_remittance_id_twice_in_a_file_loads_the_first_copy_only(warehouse, tmp_path) -> None:
    place(warehouse, "A1", balance="500.00")
    path = remittance_file(
        tmp_path,
        "remit.csv",
        "R1,A1,,2026-03-01,10.00,0,USD",
        "R1,A1,,2026-03-02,20.00,0,USD",
        "R1,A1,,2026-03-03,30.00,0,USD",
    )
    load(warehouse, path)
    assert quarantined(warehouse) == {3: ["duplicate_line"], 4: ["duplicate_line"]}
    assert warehouse.execute("select collected_amount from ops.remittances").fetchall() == [
        (Decimal("10.00"),)
    ]


def test_a_line_loaded_from_an_earlier_file_is_a_duplicate_in_the_next(warehouse, tmp_path) -> None:
    place(warehouse, "A1", balance="500.00")
    place(warehouse, "A2", agency_id="summit", balance="500.00")
    load(warehouse, remittance_file(tmp_path, "first.csv", "R1,A1,,2026-03-01,10.00,0,USD"))
    second = remittance_file(
        tmp_path, "second.csv", "R2,A1,,2026-03-02,20.00,0,USD", "R1,A1,,2026-03-01,10.00,0,USD"
    )
    outcome = load(warehouse, second)
    assert (outcome.lines_loaded, outcome.quarantined_by_reason) == (1, {"duplicate_line": 1})
    assert quarantined(warehouse) == {3: ["duplicate_line"]}
    # remittance ids are the agency's own: another agency may use R1
    load(
        warehouse,
        remittance_file(tmp_path, "summit.csv", "R1,A2,,2026-03-01,10.00,0,USD"),
        "summit",
    )
    assert loaded_ids(warehouse) == ["northwind:R1", "northwind:R2", "summit:R1"]


def test_the_balance_counts_earlier_loads_and_the_good_lines_above_in_line_order(
    warehouse, tmp_path
) -> None:
    place(warehouse, "A1", balance="100.00")
    load(warehouse, remittance_file(tmp_path, "first.csv", "R1,A1,,2026-03-01,60.00,0,USD"))
    second = remittance_file(
        tmp_path,
        "second.csv",
        "R2,A1,,2026-03-02,50.00,0,USD",  # 60 + 50 > 100: set aside
        "R3,A1,,2026-03-03,bad,0,USD",  # bad amount: not counted either
        "R4,A1,,2026-03-04,40.00,0,USD",  # 60 + 40 = 100: the whole balance, fine
        "R5,A1,,2026-03-05,0.01,0,USD",  # nothing left
    )
    load(warehouse, second)
    assert quarantined(warehouse) == {
        2: ["exceeds_balance"],
        3: ["bad_amount"],
        5: ["exceeds_balance"],
    }
    assert loaded_ids(warehouse) == ["northwind:R1", "northwind:R4"]


def test_a_line_goes_to_the_placement_it_was_paid_under(warehouse, tmp_path) -> None:
    first = place(warehouse, "A1", placed="2026-01-05", recalled="2026-02-01", reason="recalled")
    second = place(warehouse, "A1", placed="2026-02-15")
    path = remittance_file(
        tmp_path,
        "remit.csv",
        "R1,A1,,2026-01-20,10.00,0,USD",  # paid while the first placement was open
        "R2,A1,,2026-03-01,10.00,0,USD",
        f"R3,A1,{first},2026-03-02,10.00,0,USD",  # names the earlier placement
    )
    load(warehouse, path)
    rows = warehouse.execute(
        "select remittance_id, placement_id from ops.remittances order by 1"
    ).fetchall()
    assert rows == [("R1", first), ("R2", second), ("R3", first)]


def test_line_numbers_count_as_a_text_editor_does(warehouse, tmp_path) -> None:
    place(warehouse, "A1", balance="500.00")
    path = tmp_path / "remit.csv"
    path.write_bytes(
        (
            "\ufeff" + HEADER + "\r\n"
            '"R1",A1,,2026-03-01,10.00,0,USD\r\n'
            '"R2\r\nsecond line",A1,,2026-03-01,10.00,0,USD\r\n'  # a quoted line break
            "\r\n"  # a blank line
            "R3,A1,,2026-02-30,10.00,0,USD\r\n"
        ).encode("utf-8")
    )
    outcome = load(warehouse, path)
    # a line break inside an id is a control character (docs/hostile-input.md); the line
    # after it is still counted as line 6
    assert quarantined(warehouse) == {3: ["control_character"], 6: ["bad_date"]}
    assert outcome.lines_loaded == 1


def test_the_same_file_twice_changes_nothing(warehouse, tmp_path) -> None:
    place(warehouse, "A1", balance="100.00")
    path = remittance_file(
        tmp_path, "remit.csv", "R1,A1,,2026-03-01,10.00,0,USD", "R2,NOBODY,,2026-03-01,1,0,USD"
    )
    first = load(warehouse, path)

    def tables() -> list:
        return [
            warehouse.execute(f"select count(*) from ops.{table}").fetchall()[0][0]
            for table in ("remittances", "remittance_quarantine", "remittance_files")
        ]

    before = tables()
    again = load(warehouse, path)
    renamed = path.rename(tmp_path / "remit-resent.csv")  # same content under another name
    resent = load(warehouse, renamed)
    assert before == [1, 1, 1] and tables() == before
    assert first.changed and not again.changed and not resent.changed
    assert (again.status, again.lines_loaded, again.loaded_at) == ("unchanged", 0, first.loaded_at)
    assert "already loaded" in str(again) and "nothing changed" in str(again)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param(
            "remit.csv",
            "remittance_id,account_id,paid_date,amount,commission_amount,currency\n"
            "R1,A1,2026-03-01,10.00,0,USD\n",
            "missing column(s) collected_amount; unknown column(s) 'amount'",
            id="wrong header",
        ),
        pytest.param(
            "remit.csv",
            "R1,A1,,2026-03-01,10.00,0,USD\n",
            "wrong header for a remittance file",
            id="no header",
        ),
        pytest.param(
            "remit.xlsx", "PK\x03\x04 a spreadsheet", "remittance files are CSV", id="not CSV"
        ),
        pytest.param("remit.csv", "", "is empty", id="empty file"),
        pytest.param("remit.csv", "\x00\x01binary", "binary data", id="binary content"),
    ],
)
def test_a_file_that_cannot_be_read_fails_and_loads_nothing(
    warehouse, tmp_path, name: str, content: str, message: str
) -> None:
    place(warehouse, "A1")
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RemittanceFileError) as failure:
        load(warehouse, path)
    assert message in str(failure.value)
    for table in ("remittances", "remittance_quarantine", "remittance_files"):
        assert warehouse.execute(f"select count(*) from ops.{table}").fetchall() == [(0,)]


def test_an_unknown_agency_fails_the_file(warehouse, tmp_path) -> None:
    path = remittance_file(tmp_path, "remit.csv", "R1,A1,,2026-03-01,10.00,0,USD")
    with pytest.raises(RemittanceFileError, match="'eastwind' is not a configured agency"):
        load(warehouse, path, "eastwind")
    assert warehouse.execute("select count(*) from ops.remittance_files").fetchall() == [(0,)]


# --- the warehouse, after one dbt build ---------------------------------------------------


def account(account_id: str, currency: str = "USD") -> dict:
    return row("accounts", account_id=account_id, currency=currency)


def invoice(invoice_id: str, account_id: str, amount: str, currency: str = "USD") -> dict:
    # due 2025-12-21: 100 days past due on AS_OF, where the ladder says final notice first
    return row(
        "invoices",
        invoice_id=invoice_id,
        account_id=account_id,
        amount=amount,
        currency=currency,
        issue_date="2025-11-21",
        due_date="2025-12-21",
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp("remittances")
    warehouse = root / "warehouse.duckdb"
    connection = open_warehouse(warehouse)
    batch = write_batch(
        root / "batch",
        customers=[row("customers")],
        accounts=[
            account("AGENCY-ONLY"),  # the agency collected; billing does not know
            account("BOOKED"),  # the agency collected and the creditor booked it too
            account("HELD"),  # placed, nothing collected yet
            account("TWIN"),  # HELD's twin, never placed
            account("RECALLED"),  # placed, recalled before AS_OF
            account("LATER"),  # placed after AS_OF
            account("CAD-ACC", currency="CAD"),
        ],
        invoices=[
            invoice("AO-1", "AGENCY-ONLY", "300.00"),
            invoice("BK-1", "BOOKED", "300.00"),
            invoice("HE-1", "HELD", "100.00"),
            invoice("TW-1", "TWIN", "100.00"),
            invoice("RE-1", "RECALLED", "100.00"),
            invoice("LA-1", "LATER", "100.00"),
            invoice("CA-1", "CAD-ACC", "200.00", currency="CAD"),
        ],
        payments=[
            # the creditor books BOOKED's remittance a week after the customer paid the agency
            row(
                "payments",
                payment_id="BK-P",
                account_id="BOOKED",
                amount="100.00",
                received_date="2026-03-12",
            ),
        ],
    )
    assert load_batch(connection, batch).rows_quarantined == 0
    place(connection, "AGENCY-ONLY", placed="2026-02-01", balance="300.00")
    place(connection, "BOOKED", placed="2026-02-10", balance="300.00")
    place(connection, "HELD", placed="2026-03-20", balance="100.00")
    place(
        connection,
        "RECALLED",
        agency_id="summit",
        placed="2026-01-05",
        recalled="2026-03-01",
        reason="max_placement_days",
    )
    place(connection, "LATER", placed="2026-04-02")
    place(
        connection,
        "CAD-ACC",
        agency_id="summit",
        placed="2026-02-10",
        balance="200.00",
        currency="CAD",
    )
    northwind = remittance_file(
        root,
        "northwind.csv",
        "N-1,AGENCY-ONLY,,2026-03-01,100.00,25.00,USD",
        "N-2,BOOKED,,2026-03-05,100.00,25.00,USD",
    )
    summit = remittance_file(
        root,
        "summit.csv",
        "S-1,RECALLED,,2026-03-10,10.00,2.80,USD",  # collected after the recall
        "S-2,CAD-ACC,,2026-03-15,50.00,14.00,CAD",
    )
    assert load(connection, northwind).lines_loaded == 2
    assert load(connection, summit, "summit").lines_loaded == 2
    connection.close()
    build_warehouse(warehouse, root / "state", AS_OF)
    connection = open_warehouse(warehouse, read_only=True)
    yield connection
    connection.close()


def by_key(connection, sql: str, key: str) -> dict:
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    return {found[key]: found for found in rows}


@pytest.mark.slow
def test_an_agency_only_remittance_reduces_the_balance_from_its_paid_date(built) -> None:
    aging = by_key(built, "select * from marts.fct_account_aging", "account_id")
    assert (aging["AGENCY-ONLY"]["total_open"], aging["AGENCY-ONLY"]["collectible_amount"]) == (
        Decimal("200.00"), Decimal("200.00"),
    )  # fmt: skip
    reconciled = by_key(
        built, "select * from marts.fct_remittance_reconciliation", "remittance_key"
    )
    assert reconciled["northwind:N-1"]["matched_payment_id"] is None  # nothing in billing


@pytest.mark.slow
def test_a_remittance_the_billing_export_also_holds_counts_once(built) -> None:
    aging = by_key(built, "select * from marts.fct_account_aging", "account_id")
    # 300 - 100, not 300 - 100 - 100: the agency's line and the creditor's booking are one payment
    assert (aging["BOOKED"]["total_open"], aging["BOOKED"]["collectible_amount"]) == (
        Decimal("200.00"), Decimal("200.00"),
    )  # fmt: skip
    reconciled = by_key(
        built, "select * from marts.fct_remittance_reconciliation", "remittance_key"
    )
    assert {key: row["reconciliation_status"] for key, row in reconciled.items()} == {
        "northwind:N-1": "agency_only",
        "northwind:N-2": "in_billing",
        "summit:S-1": "agency_only",
        "summit:S-2": "agency_only",
    }
    booked = reconciled["northwind:N-2"]
    assert (booked["matched_payment_id"], booked["matched_received_date"]) == (
        "BK-P", dt.date(2026, 3, 12),
    )  # fmt: skip


@pytest.mark.slow
def test_a_remittance_collected_after_the_recall_is_flagged(built) -> None:
    reconciled = by_key(
        built, "select * from marts.fct_remittance_reconciliation", "remittance_key"
    )
    flagged = {key for key, row in reconciled.items() if row["has_discrepancy"]}
    assert flagged == {"summit:S-1"}
    assert reconciled["summit:S-1"]["is_paid_after_recall"]
    assert not reconciled["summit:S-1"]["is_currency_mismatch"]
    assert reconciled["summit:S-2"]["net_amount"] == Decimal("36.00")


@pytest.mark.slow
def test_a_placed_account_is_held_and_not_escalated(built) -> None:
    stages = by_key(built, "select * from marts.fct_account_stage", "account_id")
    held, twin = stages["HELD"], stages["TWIN"]
    assert (held["is_held"], held["hold_reason"], held["stage"]) == (
        True, "placed_with_agency", "none",
    )  # fmt: skip
    assert held["next_action_due_date"] is None
    assert (twin["is_held"], twin["stage"]) == (False, "final_notice")  # same debt, not placed
    assert stages["AGENCY-ONLY"]["hold_reason"] == "placed_with_agency"
    # recalled before AS_OF, or placed after it: not placed on AS_OF
    assert (stages["RECALLED"]["is_held"], stages["RECALLED"]["stage"]) == (False, "final_notice")
    assert (stages["LATER"]["is_held"], stages["LATER"]["stage"]) == (False, "final_notice")


@pytest.mark.slow
def test_the_placements_mart_shows_each_placement_as_of_the_date(built) -> None:
    placements = by_key(built, "select * from marts.fct_agency_placements", "account_id")
    assert "LATER" not in placements  # placed after AS_OF
    recalled = placements["RECALLED"]
    assert (recalled["placement_status"], recalled["recall_reason"], recalled["days_placed"]) == (
        "recalled", "max_placement_days", 55,
    )  # fmt: skip
    booked = placements["BOOKED"]
    assert (
        booked["placement_status"],
        booked["collected_to_date"],
        booked["commission_to_date"],
        booked["net_recovered_to_date"],
        booked["remittances"],
    ) == ("open", Decimal("100.00"), Decimal("25.00"), Decimal("75.00"), 1)
    assert placements["HELD"]["collected_to_date"] == Decimal("0.00")


@pytest.mark.slow
def test_the_performance_mart_for_a_small_crafted_case(built) -> None:
    rows = built.execute(
        """
        select agency_id, placement_month, currency, accounts_placed, placed_balance,
            collected_amount, commission_amount, net_recovered, round(net_recovery_rate, 4),
            accounts_recalled, recalled_by_reason
        from marts.fct_agency_performance
        order by all
        """
    ).fetchall()
    d = Decimal
    assert rows == [
        # AGENCY-ONLY and BOOKED: 200 collected on 600 placed, 50 commission -> 150 / 600
        (
            "northwind",
            "2026-02",
            "USD",
            2,
            d("600.00"),
            d("200.00"),
            d("50.00"),
            d("150.00"),
            0.25,
            0,
            {},
        ),
        (
            "northwind",
            "2026-03",
            "USD",
            1,
            d("100.00"),
            d("0.00"),
            d("0.00"),
            d("0.00"),
            0.0,
            0,
            {},
        ),
        (
            "summit",
            "2026-01",
            "USD",
            1,
            d("100.00"),
            d("10.00"),
            d("2.80"),
            d("7.20"),
            0.072,
            1,
            {"max_placement_days": 1},
        ),
        # CAD stays apart from USD
        (
            "summit",
            "2026-02",
            "CAD",
            1,
            d("200.00"),
            d("50.00"),
            d("14.00"),
            d("36.00"),
            0.18,
            0,
            {},
        ),
    ]


@pytest.mark.slow
def test_gate_two_reconciles_the_ledger_with_agency_collections(built) -> None:
    """The gate recomputes every account from the billing facts plus what agencies collected
    that billing does not hold: an agency-only remittance must not halt the run."""
    from flows.lib.gate_checks import checks_of
    from flows.lib.gates import _count_and_sample

    [check] = [c for c in checks_of("gate_warehouse") if c.name == "ledger_reconciles"]
    _, off, sample = _count_and_sample(built, check, AS_OF, 400)
    assert off == 0, sample  # no account off
