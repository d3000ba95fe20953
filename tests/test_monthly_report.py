"""The monthly report: tiny marts for one month in DuckDB, rendered as HTML and PDF.

Each mart holds only the columns the report reads. The month is November 2026; the warehouse's
latest run is 2026-11-22, so the latest-run marts (KPIs, roll and cure rates, disputes, plans)
are in the month."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from pypdf import PdfReader

from flows.lib.monthly_report import (
    build_monthly_report,
    monthly_report_markdown,
    monthly_report_pdf,
    monthly_report_sections,
    parse_month,
    previous_month,
    render_monthly_report_html,
    write_monthly_report,
)

pytestmark = pytest.mark.integration  # DuckDB and Typst

MONTH = "2026-11"
RUN_1 = dt.date(2026, 11, 8)
RUN_2 = dt.date(2026, 11, 22)
HOSTILE = "<script>alert('x')</script>"
SECTION_TITLES = (
    "Aging trend",
    "Roll rates",
    "Cure rates by stage",
    "DSO, CEI and promise-kept rate",
    "Disputes and their outcomes",
    "Payment plans and promises",
    "Collections by channel",
    "Agency performance",
    "Refunds and payment discrepancies",
    "Negotiation: offers, settlements and plans",
)
BUCKETS = (
    "current",
    "dpd_1_30",
    "dpd_31_60",
    "dpd_61_90",
    "dpd_91_120",
    "dpd_121_150",
    "dpd_151_180",
    "dpd_181_plus",
)
MONEY = "DECIMAL(18,2)"


AGING = {"as_of_date": "DATE", "currency": "VARCHAR", **dict.fromkeys(BUCKETS, MONEY)}
AGING |= {"total_open": MONEY}
PERIOD = {"as_of_date": "DATE", "from_date": "DATE", "currency": "VARCHAR"}
ROLL_RATES = PERIOD | {"from_bucket": "VARCHAR", "to_bucket": "VARCHAR", "accounts": "BIGINT"}
ROLL_RATES |= {"from_balance": MONEY}
CURE_RATES = PERIOD | {"stage_order": "INTEGER", "stage": "VARCHAR", "accounts": "BIGINT"}
CURE_RATES |= {"cured": "BIGINT"}
KPIS = {"as_of_date": "DATE", "currency": "VARCHAR", "period_days": "INTEGER"}
KPIS |= dict.fromkeys(
    ("dso_days", "best_possible_dso_days", "average_days_delinquent",
     "collection_effectiveness_index"), "DOUBLE",
)  # fmt: skip
KPIS |= {"promises_kept": "BIGINT", "promises_broken": "BIGINT", "promise_kept_rate": "DOUBLE"}
ACCOUNTS = {"account_id": "VARCHAR", "currency": "VARCHAR"}
DISPUTES = {"dispute_id": "VARCHAR", "account_id": "VARCHAR", "invoice_id": "VARCHAR"}
DISPUTES |= {"as_of_date": "DATE"}
DISPUTES |= {"disputed_amount": MONEY, "opened_date": "DATE", "resolved_date": "DATE"}
DISPUTES |= {"dispute_status": "VARCHAR"}
PLANS = {"plan_id": "VARCHAR", "account_id": "VARCHAR", "as_of_date": "DATE"}
PLANS |= {"plan_kind": "VARCHAR", "plan_status": "VARCHAR", "created_date": "DATE"}
PLANS |= {"cancelled_date": "DATE", "total_amount": MONEY, "paid_amount": MONEY}
PLANS |= {"broken_on": "DATE"}
CONTACTS = {"account_id": "VARCHAR", "channel": "VARCHAR", "status": "VARCHAR"}
CONTACTS |= {"currency": "VARCHAR", "is_contacted": "BOOLEAN", "as_of_date": "DATE"}
PAYMENTS = {"account_id": "VARCHAR", "received_date": "DATE", "amount": MONEY}
PAYMENTS |= {"is_reversal": "BOOLEAN"}
STAGES = {"as_of_date": "DATE", "stage": "VARCHAR"}
START = dt.date(2026, 10, 20)  # the run the latest period starts from


def a_table(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    types: dict[str, str],
    rows: list[dict[str, object]],
) -> None:
    """`name` with the columns of `types`, holding `rows` (a missing value is NULL)."""
    connection.execute(f"create schema if not exists {name.split('.')[0]}")
    columns = ", ".join(f"{column} {kind}" for column, kind in types.items())
    connection.execute(f"create or replace table {name} ({columns})")
    for row in rows:
        connection.execute(
            f"insert into {name} values ({', '.join('?' for _ in types)})",
            [row.get(column) for column in types],
        )


def an_aging(day: dt.date, currency: str, **amounts: str) -> dict[str, object]:
    row: dict[str, object] = {"as_of_date": day, "currency": currency}
    row |= {name: Decimal(amounts.get(name, "0")) for name in BUCKETS}
    row["total_open"] = sum(Decimal(amounts.get(name, "0")) for name in BUCKETS)
    return row


def a_roll(from_bucket: str, to_bucket: str, accounts: int) -> dict[str, object]:
    return {"as_of_date": RUN_2, "from_date": START, "currency": "USD",
            "from_bucket": from_bucket, "to_bucket": to_bucket, "accounts": accounts,
            "from_balance": Decimal("100.00") * accounts}  # fmt: skip


def a_cure(currency: str, order: int, stage: str, accounts: int, cured: int) -> dict[str, object]:
    return {"as_of_date": RUN_2, "from_date": START, "currency": currency,
            "stage_order": order, "stage": stage, "accounts": accounts, "cured": cured}  # fmt: skip


def a_kpi(currency: str, **values: object) -> dict[str, object]:
    row = {"as_of_date": RUN_2, "currency": currency, "period_days": 30, "dso_days": 41.5,
           "best_possible_dso_days": 30.2, "average_days_delinquent": 11.3,
           "collection_effectiveness_index": 87.6, "promises_kept": 3, "promises_broken": 1,
           "promise_kept_rate": 75.0}  # fmt: skip
    return row | values


def a_dispute(dispute_id: str, account_id: str, amount: str, **values: object) -> dict[str, object]:
    row = {"dispute_id": dispute_id, "account_id": account_id, "as_of_date": RUN_2,
           "disputed_amount": Decimal(amount), "dispute_status": "open"}  # fmt: skip
    return row | values


def a_plan(plan_id: str, kind: str, status: str, created: dt.date, **values: object) -> dict:
    row = {"plan_id": plan_id, "account_id": "A1", "as_of_date": RUN_2, "plan_kind": kind,
           "plan_status": status, "created_date": created}  # fmt: skip
    return row | values


def a_contact(account_id: str, status: str, currency: str) -> dict[str, object]:
    return {"account_id": account_id, "channel": "email", "status": status,
            "currency": currency, "is_contacted": status == "sent", "as_of_date": RUN_1}  # fmt: skip


def a_payment(day: dt.date, amount: str, *, reversal: bool = False) -> dict[str, object]:
    return {"account_id": "A1", "received_date": day, "amount": Decimal(amount),
            "is_reversal": reversal}  # fmt: skip


def full_month(connection: duckdb.DuckDBPyConnection) -> None:
    """Every mart the report reads, with a few rows each."""
    a_table(connection, "marts.fct_account_aging", AGING, [
        an_aging(RUN_1, "USD", current="10000.00", dpd_1_30="2345.67"),
        an_aging(RUN_2, "USD", current="9000.00", dpd_31_60="1345.67"),
        # a second USD account: the total on RUN_2 is 12,345.67 again
        an_aging(RUN_2, "USD", dpd_181_plus="2000.00"),
        # EUR beside it: never added to USD
        an_aging(RUN_1, "EUR", dpd_91_120="500.00"),
        an_aging(RUN_2, "EUR", dpd_91_120="500.00"),
        # October's run: not in November's trend
        an_aging(dt.date(2026, 10, 25), "USD", current="77777.77"),
    ])  # fmt: skip
    a_table(connection, "marts.fct_roll_rates", ROLL_RATES, [
        a_roll("1_30", "31_60", 3),
        a_roll("1_30", "settled", 1),
    ])  # fmt: skip
    a_table(connection, "marts.fct_stage_cure_rates", CURE_RATES, [
        a_cure("USD", 2, "reminder_1", 8, 2),
        a_cure("EUR", 3, HOSTILE, 4, 1),  # a stage name nobody should trust
    ])  # fmt: skip
    a_table(connection, "marts.fct_collection_kpis", KPIS, [
        a_kpi("USD"),
        # no run at the start of the period, no promise kept or broken: NULL rates
        a_kpi("EUR", collection_effectiveness_index=None, promise_kept_rate=None),
    ])  # fmt: skip
    a_table(connection, "marts.dim_accounts", ACCOUNTS, [
        {"account_id": "A1", "currency": "USD"},
        {"account_id": "E1", "currency": "EUR"},
    ])  # fmt: skip
    a_table(connection, "marts.fct_disputes", DISPUTES, [
        # opened and rejected within the month
        a_dispute("D1", "A1", "432.10", opened_date=dt.date(2026, 11, 2),
                  resolved_date=dt.date(2026, 11, 12), dispute_status="rejected"),
        # opened in the month, still open
        a_dispute("D2", "E1", "65.00", opened_date=dt.date(2026, 11, 20)),
        # no amount: the whole invoice I3 (40.00) is in dispute
        a_dispute("D3", "E1", "0", disputed_amount=None, invoice_id="I3",
                  opened_date=dt.date(2026, 11, 21)),
        # no amount, no invoice: the whole balance, counted apart
        a_dispute("D4", "E1", "0", disputed_amount=None, opened_date=dt.date(2026, 11, 22)),
    ])  # fmt: skip
    a_table(connection, "staging.stg_billing__invoices", {"invoice_id": "VARCHAR", "amount": MONEY},
            [{"invoice_id": "I3", "amount": Decimal("40.00")}])  # fmt: skip
    a_table(connection, "marts.fct_payment_plans", PLANS, [
        a_plan("P1", "promise_to_pay", "kept", dt.date(2026, 11, 3),
               total_amount=Decimal("250.00"), paid_amount=Decimal("250.00")),
        # made in October, broken in November
        a_plan("P2", "installment_plan", "broken", dt.date(2026, 10, 3),
               total_amount=Decimal("600.00"), paid_amount=Decimal("100.00"),
               broken_on=dt.date(2026, 11, 10)),
    ])  # fmt: skip
    a_table(connection, "marts.fct_contact_log", CONTACTS, [
        a_contact("A1", "sent", "USD"),
        a_contact("E1", "suppressed", "EUR"),  # held back: no payment window
    ])  # fmt: skip
    a_table(connection, "staging.stg_billing__payments", PAYMENTS, [
        a_payment(dt.date(2026, 11, 10), "100.00"),  # two days after the email: counts
        a_payment(dt.date(2026, 11, 12), "30.00", reversal=True),  # undoes part of it
        a_payment(RUN_1 + dt.timedelta(days=31), "50.00"),  # day 31: outside the window
    ])  # fmt: skip
    a_table(connection, "marts.fct_account_stage_history", STAGES, [
        {"as_of_date": RUN_2, "stage": "agency_placement"},
    ])  # fmt: skip


@pytest.fixture
def empty() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def full() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    full_month(connection)
    yield connection
    connection.close()


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize(
    "month",
    ["2026-13", "2026-00", "2026-1", "26-11", "November", "2026-11-01", ""],
    ids=lambda month: repr(month),
)
def test_a_month_that_is_not_yyyy_mm_is_refused(month: str) -> None:
    with pytest.raises(ValueError, match=r"is not a month: use YYYY-MM, for example 2026-11"):
        parse_month(month)


def test_the_month_and_the_previous_month() -> None:
    assert parse_month("2028-02") == (dt.date(2028, 2, 1), dt.date(2028, 2, 29))
    assert previous_month(dt.date(2027, 1, 15)) == "2026-12"
    assert previous_month(dt.date(2026, 3, 31)) == "2026-02"


def test_an_empty_warehouse_gives_a_report_that_says_so(empty: duckdb.DuckDBPyConnection) -> None:
    report = build_monthly_report(empty, MONTH)
    for key in (
        "aging_trend",
        "roll_rates",
        "kpis",
        "disputes",
        "collections",
        "agency",
        "servicing",
        "skip_tracing",
        "negotiation",
    ):
        assert report[key]["available"] is False
        assert report[key]["note"]
    html = render_monthly_report_html(report)
    assert "<svg" not in html
    text = pdf_text(monthly_report_pdf(report))
    for title in SECTION_TITLES:
        assert title in html and title in text
    assert "marts.fct_agency_performance" in text  # agency performance: what it needs


def test_the_aging_trend_keeps_each_currency_and_run_date_apart(
    full: duckdb.DuckDBPyConnection,
) -> None:
    trend = build_monthly_report(full, MONTH)["aging_trend"]
    assert trend["run_dates"] == ["2026-11-08", "2026-11-22"]
    totals = {
        (entry["currency"], point["as_of_date"]): point["total_open"]
        for entry in trend["currencies"]
        for point in entry["points"]
    }
    assert totals == {
        ("EUR", "2026-11-08"): "500.00",
        ("EUR", "2026-11-22"): "500.00",
        ("USD", "2026-11-08"): "12345.67",
        ("USD", "2026-11-22"): "12345.67",
    }


def test_disputes_plans_and_payments_after_contact(full: duckdb.DuckDBPyConnection) -> None:
    report = build_monthly_report(full, MONTH)
    disputes = {(row["currency"], row["status"]): row for row in report["disputes"]["rows"]}
    assert disputes[("USD", "rejected")]["resolved"] == 1
    assert disputes[("USD", "rejected")]["days_to_resolve"] == 10.0
    assert disputes[("EUR", "open")]["open_amount"] == "105.00"  # 65.00 + the whole invoice
    assert disputes[("EUR", "open")]["whole_balance_open"] == 1
    plans = {row["plan_kind"]: row for row in report["payment_plans"]["rows"]}
    assert (plans["promise_to_pay"]["created"], plans["promise_to_pay"]["kept"]) == (1, 1)
    assert (plans["installment_plan"]["created"], plans["installment_plan"]["broken_in_month"]) == (
        0,
        1,
    )
    [paid] = report["collections"]["paid_after_contact"]  # only the email that went out
    assert (paid["channel"], paid["currency"], paid["accounts"]) == ("email", "USD", 1)
    assert paid["paid_amount"] == "70.00"  # 100.00 less the 30.00 reversal; day 31 left out


def test_a_dispute_resolved_after_the_month_is_open_at_its_end(
    full: duckdb.DuckDBPyConnection,
) -> None:
    october = build_monthly_report(full, "2026-10")  # nothing opened yet: no dispute rows
    assert october["disputes"]["rows"] == []
    full.execute("update marts.fct_disputes set opened_date = '2026-10-30' where dispute_id = 'D1'")
    [row] = build_monthly_report(full, "2026-10")["disputes"]["rows"]
    assert (row["status"], row["opened"], row["open_at_month_end"]) == ("open", 1, 1)


def test_latest_run_marts_outside_the_month_say_why_they_are_empty(
    full: duckdb.DuckDBPyConnection,
) -> None:
    report = build_monthly_report(full, "2026-10")
    assert report["aging_trend"]["available"] is True  # October's run is in the history
    for key in ("roll_rates", "cure_rates", "kpis"):
        assert report[key]["available"] is False
        assert "2026-11-22" in report[key]["note"] and "no history" in report[key]["note"]


def test_the_full_report_renders_html_and_pdf(full: duckdb.DuckDBPyConnection) -> None:
    report = build_monthly_report(full, MONTH, company="Acme Utilities")
    html = render_monthly_report_html(report)
    assert html.count("<svg") == 5  # aging, roll rates, cure rates, KPIs, channels
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html  # the hostile stage name, as text
    text = pdf_text(monthly_report_pdf(report))
    for title in SECTION_TITLES:
        assert title in text
    assert "12,345.67" in text  # USD total open on both run dates
    assert "432.10" in text  # the rejected dispute
    assert "87.6 %" in text  # USD CEI
    assert "Acme Utilities" in text


def test_the_same_data_gives_the_same_pdf_bytes(full: duckdb.DuckDBPyConnection) -> None:
    first = monthly_report_pdf(build_monthly_report(full, MONTH))
    second = monthly_report_pdf(build_monthly_report(full, MONTH))
    assert first == second
    assert first.startswith(b"%PDF-")


def test_the_files_and_the_markdown(full: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    report = build_monthly_report(full, MONTH)
    paths = write_monthly_report(report, tmp_path / "monthly")
    assert [path.name for path in paths] == ["2026-11.html", "2026-11.pdf"]
    markdown = monthly_report_markdown(report, paths)
    assert "# Monthly report for November 2026" in markdown
    assert "**Agency performance** (no data)" in markdown
    assert "<script" not in markdown


@pytest.mark.slow
def test_the_flow_writes_the_month_and_refuses_a_bad_one(prefect_api, recoup_home: Path) -> None:
    from flows.lib.warehouse import open_warehouse
    from flows.monthly_report import monthly_report

    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb")
    full_month(connection)
    connection.close()
    paths = monthly_report(month=MONTH)
    folder = recoup_home / "out" / "reports" / "monthly"
    assert paths == [folder / "2026-11.html", folder / "2026-11.pdf"]
    assert all(path.is_file() for path in paths)
    with pytest.raises(ValueError, match="is not a month"):
        monthly_report(month="2026-13")


def test_agency_performance_shows_each_cohort_up_to_the_month_end(
    full: duckdb.DuckDBPyConnection,
) -> None:
    types = {
        "agency_id": "VARCHAR", "placement_month": "VARCHAR", "currency": "VARCHAR",
        "as_of_date": "DATE", "accounts_placed": "BIGINT", "placed_balance": "DECIMAL(18,2)",
        "collected_amount": "DECIMAL(18,2)", "commission_amount": "DECIMAL(18,2)",
        "net_recovered": "DECIMAL(18,2)", "net_recovery_rate": "DOUBLE",
        "accounts_recalled": "BIGINT",
    }  # fmt: skip
    cohort = {"currency": "USD", "as_of_date": RUN_2, "accounts_recalled": 1}
    a_table(full, "marts.fct_agency_performance", types, [
        {**cohort, "agency_id": "summit", "placement_month": "2026-10", "accounts_placed": 4,
         "placed_balance": "2000.00", "collected_amount": "500.00", "commission_amount": "140.00",
         "net_recovered": "360.00", "net_recovery_rate": 0.18},
        {**cohort, "agency_id": "summit", "placement_month": "2026-12", "accounts_placed": 1,
         "placed_balance": "10.00", "collected_amount": "0", "commission_amount": "0",
         "net_recovered": "0", "net_recovery_rate": 0.0},  # after the month: not shown
    ])  # fmt: skip
    report = build_monthly_report(full, MONTH)
    assert report["agency"]["available"] is True
    assert [row["placement_month"] for row in report["agency"]["rows"]] == ["2026-10"]
    [section] = [s for s in monthly_report_sections(report) if s["key"] == "agency"]
    assert section["tables"][0]["rows"] == [
        ["summit", "2026-10", "USD", "4", "2,000.00", "500.00", "140.00", "18.0 %", "1"]
    ]


def test_the_servicing_queues_of_the_latest_run_in_the_month(
    full: duckdb.DuckDBPyConnection,
) -> None:
    a_table(full, "marts.fct_refund_queue", {"currency": "VARCHAR", "amount": "DECIMAL(18,2)"}, [
        {"currency": "USD", "amount": "10.00"}, {"currency": "USD", "amount": "2.50"},
    ])  # fmt: skip
    a_table(full, "marts.fct_payment_discrepancies", {"reason": "VARCHAR", "age_days": "INTEGER"}, [
        {"reason": "suspected_duplicate_payment", "age_days": 3},
        {"reason": "suspected_duplicate_payment", "age_days": 9},
    ])  # fmt: skip
    report = build_monthly_report(full, MONTH)
    [section] = [s for s in monthly_report_sections(report) if s["key"] == "servicing"]
    assert [table["rows"] for table in section["tables"]] == [
        [["USD", "2", "12.50"]],
        [["suspected duplicate payment", "2", "9"]],
    ]
    october = build_monthly_report(full, "2026-10")["servicing"]
    assert october["available"] is False and "not in 2026-10" in october["note"]


def test_the_month_s_skip_trace_requests_and_the_open_queue(
    full: duckdb.DuckDBPyConnection,
) -> None:
    types = {
        "as_of_date": "DATE", "requested_on": "DATE", "reasons": "VARCHAR",
        "request_status": "VARCHAR", "is_open": "BOOLEAN", "age_days": "INTEGER",
        "fields_updated": "VARCHAR",
    }  # fmt: skip
    rows = [
        {"as_of_date": "2026-11-30", "requested_on": "2026-11-02", "request_status": "found",
         "reasons": "email_hard_bounce", "is_open": False, "age_days": 4,
         "fields_updated": "email"},
        {"as_of_date": "2026-11-30", "requested_on": "2026-11-10", "request_status": "not_found",
         "reasons": "email_hard_bounce, no_usable_channel", "is_open": False, "age_days": 6,
         "fields_updated": None},
        {"as_of_date": "2026-11-30", "requested_on": "2026-11-20", "request_status": "open",
         "reasons": "letter_returned", "is_open": True, "age_days": 10, "fields_updated": None},
        {"as_of_date": "2026-11-30", "requested_on": "2026-10-20", "request_status": "open",
         "reasons": "phone_invalid", "is_open": True, "age_days": 41, "fields_updated": None},
    ]  # fmt: skip
    a_table(full, "marts.fct_skip_trace_requests", types, rows)
    report = build_monthly_report(full, MONTH)
    data = report["skip_tracing"]
    assert data["requested"] == 3 and data["found_rate"] == 0.5  # of the two answered
    assert data["open_now"] == 2 and data["oldest_open_days"] == 41  # October's still waits
    [section] = [s for s in monthly_report_sections(report) if s["key"] == "skip_tracing"]
    assert [table["rows"] for table in section["tables"]] == [
        [["email hard bounce", "2"], ["letter returned", "1"], ["no usable channel", "1"]],
        [["found", "1", "4"], ["not found", "1", "6"], ["open", "1", "10"]],
        [["email", "1"]],
    ]
    assert "found new contact details for 50%" in section["notes"][0]
