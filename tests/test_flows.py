"""The Prefect flows, on Prefect's test API: ingest and the daily run over the inbox."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flows.lib.warehouse import open_warehouse, scalar
from tests.builders import base_batch, row

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_ingest_flow_loads_a_batch(prefect_api, recoup_home: Path, tmp_path: Path) -> None:
    from flows.ingest import ingest

    folder = base_batch(
        tmp_path / "batch",
        invoices=[row("invoices"), row("invoices", invoice_id="I2", amount="1e3")],
    )
    [outcome] = ingest(path=folder)
    assert (outcome.batch_id, outcome.rows_loaded, outcome.rows_quarantined) == (1, 3, 1)
    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb", read_only=True)
    assert scalar(connection, "select count(*) from raw.invoices_latest") == 1
    connection.close()


def test_the_ingest_flow_reads_a_relative_path_inside_recoup_home(
    prefect_api, recoup_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """The ingest deployment passes `inbox` and runs from the repository."""
    from flows.ingest import ingest

    base_batch(recoup_home / "inbox" / "b1")
    elsewhere = tmp_path / "repository"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [outcome] = ingest(path=Path("inbox"))
    assert outcome.folder == recoup_home / "inbox" / "b1"


def test_the_daily_run_loads_the_inbox_once_and_writes_the_servicing_files(
    prefect_api, recoup_home: Path
) -> None:
    from flows.daily_dunning import daily_dunning

    fresh = [row("payments", received_date="2026-11-19")]  # gate 1 wants recent payments
    base_batch(recoup_home / "inbox" / "2026-11-20", invoices=[row("invoices")], payments=fresh)
    base_batch(recoup_home / "inbox" / "2026-11-21", invoices=[row("invoices", amount="99.00")])
    first = daily_dunning(as_of=dt.date(2026, 11, 21))
    assert [batch.batch_id for batch in first.batches] == [1, 2]  # oldest folder first
    again = daily_dunning(as_of=dt.date(2026, 11, 21))
    assert [batch.changed for batch in again.batches] == [False, False]
    assert again.not_built_yet == ()
    # the servicing queues are written for the date, whole, by every run
    folder = recoup_home / "out" / "servicing" / "2026-11-21"
    refunds = (folder / "refund_queue.csv").read_text(encoding="utf-8").splitlines()
    assert refunds[0].startswith("refund_key,account_id,customer_id,currency,amount,method")
    assert (
        (folder / "discrepancies.csv")
        .read_text(encoding="utf-8")
        .startswith("discrepancy_key,reason,account_id")
    )
    assert again.servicing is not None and again.servicing.refunds == len(refunds) - 1
    requests = recoup_home / "out" / "skip_tracing" / "2026-11-21" / "skip_requests.csv"
    assert requests.read_text(encoding="utf-8").startswith("request_id,customer_id,")
    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb", read_only=True)
    assert connection.execute("select amount::VARCHAR from raw.invoices_latest").fetchall() == [
        ("99.00",)
    ]
    connection.close()


def test_the_daily_run_with_an_empty_inbox_does_nothing(prefect_api, recoup_home: Path) -> None:
    from flows.daily_dunning import daily_dunning

    summary = daily_dunning(as_of=dt.date(2026, 11, 21), dry_run=True)
    assert summary.batches == []


def test_a_failed_gate_stops_the_run_before_dbt_and_anything_outbound(
    prefect_api, recoup_home: Path
) -> None:
    from flows.daily_dunning import daily_dunning
    from flows.lib.gates import GateFailed

    bad = row("invoices", issue_date="2026-03-01", due_date="2026-02-01")  # due before issued
    base_batch(
        recoup_home / "inbox" / "2026-03-31",
        invoices=[bad],
        payments=[row("payments", received_date="2026-03-30")],
    )
    with pytest.raises(GateFailed, match="due_date_not_before_issue_date: 1 offending"):
        daily_dunning(as_of=dt.date(2026, 3, 31))
    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb", read_only=True)
    marts = connection.execute(
        "select count(*) from information_schema.schemata where schema_name = 'marts'"
    ).fetchall()
    failed = connection.execute(
        "select check_name from ops.gate_results where not success"
    ).fetchall()
    connection.close()
    assert marts == [(0,)]  # dbt never ran
    assert failed == [("due_date_not_before_issue_date",)]
    assert not (recoup_home / "outbox").exists()  # nothing outbound: no email, letter, queue
    assert sorted(path.name for path in (recoup_home / "out").iterdir()) == ["reports"]
    [report] = (recoup_home / "out" / "reports" / "2026-03-31").glob("run_*.json")
    assert '"failed_step": "gate_raw"' in report.read_text(encoding="utf-8")


def contact_batch(folder: Path) -> Path:
    """Three customers one day past due on 2026-11-21, each with one account."""
    customers = [
        row("customers", customer_id=c, email=f"{c.lower()}@example.com", full_name=c)
        for c in ("C1", "C2", "C3")
    ]
    accounts = [row("accounts", account_id=f"A-{c}", customer_id=c) for c in ("C1", "C2", "C3")]
    invoices = [
        row("invoices", invoice_id=f"I-{c}", account_id=f"A-{c}", issue_date="2026-10-20",
            due_date="2026-11-20")
        for c in ("C1", "C2", "C3")
    ]  # fmt: skip
    fresh = [row("payments", account_id="A-C1", received_date="2026-11-19", amount="1.00")]
    return base_batch(folder, customers=customers, accounts=accounts, invoices=invoices,
                      payments=fresh)  # fmt: skip


def ledger_rows(home: Path) -> list[tuple]:
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    rows = connection.execute(
        "select account_id, channel, status from ops.action_ledger order by 1"
    ).fetchall()
    connection.close()
    return rows


def test_the_daily_run_contacts_each_due_customer_once(prefect_api, recoup_home: Path) -> None:
    from flows.daily_dunning import daily_dunning

    contact_batch(recoup_home / "inbox" / "2026-11-21")
    day = dt.date(2026, 11, 21)
    dry = daily_dunning(as_of=day, dry_run=True)
    assert dry.plan is not None and dry.plan.planned() == {"email": 3} and dry.contacts == []
    assert ledger_rows(recoup_home) == []  # a dry run writes no plan
    assert not (recoup_home / "outbox").exists()

    only_two = daily_dunning(as_of=day, accounts=["A-C1", "A-C3"])
    assert [c.total("sent") for c in only_two.contacts] == [2, 0, 0]
    first = daily_dunning(as_of=day)
    assert [c.total("sent") for c in first.contacts] == [1, 0, 0]  # only A-C2 was left
    again = daily_dunning(as_of=day)
    assert [c.counts for c in again.contacts] == [{}, {}, {}]
    assert ledger_rows(recoup_home) == [
        ("A-C1", "email", "sent"), ("A-C2", "email", "sent"), ("A-C3", "email", "sent"),
    ]  # fmt: skip
    assert len(list((recoup_home / "outbox" / "2026-11-21").glob("*.eml"))) == 3
