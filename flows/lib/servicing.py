"""The servicing queues of a run: refunds due and payment discrepancies, as files for billing
ops. The marts decide (marts.fct_refund_queue, marts.fct_payment_discrepancies, rebuilt every
run from the billing facts, so an item leaves its queue when billing fixes it); this module
writes them out:

- `out/servicing/<date>/refund_queue.csv`: one line per account owed a refund, with the
  amount, the method (the last payment's, where there was one) and how long the credit waited;
- `out/servicing/<date>/discrepancies.csv`: one line per payment discrepancy, with its reason,
  owner and age.

Both files are rewritten whole for the date (a rerun writes the same lines), owner-readable
only, with cells safe from spreadsheet formulas. No names or addresses: ids, dates, amounts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from flows.lib.output_files import csv_bytes, write_atomically

REFUND_COLUMNS = (
    "refund_key", "account_id", "customer_id", "currency", "amount", "method", "credit_since",
    "days_held",
)  # fmt: skip
DISCREPANCY_COLUMNS = (
    "discrepancy_key", "reason", "account_id", "customer_id", "item_type", "item_id",
    "item_date", "amount", "currency", "owner", "age_days", "detail",
)  # fmt: skip


@dataclass
class ServicingOutcome:
    """What the servicing queues hold after a run."""

    refunds: int = 0
    refund_amounts: dict[str, Decimal] = field(default_factory=dict)  # per currency
    discrepancies: dict[str, int] = field(default_factory=dict)  # per reason
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        amounts = ", ".join(f"{c} {a:,.2f}" for c, a in sorted(self.refund_amounts.items()))
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.discrepancies.items()))
        return (
            f"refunds due: {self.refunds:,}" + (f" ({amounts})" if amounts else "")
            + f"; payment discrepancies: {sum(self.discrepancies.values()):,}"
            + (f" ({reasons})" if reasons else "")
        )  # fmt: skip


def write_servicing_queues(
    connection: duckdb.DuckDBPyConnection, out: Path, as_of: dt.date
) -> ServicingOutcome:
    """Write the day's refund queue and discrepancy queue from the marts built for `as_of`."""
    from flows.lib.contact_data import require_build_for

    require_build_for(
        connection,
        as_of,
        would=f"the servicing queues of {as_of} would list another day's items",
        nothing="no queue file was written",
    )
    refunds = connection.execute(
        f"select {', '.join(REFUND_COLUMNS)} from marts.fct_refund_queue "
        "where as_of_date = ? order by account_id",
        [as_of],
    ).fetchall()
    discrepancies = connection.execute(
        f"select {', '.join(DISCREPANCY_COLUMNS)} from marts.fct_payment_discrepancies "
        "where as_of_date = ? order by reason, account_id, item_id",
        [as_of],
    ).fetchall()
    folder = out / "servicing" / as_of.isoformat()
    files = [
        write_atomically(folder / "refund_queue.csv", csv_bytes(REFUND_COLUMNS, refunds)),
        write_atomically(
            folder / "discrepancies.csv", csv_bytes(DISCREPANCY_COLUMNS, discrepancies)
        ),
    ]
    amounts: dict[str, Decimal] = {}
    currency_at, amount_at = REFUND_COLUMNS.index("currency"), REFUND_COLUMNS.index("amount")
    for row in refunds:
        amounts[row[currency_at]] = amounts.get(row[currency_at], Decimal(0)) + row[amount_at]
    reason_at = DISCREPANCY_COLUMNS.index("reason")
    return ServicingOutcome(
        refunds=len(refunds),
        refund_amounts=amounts,
        discrepancies=dict(Counter(row[reason_at] for row in discrepancies)),
        files=[str(path) for path in files],
    )
