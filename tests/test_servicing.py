"""The servicing step writes the day's queues from the marts, and refuses marts of another day."""

from __future__ import annotations

import datetime as dt
import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.contact_data import MartsNotForDate
from flows.lib.gates import record_build
from flows.lib.servicing import write_servicing_queues

pytestmark = pytest.mark.integration
D = dt.date(2026, 11, 30)


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute("create schema marts")
    connection.execute(
        "create table marts.fct_refund_queue (refund_key VARCHAR, account_id VARCHAR, "
        "customer_id VARCHAR, as_of_date DATE, currency VARCHAR, amount DECIMAL(18,2), "
        "method VARCHAR, credit_since DATE, days_held INTEGER)"
    )
    connection.execute(
        "insert into marts.fct_refund_queue values "
        "('k2', 'A2', 'C2', ?, 'USD', 12.50, 'card', '2026-10-01', 60), "
        "('k1', 'A1', 'C1', ?, 'USD', 100.00, 'check', '2026-10-31', 30)",
        [D, D],
    )
    connection.execute(
        "create table marts.fct_payment_discrepancies (discrepancy_key VARCHAR, reason VARCHAR, "
        "account_id VARCHAR, customer_id VARCHAR, item_type VARCHAR, item_id VARCHAR, item_date DATE, "
        "amount DECIMAL(18,2), currency VARCHAR, owner VARCHAR, age_days INTEGER, "
        "detail VARCHAR, as_of_date DATE)"
    )
    connection.execute(
        "insert into marts.fct_payment_discrepancies values "
        "('d1', 'suspected_duplicate_payment', 'A3', 'C3', 'payment', 'P1', '2026-11-02', 40, 'USD', "
        "'billing-ops', 28, '=HYPERLINK(\"http://evil.example\")', ?)",
        [D],
    )
    record_build(connection, D)
    yield connection
    connection.close()


def test_the_queues_are_written_whole_for_the_date(connection, tmp_path: Path) -> None:
    outcome = write_servicing_queues(connection, tmp_path, D)
    folder = tmp_path / "servicing" / "2026-11-30"
    refunds = (folder / "refund_queue.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[1] for line in refunds[1:]] == ["A1", "A2"]  # by account
    discrepancies = (folder / "discrepancies.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in discrepancies  # a formula is never a live cell
    assert outcome.refunds == 2 and outcome.refund_amounts == {"USD": Decimal("112.50")}
    assert outcome.discrepancies == {"suspected_duplicate_payment": 1}
    assert str(outcome) == (
        "refunds due: 2 (USD 112.50); payment discrepancies: 1 (suspected_duplicate_payment 1)"
    )
    assert all(stat.S_IMODE(Path(f).stat().st_mode) == 0o600 for f in outcome.files)
    again = write_servicing_queues(connection, tmp_path, D)
    assert (folder / "refund_queue.csv").read_text(encoding="utf-8").splitlines() == refunds
    assert again.refunds == 2


def test_marts_of_another_day_write_no_queue(connection, tmp_path: Path) -> None:
    with pytest.raises(MartsNotForDate, match="the marts hold 2026-11-30, not 2026-12-01"):
        write_servicing_queues(connection, tmp_path, D + dt.timedelta(days=1))
    assert not (tmp_path / "servicing").exists()
