"""The agency step of the daily run, end to end: an account climbs the ladder to the agency
stage, is placed once (its file written once), internal dunning stops, and paying recalls it."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row, write_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D = dt.date(2026, 3, 31)


def day(offset: int) -> str:
    return (D + dt.timedelta(days=offset)).isoformat()


def placements(home: Path) -> list[tuple]:
    connection = open_warehouse(home / "warehouse" / "recoup.duckdb", read_only=True)
    rows = connection.execute(
        "select account_id, agency_id, status, placed_date, recall_reason from ops.placements"
    ).fetchall()
    connection.close()
    return rows


def test_an_account_is_placed_once_then_recalled_when_paid(
    prefect_api, recoup_home: Path, monkeypatch
) -> None:
    from flows.daily_dunning import daily_dunning

    monkeypatch.setenv("RECOUP_GATES__FRESHNESS_DAYS", "60")
    base_batch(
        recoup_home / "inbox" / "01",
        customers=[row("customers", full_name="Ann Lee", state="IL", postal_code="60601")],
        accounts=[row("accounts", account_id="A1", segment="residential")],
        invoices=[
            row(
                "invoices",
                invoice_id="I1",
                account_id="A1",
                amount="300.00",
                issue_date="2025-11-01",
                due_date=day(-100),
            )
        ],
        payments=[
            row("payments", payment_id="P0", account_id="A1", amount="1.00", received_date=day(-1))
        ],
    )
    stages = {}
    for offset in (0, 10, 24):  # final notice, pre-placement notice, agency placement
        summary = daily_dunning(as_of=D + dt.timedelta(days=offset))
        stages[offset] = summary
    # USD, 299.00 collectible: both demo agencies take it; its id's hash picks one
    [(account, agency, status, placed, _)] = placements(recoup_home)
    assert (account, status, placed) == ("A1", "open", D + dt.timedelta(days=24))
    assert agency in {"northwind", "summit"}
    assert [s.record.status for s in stages.values()] == ["succeeded"] * 3
    files = recoup_home / "out" / "agencies" / agency / day(24)
    lines = (files / "placements.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[0].startswith("layout_version,placement_id,placed_date")
    record = dict(zip(lines[0].split(","), next(csv.reader([lines[1]])), strict=True))
    assert (record["account_id"], record["balance"], record["full_name"]) == (
        "A1",
        "299.00",
        "Ann Lee",
    )

    # the same day again: no second placement, the file unchanged
    again = daily_dunning(as_of=D + dt.timedelta(days=24))
    assert len(placements(recoup_home)) == 1
    assert (files / "placements.csv").read_text(encoding="utf-8").splitlines() == lines
    assert again.placements is not None and again.placements.total_placed == 0

    # placed: no internal contact the next week, even though it stays past due
    later = daily_dunning(as_of=D + dt.timedelta(days=31))
    assert [c.total("sent") for c in later.contacts] == [0, 0, 0]
    connection = open_warehouse(recoup_home / "warehouse" / "recoup.duckdb", read_only=True)
    held = connection.execute(
        "select hold_reason from marts.fct_account_stage_history where as_of_date = ?",
        [D + dt.timedelta(days=31)],
    ).fetchall()
    connection.close()
    assert "placed_with_agency" in held[0][0]

    # paid in full: recalled, with a recall file
    write_batch(recoup_home / "inbox" / "02", payments=[
        row("payments", payment_id="P1", account_id="A1", amount="299.00", received_date=day(33)),
    ])  # fmt: skip
    daily_dunning(as_of=D + dt.timedelta(days=34))
    [(_, _, status, _, reason)] = placements(recoup_home)
    assert (status, reason) == ("recalled", "paid_in_full")
    recall = recoup_home / "out" / "agencies" / agency / day(34) / "recalls.csv"
    assert "paid_in_full" in recall.read_text(encoding="utf-8")
