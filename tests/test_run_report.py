"""The run report: built from a run summary and tiny marts, rendered as JSON, HTML and markdown.

The marts here hold only the columns the report reads, in an in-memory DuckDB; each row says
why it is there."""

from __future__ import annotations

import datetime as dt
import json
import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.run_report import (
    build_run_report,
    render_run_report_html,
    run_report_markdown,
    write_run_report,
)

pytestmark = pytest.mark.integration  # DuckDB, in memory

AS_OF = dt.date(2026, 12, 1)
HOSTILE = "<script>alert('x')</script>"
STAGE_TYPES = {
    "as_of_date": "DATE",
    "stage_order": "INTEGER",
    "stage": "VARCHAR",
    "currency": "VARCHAR",
    "collectible_amount": "DECIMAL(18,2)",
    "is_held": "BOOLEAN",
    "hold_reason": "VARCHAR",
}
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
AGING_TYPES = {
    "as_of_date": "DATE",
    "currency": "VARCHAR",
    **{name: "DECIMAL(18,2)" for name in BUCKETS},
    "total_open": "DECIMAL(18,2)",
    "disputed_amount": "DECIMAL(18,2)",
    "collectible_amount": "DECIMAL(18,2)",
}

FULL_SUMMARY: dict[str, object] = {
    "run_id": "9f1c1234abcd",
    "flow": "daily-dunning",
    "as_of": AS_OF.isoformat(),
    "dry_run": False,
    "scope": {"segment": None, "accounts": None},
    "status": "failed",
    "failed_step": "email",
    "error": f"SendGrid answered 401 {HOSTILE}",
    "started_at": "2026-12-01T12:00:00+00:00",
    "finished_at": "2026-12-01T12:01:23+00:00",
    "steps": [
        {"step": "ingest", "status": "done", "seconds": 2.1},
        {"step": "build", "status": "done", "seconds": 9.8},
        {"step": "email", "status": "failed", "seconds": 0.3},
        {"step": "letters", "status": "skipped", "seconds": 0},
    ],
    "batches": [
        {
            "folder": "demo-2026-12-01",
            "batch_id": 1,
            "changed": True,
            "rows_loaded": 520334,
            "rows_quarantined": 5,
        }
    ],
    "gates": [
        {"gate": "gate_raw", "check": "keys_unique", "violations": 0, "passed": True},
        {"gate": "gate_warehouse", "check": "ledger_reconciles", "violations": 3, "passed": False},
    ],
    "contacts": [
        {"channel": "email", "status": "suppressed", "reason": "do_not_email", "count": 3},
        {"channel": "email", "status": "sent", "reason": None, "count": 2070},
        {"channel": "letter", "status": "deferred", "reason": HOSTILE, "count": 1},
    ],
    "plan": [
        {
            "channel": "email",
            "stage": "reminder_1",
            "status": "planned",
            "reason": None,
            "count": 5,
        },
        {"channel": "email", "stage": "none", "status": "suppressed", "reason": "x", "count": 1},
    ],
    "rechecked": {"cancelled: paid_since_planning": 4},
    "files": ["/abs/path/outbox/2026-12-01"],
}


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


def a_stage(stage: str, order: int, currency: str, amount: str, **extra: object) -> dict:
    return {
        "as_of_date": AS_OF,
        "stage_order": order,
        "stage": stage,
        "currency": currency,
        "collectible_amount": Decimal(amount),
        "is_held": False,
        **extra,
    }


