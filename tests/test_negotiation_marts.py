"""The negotiation marts (issue 13, part 6) built by dbt on one small warehouse, and the monthly
report's section made from them.

One billing batch, offers written into ops.offers and agreements into ops.agreements the way
the offers step and `recoup agreements` leave them, one write-off recommendation, then one dbt
build for AS_OF (2026-03-31) of the negotiation marts and everything upstream of them. The
offers step, recording and the write-off step have their own tests (test_offers.py,
test_agreements.py, test_settlements.py); here every row is there for a case of the marts:

- KEPT: a plan offer set in February (lapsed) and a later one in March, whose 3-installment
  offer a plan agreed without an offer id takes up (the latest standing offer of its length);
  the plan is paid: kept.
- BROKEN: plan offers of 3 and 6 installments; the agreement names the 6-installment offer and
  misses its first installment: broken.
- NEVER (segment enterprise): a plan and a settlement offer nobody took up, still standing.
- LATE: an offer that expired five days before a plan was agreed: not taken up; the plan runs.
- SETTLED: a settlement offer taken up and paid in full, with its write-off recommended.
- SHORT: a settlement agreed without an offer, half of its first installment paid: broken.
- CANCEL: a 6-installment plan cancelled before its first installment.
- billing's own plans of 3 and 6 installments (kept, broken), a promise, and a February plan.
- an offer and an agreement dated after AS_OF, which a build for AS_OF does not see.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from pypdf import PdfReader

from flows.lib.dbt_build import build_warehouse
from flows.lib.loader import load_batch
from flows.lib.monthly_report import (
    build_monthly_report,
    monthly_report_pdf,
    monthly_report_sections,
    render_monthly_report_html,
)
from flows.lib.offers import offer_id
from flows.lib.settlements import recommendation_id
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = dt.date(2026, 3, 31)
MONTH = "2026-03"
SECTION = "Negotiation: offers, settlements and plans"


def day(offset: int) -> dt.date:
    """The date `offset` days from AS_OF."""
    return AS_OF + dt.timedelta(days=offset)


# account: segment, and why it is here (see the module docstring)
ACCOUNTS = {
    "KEPT": "residential",
    "BROKEN": "residential",
    "NEVER": "enterprise",
    "LATE": "residential",
    "SETTLED": "residential",
    "SHORT": "residential",
    "CANCEL": "residential",
    "BILL3": "residential",
    "BILL6": "residential",
    "PROMISE": "residential",
    "FEBRUARY": "residential",
}


def an_offer(
    account: str,
    made: int,
    kind: str,
    length: int | None,
    amount: str,
    balance: str,
    *,
    valid_days: int = 30,
    installment: str | None = None,
    percent: str | None = None,
) -> dict[str, object]:
    """One ops.offers row as the offers step writes it."""
    return {
        "offer_id": offer_id(account, day(made), kind, length),
        "account_id": account,
        "customer_id": "C1",
        "segment": ACCOUNTS.get(account, "residential"),
        "currency": "USD",
        "offer_date": day(made),
        "kind": kind,
        "plan_length": length,
        "installment_amount": None if installment is None else Decimal(installment),
        "last_installment_amount": None if installment is None else Decimal(installment),
        "offer_amount": Decimal(amount),
        "balance_at_offer": Decimal(balance),
        "percent": None if percent is None else Decimal(percent),
        "expires_on": day(made + valid_days),
        "stage": "final_notice",
        "requires_approval": False,
        "run_id": f"run-{made}",
        "created_at": dt.datetime.combine(day(made), dt.time(7), tzinfo=dt.UTC),
    }


def plan_offers(account: str, made: int, balance: str, *lengths: int, **options) -> list[dict]:
    return [
        an_offer(account, made, "installment_plan", length, balance, balance,
                 installment=str(Decimal(balance) / length), **options)
        for length in lengths
    ]  # fmt: skip


OFFERS = [
    *plan_offers("KEPT", -40, "310.00", 3),  # February: lapsed on day -10
    *plan_offers("KEPT", -30, "300.00", 3, 6),  # March, after a payment changed the balance
    an_offer("KEPT", -30, "settlement", None, "270.00", "300.00", percent="90.00"),
    *plan_offers("BROKEN", -29, "300.00", 3, 6),
    *plan_offers("NEVER", -20, "600.00", 3),
    an_offer("NEVER", -20, "settlement", None, "540.00", "600.00", percent="90.00"),
    *plan_offers("LATE", -60, "300.00", 3),  # January: expired on day -30
    an_offer("SETTLED", -26, "settlement", None, "700.00", "1000.00", percent="70.00"),
    *plan_offers("NEVER", 1, "600.00", 3),  # after AS_OF: not seen
]
OFFER_OF = {
    "KEPT Feb": offer_id("KEPT", day(-40), "installment_plan", 3),
    "KEPT 3": offer_id("KEPT", day(-30), "installment_plan", 3),
    "KEPT 6": offer_id("KEPT", day(-30), "installment_plan", 6),
    "KEPT settlement": offer_id("KEPT", day(-30), "settlement", None),
    "BROKEN 3": offer_id("BROKEN", day(-29), "installment_plan", 3),
    "BROKEN 6": offer_id("BROKEN", day(-29), "installment_plan", 6),
    "NEVER 3": offer_id("NEVER", day(-20), "installment_plan", 3),
    "NEVER settlement": offer_id("NEVER", day(-20), "settlement", None),
    "LATE 3": offer_id("LATE", day(-60), "installment_plan", 3),
    "SETTLED": offer_id("SETTLED", day(-26), "settlement", None),
}

# agreement id: account, kind, agreed (days from AS_OF), balance, [(due, amount)], options
AGREEMENTS = {
    "AG-KEPT": ("KEPT", "installment_plan", -28, "300.00",
                [(-25, "100.00"), (-15, "100.00"), (-6, "100.00")], {}),
    "AG-BROKEN": ("BROKEN", "installment_plan", -27, "300.00",
                  [(-20, "50.00"), (10, "50.00"), (40, "50.00"), (70, "50.00"),
                   (100, "50.00"), (130, "50.00")],
                  {"offer_id": OFFER_OF["BROKEN 6"]}),
    "AG-LATE": ("LATE", "installment_plan", -25, "300.00",
                [(-20, "100.00"), (10, "100.00"), (40, "100.00")], {}),
    "AG-SETTLED": ("SETTLED", "settlement", -24, "1000.00", [(-14, "700.00")],
                   {"settled_on": day(-14)}),
    "AG-SHORT": ("SHORT", "settlement", -23, "500.00", [(-20, "200.00"), (10, "200.00")],
                 {"approved_by": "mgr-1"}),
    "AG-CANCEL": ("CANCEL", "installment_plan", -22, "300.00",
                  [(5, "50.00"), (35, "50.00"), (65, "50.00"), (95, "50.00"),
                   (125, "50.00"), (155, "50.00")],
                  {"cancelled_date": day(-19)}),
    "AG-FUTURE": ("NEVER", "installment_plan", 2, "600.00",
                  [(10, "200.00"), (40, "200.00"), (70, "200.00")], {}),
}  # fmt: skip
# payments (account, received days from AS_OF, amount)
PAYMENTS = [
    ("KEPT", -25, "100.00"),
    ("KEPT", -15, "100.00"),
    ("KEPT", -6, "100.00"),
    ("LATE", -18, "100.00"),
    ("SETTLED", -15, "700.00"),
    ("SHORT", -19, "100.00"),
    ("BILL3", -28, "150.00"),
    ("FEBRUARY", -44, "50.00"),
    ("FEBRUARY", -16, "50.00"),
]
# billing's plans: (plan id, account, kind, created, [(due, amount)])
BILLING_PLANS = [
    ("BP-3", "BILL3", "installment_plan", -30, [(-28, "50.00"), (-18, "50.00"), (-8, "50.00")]),
    ("BP-6", "BILL6", "installment_plan", -29,
     [(-26, "50.00"), (4, "50.00"), (34, "50.00"), (64, "50.00"), (94, "50.00"),
      (124, "50.00")]),
    ("BP-PROMISE", "PROMISE", "promise_to_pay", -21, [(5, "60.00")]),
    ("BP-FEB", "FEBRUARY", "installment_plan", -49,
     [(-44, "50.00"), (-16, "50.00"), (15, "50.00")]),
]  # fmt: skip


def billing_batch(folder: Path) -> Path:
    return write_batch(
        folder,
        customers=[row("customers")],
        accounts=[
            row("accounts", account_id=account, segment=segment)
            for account, segment in ACCOUNTS.items()
        ],
        invoices=[
            row("invoices", invoice_id=f"{account}-I", account_id=account, amount="1000.00",
                issue_date="2025-11-01", due_date="2025-12-01")
            for account in ACCOUNTS
        ],
        payments=[
            row("payments", payment_id=f"{account}-P{number}", account_id=account,
                received_date=day(received).isoformat(), amount=amount)
            for number, (account, received, amount) in enumerate(PAYMENTS)
        ],
        payment_plans=[
            row("payment_plans", plan_id=plan, account_id=account, kind=kind,
                installment_no=str(number), due_date=day(due).isoformat(), amount=amount,
                created_date=day(created).isoformat())
            for plan, account, kind, created, schedule in BILLING_PLANS
            for number, (due, amount) in enumerate(schedule, start=1)
        ],
    )  # fmt: skip


def insert(connection: duckdb.DuckDBPyConnection, table: str, values: dict[str, object]) -> None:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    connection.execute(f"insert into {table} ({columns}) values ({marks})", list(values.values()))


def record(connection: duckdb.DuckDBPyConnection) -> None:
    """The offers, the agreements with their schedules, and the one write-off recommendation."""
    for offer in OFFERS:
        insert(connection, "ops.offers", offer)
    for agreement_id, (account, kind, agreed, balance, schedule, options) in AGREEMENTS.items():
        total = sum(Decimal(amount) for _, amount in schedule)
        forgiven = Decimal(balance) - total if kind == "settlement" else Decimal("0.00")
        insert(connection, "ops.agreements", {
            "agreement_id": agreement_id, "account_id": account, "kind": kind,
            "agreed_date": day(agreed), "currency": "USD", "balance_date": day(agreed),
            "balance_at_agreement": Decimal(balance), "days_past_due": 120,
            "total_amount": total, "forgiven_amount": forgiven, "installments": len(schedule),
            "recorded_by": "ann", "source": "add", "policy_breaches": [],
            "content_hash": agreement_id, "recorded_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            **options,
        })  # fmt: skip
        for number, (due, amount) in enumerate(schedule, start=1):
            insert(connection, "ops.agreement_installments", {
                "agreement_id": agreement_id, "installment_no": number,
                "due_date": day(due), "amount": Decimal(amount),
            })  # fmt: skip
    # the settlement paid on day -15; the run of day -14 recommended what was left: 300.00
    insert(connection, "ops.write_off_recommendations", {
        "recommendation_id": recommendation_id("AG-SETTLED"), "account_id": "SETTLED",
        "agreement_id": "AG-SETTLED", "agreed_date": day(-24), "currency": "USD",
        "settled_amount": Decimal("700.00"), "paid_amount": Decimal("700.00"),
        "write_off_amount": Decimal("300.00"), "reason": "settled_for_less",
        "recommended_on": day(-14), "run_id": "run-w", "file_path": "out/adjustments/x.csv",
        "recommended_at": dt.datetime(2026, 3, 17, 7, tzinfo=dt.UTC),
    })  # fmt: skip


def build_negotiation_marts(warehouse: Path, state: Path, as_of: dt.date) -> None:
    """`dbt build` of the negotiation marts and everything upstream of them, with their data
    tests, for `as_of` (the whole project takes too long for one test module); no test of a
    model left out of the selection."""
    build_warehouse(warehouse, state, as_of, select=("+path:models/marts/negotiation",),
                    cautious=True)  # fmt: skip


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp("negotiation")
    path = root / "recoup.duckdb"
    connection = open_warehouse(path)  # ensures ops.offers, ops.agreements, write-offs
    assert load_batch(connection, billing_batch(root / "batch")).rows_quarantined == 0
    record(connection)
    connection.close()
    build_negotiation_marts(path, root / "state", AS_OF)
    connection = open_warehouse(path, read_only=True)
    yield connection
    connection.close()


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, object]]:
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def offers_by_name(connection: duckdb.DuckDBPyConnection) -> dict[str, dict[str, object]]:
    by_id = {row["offer_id"]: row for row in rows(connection, "select * from marts.fct_offers")}
    return {name: by_id[identifier] for name, identifier in OFFER_OF.items()}


def outcome(offer: dict[str, object]) -> tuple:
    return (
        offer["is_accepted"],
        offer["agreement_id"],
        offer["agreement_status"],
        offer["is_expired"],
    )


# --- fct_offers -------------------------------------------------------------------------


def test_only_offers_made_by_the_as_of_date_are_in_the_mart(warehouse) -> None:
    made = {row["offer_id"] for row in rows(warehouse, "select offer_id from marts.fct_offers")}
    assert made == set(OFFER_OF.values())  # not the offer of day +1
    dates = rows(warehouse, "select distinct as_of_date from marts.fct_offers")
    assert dates == [{"as_of_date": AS_OF}]


def test_an_agreement_without_an_offer_id_takes_up_the_latest_offer_of_its_length(
    warehouse,
) -> None:
    offers = offers_by_name(warehouse)
    kept = offers["KEPT 3"]
    assert outcome(kept) == (True, "AG-KEPT", "kept", False)
    assert (kept["agreed_date"], kept["days_to_accept"]) == (day(-28), 2)
    assert (kept["agreement_amount"], kept["agreement_paid_amount"]) == (
        Decimal("300.00"),
        Decimal("300.00"),
    )
    # February's offer of the same length still stood on the agreed date: the later one wins
    assert outcome(offers["KEPT Feb"]) == (False, None, None, True)
    # a 3-installment plan takes up neither the 6-installment offer nor the settlement offer
    assert outcome(offers["KEPT 6"]) == (False, None, None, False)
    assert outcome(offers["KEPT settlement"]) == (False, None, None, False)


def test_the_offer_an_agreement_names_is_the_one_it_took_up(warehouse) -> None:
    offers = offers_by_name(warehouse)
    assert outcome(offers["BROKEN 6"]) == (True, "AG-BROKEN", "broken", False)
    assert offers["BROKEN 6"]["agreement_paid_amount"] == Decimal("0.00")
    assert outcome(offers["BROKEN 3"]) == (False, None, None, False)


def test_an_offer_nobody_took_up_and_one_that_expired_before_the_agreement(warehouse) -> None:
    offers = offers_by_name(warehouse)
    # still standing on the as-of date: neither accepted nor lapsed
    assert outcome(offers["NEVER 3"]) == (False, None, None, False)
    assert outcome(offers["NEVER settlement"]) == (False, None, None, False)
    # LATE agreed a plan five days after its offer expired: the offer lapsed untaken
    assert outcome(offers["LATE 3"]) == (False, None, None, True)
    taken = rows(warehouse, "select agreement_id from marts.fct_offers where is_accepted")
    assert sorted(row["agreement_id"] for row in taken) == ["AG-BROKEN", "AG-KEPT", "AG-SETTLED"]


def test_a_settlement_offer_taken_up_and_paid(warehouse) -> None:
    settled = offers_by_name(warehouse)["SETTLED"]
    assert outcome(settled) == (True, "AG-SETTLED", "kept", False)
    assert (settled["offer_amount"], settled["balance_at_offer"], settled["percent"]) == (
        Decimal("700.00"),
        Decimal("1000.00"),
        Decimal("70.00"),
    )


# --- fct_offer_outcomes -----------------------------------------------------------------

OUTCOME_COLUMNS = (
    "offer_month", "segment", "offer_kind", "accounts_offered", "offers_made",
    "accounts_accepted", "offers_accepted", "offers_kept", "offers_broken", "offers_active",
    "offers_cancelled", "offers_lapsed", "acceptance_rate", "kept_rate",
)  # fmt: skip


def test_offer_outcomes_per_month_segment_and_kind(warehouse) -> None:
    table = warehouse.execute(
        f"select {', '.join(OUTCOME_COLUMNS)} from marts.fct_offer_outcomes order by 1, 2, 3"
    ).fetchall()
    assert table == [
        ("2026-01", "residential", "installment_plan", 1, 1, 0, 0, 0, 0, 0, 0, 1, 0.0, None),
        ("2026-02", "residential", "installment_plan", 1, 1, 0, 0, 0, 0, 0, 0, 1, 0.0, None),
        ("2026-03", "enterprise", "installment_plan", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0.0, None),
        ("2026-03", "enterprise", "settlement", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0.0, None),
        # KEPT and BROKEN: two lengths each, one taken up each, one kept and one broken
        ("2026-03", "residential", "installment_plan", 2, 4, 2, 2, 1, 1, 0, 0, 0, 1.0, 0.5),
        # KEPT's settlement offer untaken, SETTLED's taken up and kept
        ("2026-03", "residential", "settlement", 2, 2, 1, 1, 1, 0, 0, 0, 0, 0.5, 1.0),
    ]  # fmt: skip


# --- settlements ------------------------------------------------------------------------


def test_settlement_recovery_per_settlement(warehouse) -> None:
    table = warehouse.execute(
        """
        select
            agreement_id, settlement_status, balance_at_agreement, settlement_amount,
            paid_amount, remaining_amount, forgiven_amount, written_off_amount, is_written_off,
            written_off_date, settled_date, approved_by, agreed_month, recovery_rate
        from marts.fct_settlement_recovery
        order by agreement_id
        """
    ).fetchall()
    money = Decimal
    assert table == [
        # paid in full on day -15; the run of day -14 recommended writing off the 300.00 left
        ("AG-SETTLED", "kept", money("1000.00"), money("700.00"), money("700.00"),
         money("0.00"), money("300.00"), money("300.00"), True, day(-14), day(-14), None,
         "2026-03", 0.7),
        # 100.00 of the first 200.00 by its deadline: broken, nothing written off
        ("AG-SHORT", "broken", money("500.00"), money("400.00"), money("100.00"),
         money("300.00"), money("100.00"), None, False, None, None, "mgr-1", "2026-03", 0.2),
    ]  # fmt: skip


def test_settlement_recovery_per_month(warehouse) -> None:
    [month] = rows(warehouse, "select * from marts.fct_settlement_recovery_by_month")
    assert month == {
        "agreed_month": "2026-03",
        "currency": "USD",
        "as_of_date": AS_OF,
        "settlements": 2,
        "settlements_kept": 1,
        "settlements_broken": 1,
        "settlements_active": 0,
        "settlements_cancelled": 0,
        "settlements_written_off": 1,
        "balance_at_agreement": Decimal("1500.00"),
        "settlement_amount": Decimal("1100.00"),
        "paid_amount": Decimal("800.00"),
        "forgiven_amount": Decimal("400.00"),
        "written_off_amount": Decimal("300.00"),
        "recovery_rate": pytest.approx(800 / 1500),
    }


# --- fct_plan_performance ---------------------------------------------------------------


def test_plan_performance_by_length_source_and_kind(warehouse) -> None:
    table = warehouse.execute(
        """
        select
            created_month, plan_source, plan_kind, plan_length, plans_started, plans_active,
            plans_kept, plans_broken, plans_cancelled, kept_rate, scheduled_amount,
            paid_amount, round(share_paid, 4)
        from marts.fct_plan_performance
        where currency = 'USD'
        order by 1, 2, 3, 4
        """
    ).fetchall()
    money = Decimal
    assert table == [
        ("2026-02", "billing", "installment_plan", 3, 1, 1, 0, 0, 0, None,
         money("150.00"), money("100.00"), 0.6667),
        ("2026-03", "billing", "installment_plan", 3, 1, 0, 1, 0, 0, 1.0,
         money("150.00"), money("150.00"), 1.0),
        ("2026-03", "billing", "installment_plan", 6, 1, 0, 0, 1, 0, 0.0,
         money("300.00"), money("0.00"), 0.0),
        ("2026-03", "billing", "promise_to_pay", 1, 1, 1, 0, 0, 0, None,
         money("60.00"), money("0.00"), 0.0),
        # AG-KEPT paid in full, AG-LATE's first installment paid (AG-FUTURE is after AS_OF)
        ("2026-03", "recoup", "installment_plan", 3, 2, 1, 1, 0, 0, 1.0,
         money("600.00"), money("400.00"), 0.6667),
        # AG-BROKEN missed its first installment, AG-CANCEL was cancelled before its first
        ("2026-03", "recoup", "installment_plan", 6, 2, 0, 0, 1, 1, 0.0,
         money("600.00"), money("0.00"), 0.0),
        ("2026-03", "recoup", "settlement", 1, 1, 0, 1, 0, 0, 1.0,
         money("700.00"), money("700.00"), 1.0),
        ("2026-03", "recoup", "settlement", 2, 1, 0, 0, 1, 0, 0.0,
         money("400.00"), money("100.00"), 0.25),
    ]  # fmt: skip
    # the plan marts agree: every plan of fct_payment_plans is counted once
    [(plans,)] = warehouse.execute("select count(*) from marts.fct_payment_plans").fetchall()
    [(counted,)] = warehouse.execute(
        "select sum(plans_started) from marts.fct_plan_performance"
    ).fetchall()
    assert plans == counted == 10


# --- the monthly report -----------------------------------------------------------------


def negotiation_section(report: dict) -> dict:
    [section] = [s for s in monthly_report_sections(report) if s["key"] == "negotiation"]
    return section


def test_the_monthly_report_shows_the_month_s_offers_settlements_and_plans(warehouse) -> None:
    report = build_monthly_report(warehouse, MONTH)
    data = report["negotiation"]
    assert (data["available"], data["note"], data["as_of_date"]) == (True, None, "2026-03-31")
    assert [(row["offer_kind"], row["segment"], row["offers_made"]) for row in data["offers"]] == [
        ("installment_plan", "enterprise", 1),
        ("installment_plan", "residential", 4),
        ("settlement", "enterprise", 1),
        ("settlement", "residential", 2),
    ]
    [settlements] = data["settlements"]
    assert (settlements["paid_amount"], settlements["written_off_amount"]) == ("800.00", "300.00")
    section = negotiation_section(report)
    assert (section["title"], section["available"]) == (SECTION, True)
    offers, recovery, lengths = section["tables"]
    assert offers["rows"][1] == [
        "installment plan", "residential", "2", "4", "2", "1", "1", "0", "0", "100.0 %", "50.0 %",
    ]  # fmt: skip
    assert offers["rows"][2][-2:] == ["0.0 %", "n/a"]  # nothing kept or broken: no kept rate
    assert recovery["rows"] == [
        ["USD", "2", "1", "1", "1,500.00", "1,100.00", "800.00", "400.00", "300.00", "53.3 %"]
    ]
    assert [row[:4] + row[-4:] for row in lengths["rows"]] == [
        ["USD", "billing installment plan", "3", "1", "100.0 %", "150.00", "150.00", "100.0 %"],
        ["USD", "billing installment plan", "6", "1", "0.0 %", "300.00", "0.00", "0.0 %"],
        ["USD", "billing promise to pay", "1", "1", "n/a", "60.00", "0.00", "0.0 %"],
        ["USD", "recoup installment plan", "3", "2", "100.0 %", "600.00", "400.00", "66.7 %"],
        ["USD", "recoup installment plan", "6", "2", "0.0 %", "600.00", "0.00", "0.0 %"],
        ["USD", "recoup settlement", "1", "1", "100.0 %", "700.00", "700.00", "100.0 %"],
        ["USD", "recoup settlement", "2", "1", "0.0 %", "400.00", "100.00", "25.0 %"],
    ]
    html = render_monthly_report_html(report)
    assert SECTION in html and "53.3 %" in html
    text = pdf_text(monthly_report_pdf(report))
    assert SECTION in text and "1,100.00" in text


def test_a_month_with_offers_but_no_settlement_says_so(warehouse) -> None:
    report = build_monthly_report(warehouse, "2026-02")
    data = report["negotiation"]
    assert [(row["offer_kind"], row["offers_lapsed"]) for row in data["offers"]] == [
        ("installment_plan", 1)
    ]
    assert data["settlements"] == []
    assert [(row["plan_source"], row["plan_length"]) for row in data["plans"]] == [("billing", 3)]
    section = negotiation_section(report)
    assert "No settlement was agreed in 2026-02." in section["notes"]
    assert [table["title"] for table in section["tables"]] == [
        "Offers made, accepted and kept",
        "Plan performance by length (billing's plans and promises, recoup's agreements)",
    ]


@pytest.mark.parametrize(
    ("month", "note"),
    [
        pytest.param("2025-12", "No offer, settlement or plan was made in 2025-12.", id="before"),
        pytest.param(
            "2026-04",
            "The latest run (2026-03-31) is before 2026-04: no negotiation facts for the month.",
            id="after the latest run",
        ),
    ],
)
def test_a_month_without_negotiation_facts_says_why(warehouse, month: str, note: str) -> None:
    report = build_monthly_report(warehouse, month)
    assert (report["negotiation"]["available"], report["negotiation"]["note"]) == (False, note)
    section = negotiation_section(report)
    assert (section["available"], section["notes"], section["tables"]) == (False, [note], [])


def test_a_warehouse_without_the_negotiation_marts_names_them() -> None:
    connection = duckdb.connect()
    try:
        connection.execute("create schema marts")
        connection.execute("create table marts.fct_plan_performance (as_of_date date)")
        data = build_monthly_report(connection, MONTH)["negotiation"]
    finally:
        connection.close()
    assert data["available"] is False
    assert data["note"] == (
        "The warehouse has no marts.fct_offer_outcomes, marts.fct_settlement_recovery_by_month: "
        "build it with `recoup run` (dbt builds the marts)."
    )