def an_aging(currency: str, **amounts: str) -> dict:
    row: dict[str, object] = {"as_of_date": AS_OF, "currency": currency}
    row |= {name: Decimal(amounts.get(name, "0")) for name in BUCKETS}
    row["total_open"] = sum(Decimal(amounts.get(name, "0")) for name in BUCKETS)
    row["disputed_amount"] = Decimal(amounts.get("disputed", "0"))
    row["collectible_amount"] = row["total_open"] - row["disputed_amount"]
    return row


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def full_marts(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    a_table(
        connection,
        "marts.fct_account_stage_history",
        STAGE_TYPES,
        [
            # two USD accounts and one EUR account in the same stage: per currency, never summed
            a_stage("reminder_1", 2, "USD", "120.00"),
            a_stage("reminder_1", 2, "USD", "80.50"),
            a_stage("reminder_1", 2, "EUR", "1000.00"),
            # held for two reasons: counts under both
            a_stage("none", 0, "USD", "50.00", is_held=True, hold_reason="bankruptcy, dispute"),
            # a stage name nobody should trust
            a_stage(HOSTILE, 9, "USD", "7.00", is_held=True, hold_reason=HOSTILE),
            # the day before: not in this report
            a_stage("final_notice", 4, "USD", "999.99", as_of_date=AS_OF - dt.timedelta(days=1)),
        ],
    )
    a_table(
        connection,
        "marts.fct_account_aging",
        AGING_TYPES,
        [
            an_aging("USD", current="50.00", dpd_1_30="200.50", dpd_181_plus="7.00"),
            an_aging("EUR", dpd_31_60="1000.00", disputed="100.00"),
            {**an_aging("USD", current="999.99"), "as_of_date": AS_OF - dt.timedelta(days=1)},
        ],
    )
    return connection


def test_a_run_that_failed_before_dbt_still_gets_a_report(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    summary = {"run_id": "0123456789", "as_of": "2026-12-01", "status": "failed"}
    report = build_run_report(connection, summary)  # no marts schema at all
    assert report["warehouse"]["available"] is False
    assert "marts.fct_account_stage_history" in report["warehouse"]["note"]
    assert report["steps"] == report["gates"] == report["contacts"] == []
    html = render_run_report_html(report)
    assert "Daily run report for 2026-12-01" in html
    assert "the run stopped before dbt built the marts" in html
    assert "No step timings were recorded." in html
    assert "<svg" not in html  # no chart without data
    markdown = run_report_markdown(report)
    assert "failed" in markdown and "before dbt built the marts" in markdown


def test_marts_without_the_run_date_say_which_date_they_hold(
    full_marts: duckdb.DuckDBPyConnection,
) -> None:
    summary = {"run_id": "0123456789", "as_of": "2026-12-05", "status": "failed"}
    report = build_run_report(full_marts, summary)
    assert report["warehouse"]["available"] is False
    assert "2026-12-01" in report["warehouse"]["note"]  # the latest date the marts hold
    render_run_report_html(report)


def test_the_full_report_keeps_amounts_per_stage_and_currency(
    full_marts: duckdb.DuckDBPyConnection,
) -> None:
    report = build_run_report(full_marts, FULL_SUMMARY)
    warehouse = report["warehouse"]
    assert warehouse["available"] is True
    reminder = {row["currency"]: row for row in warehouse["stages"] if row["stage"] == "reminder_1"}
    assert reminder["USD"]["collectible_amount"] == "200.50"
    assert reminder["USD"]["accounts"] == 2
    assert reminder["EUR"]["collectible_amount"] == "1000.00"
    funnel = [(row["stage"], row["accounts"], row["held"]) for row in warehouse["funnel"]]
    assert funnel == [("none", 1, 1), ("reminder_1", 3, 0), (HOSTILE, 1, 1)]  # ladder order
    aging = {row["currency"]: row for row in warehouse["aging"]}
    assert aging["USD"]["buckets"]["dpd_1_30"] == "200.50"
    assert aging["USD"]["total_open"] == "257.50"
    assert (aging["EUR"]["total_open"], aging["EUR"]["collectible_amount"]) == ("1000.00", "900.00")
    holds = {hold["reason"]: hold["accounts"] for hold in warehouse["holds"]}
    assert holds == {"bankruptcy": 1, "dispute": 1, HOSTILE: 1}
    assert [gate["passed"] for gate in report["gates"]] == [False, True]  # failing first
    email = next(row for row in report["contacts_by_channel"] if row["channel"] == "email")
    assert (email["went_out"], email["held_back"]) == (2070, 3)
    assert report["run"]["seconds"] == 83.0
    plan = [(row["stage"], row["count"]) for row in report["plan_by_stage"]]
    assert plan == [("none", 1), ("reminder_1", 5)]  # in ladder order


def test_amounts_in_different_currencies_are_never_added(
    full_marts: duckdb.DuckDBPyConnection,
) -> None:
    report = build_run_report(full_marts, FULL_SUMMARY)
    # USD 200.50 and EUR 1,000.00 share a stage; their sum must appear nowhere
    everything = json.dumps(report) + render_run_report_html(report) + run_report_markdown(report)
    assert "1200.50" not in everything and "1,200.50" not in everything
    assert "1,257.50" not in everything and "1257.50" not in everything  # aging totals


def test_hostile_names_and_reasons_are_escaped_in_the_html(
    full_marts: duckdb.DuckDBPyConnection,
) -> None:
    html = render_run_report_html(build_run_report(full_marts, FULL_SUMMARY))
    assert "<script" not in html.lower()  # not in the tables, the error, nor the charts
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<link" not in html and " src=" not in html  # self-contained: nothing fetched


def test_the_json_file_round_trips_and_both_files_are_private(
    full_marts: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    report = build_run_report(full_marts, FULL_SUMMARY)
    paths = write_run_report(report, tmp_path / "reports" / "2026-12-01")
    assert [path.name for path in paths] == ["run_9f1c1234.json", "run_9f1c1234.html"]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = json.loads(paths[0].read_text(encoding="utf-8"))
    assert again == report
    assert render_run_report_html(again) == paths[1].read_text(encoding="utf-8")


def test_the_markdown_has_the_key_numbers(full_marts: duckdb.DuckDBPyConnection) -> None:
    markdown = run_report_markdown(build_run_report(full_marts, FULL_SUMMARY))
    assert "# daily-dunning for 2026-12-01: failed" in markdown
    assert "**Failed step:** email" in markdown
    assert "FAILED gate_warehouse ledger_reconciles: 3 rows" in markdown
    assert "| email | 2,070 | 0 | 3 | 0 |" in markdown
    assert "1 folder(s), 520,334 rows loaded, 5 quarantined" in markdown
    assert "| reminder_1 | 3 | 0 | 1,000.00 | 200.50 |" in markdown  # EUR, then USD
    assert "<script" not in markdown  # the artifact renders markdown; no HTML gets through


def test_a_dry_run_shows_what_it_planned(connection: duckdb.DuckDBPyConnection) -> None:
    summary = {
        "run_id": "abcdef0123",
        "as_of": "2026-12-01",
        "status": "succeeded",
        "dry_run": True,
        "contacts": [{"channel": "letter", "status": "planned", "reason": None, "count": 12}],
    }
    report = build_run_report(connection, summary)
    assert report["contacts_by_channel"][0]["planned"] == 12
    html = render_run_report_html(report)
    assert "dry run" in html and "nothing was sent" in html


def test_the_agency_step_shows_placements_recalls_and_what_was_left(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    placements = {
        "placed": {"summit": 2, "northwind": 5},
        "recalled": {"paid_in_full": 1},
        "not_placed": {"no_agency_takes_it": 3},
        "files": ["/abs/out/agencies/summit/2026-12-01/placements.csv"],
    }
    summary = {"run_id": "0123456789", "as_of": "2026-12-01", "status": "succeeded"}
    report = build_run_report(connection, {**summary, "placements": placements})
    assert report["agencies"]["placed"] == [
        {"agency": "northwind", "count": 5},
        {"agency": "summit", "count": 2},
    ]
    html = render_run_report_html(report)
    assert "Collection agencies" in html and ">northwind</td>" in html
    markdown = run_report_markdown(report)
    assert (
        "**Agencies:** placed northwind 5; summit 2 · recalled paid_in_full 1 · "
        "not placed no_agency_takes_it 3"
    ) in markdown.replace("\\_", "_")
    # a run that never reached the agency step has no such section
    assert build_run_report(connection, summary)["agencies"] is None
    assert "Collection agencies" not in render_run_report_html(
        build_run_report(connection, summary)
    )


def test_the_servicing_queues_show_refunds_and_discrepancies(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    servicing = {
        "refunds": 2,
        "refund_amounts": {"USD": "1250.5", "CAD": "10.00"},
        "discrepancies": {"suspected_duplicate_payment": 2, "refund_exceeds_credit": 1},
    }
    summary = {"run_id": "0123456789", "as_of": "2026-12-01", "status": "succeeded"}
    report = build_run_report(connection, {**summary, "servicing": servicing})
    assert report["servicing"]["refund_amounts"] == [
        {"currency": "CAD", "amount": "10.00"},
        {"currency": "USD", "amount": "1250.5"},
    ]
    html = render_run_report_html(report)
    assert "Servicing queues" in html and "USD 1,250.50" in html
    assert "suspected duplicate payment" in html
    markdown = run_report_markdown(report).replace("\\_", "_")
    assert "**Servicing:** refunds due 2 (CAD 10.00; USD 1,250.50)" in markdown
    assert "refund_exceeds_credit 1; suspected_duplicate_payment 2" in markdown
    assert build_run_report(connection, summary)["servicing"] is None


def test_the_skip_trace_step_shows_candidates_and_requests(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    skips = {
        "candidates": 3, "reasons": {"email_hard_bounce": 2, "no_usable_channel": 1},
        "waiting": 1, "new_requests": 2, "requested": 2, "expired": 0, "open_requests": 4,
        "dry_run": False,
    }  # fmt: skip
    summary = {"run_id": "0123456789", "as_of": "2026-12-01", "status": "succeeded"}
    report = build_run_report(connection, {**summary, "skip_tracing": skips})
    html = render_run_report_html(report)
    assert "<h2>Skip tracing</h2>" in html and "email hard bounce" in html
    assert "out/skip_tracing/2026-12-01/skip_requests.csv" in html
    markdown = run_report_markdown(report).replace("\\_", "_")
    assert "**Skip tracing:** candidates 3 (email_hard_bounce 2; no_usable_channel 1)" in markdown
    assert "new requests 2 · waiting on an earlier request 1 · open 4" in markdown
    dry = build_run_report(connection, {**summary, "skip_tracing": {**skips, "dry_run": True}})
    assert "would request 2" in run_report_markdown(dry)
    assert "skip_requests.csv" not in render_run_report_html(dry)
    assert build_run_report(connection, summary)["skip_tracing"] is None
