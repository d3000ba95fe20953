"""The next day's batch of a demo export: about 1 % new invoices and 1 % new payments.

`generate_increment` reads the batch folders already written (the full export and any earlier
increment), draws from one seeded generator which accounts are billed and which open invoices
are paid, and writes a batch folder holding only `invoices.csv` and `payments.csv` (a batch
may hold any subset of the entities). No row loops: DuckDB reads and writes the files, numpy
draws the choices.

- New invoices go to active accounts, issued on the new date, due after the segment's terms,
  for about the account's latest invoice amount, in its currency.
- New payments pay invoices that no payment names yet and that fell due in the last 120 days,
  in full, received on the new date and linked to their invoice.
- Ids continue the export's numbering (`I000000001`, `INV-000000001`, `P000000001`), so a key
  is never reused across batches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from flows.lib.demo_data import METHODS, SEGMENTS, TERMS_DAYS

PAID_WITHIN_DAYS = 120  # invoices due this long ago or less are the ones customers still pay
METHOD_WEIGHTS = (0.4, 0.35, 0.15, 0.05, 0.03, 0.02)  # card, ach, check, wire, cash, other


@dataclass(frozen=True)
class Increment:
    folder: Path
    as_of: dt.date
    invoices: int
    payments: int


def generate_increment(
    earlier: list[Path], folder: Path, *, as_of: dt.date, share: float = 0.01, seed: int = 7
) -> Increment:
    """Write the batch of `as_of` into `folder`: `share` of the invoices and of the payments
    the `earlier` batch folders hold, as new rows. The same inputs and seed give the same
    files."""
    if not 0 < share <= 1:
        raise ValueError(f"share is {share}; use a fraction above 0 and at most 1, e.g. 0.01")
    rng = np.random.default_rng(seed)
    connection = duckdb.connect()
    try:
        _read_earlier(connection, earlier)
        invoices = _new_invoices(connection, rng, as_of, share)
        payments = _new_payments(connection, rng, as_of, share)
        folder.mkdir(parents=True, exist_ok=True)
        _write(connection, invoices, folder / "invoices.csv")
        _write(connection, payments, folder / "payments.csv")
    finally:
        connection.close()
    return Increment(folder, as_of, invoices.num_rows, payments.num_rows)


def _read_earlier(connection: duckdb.DuckDBPyConnection, earlier: list[Path]) -> None:
    """Views over the earlier batches' accounts, invoices and payments, as text columns
    (contract-breaking demo rows included: they only shift the numbering)."""
    for entity in ("accounts", "invoices", "payments"):
        files = [str(folder / f"{entity}.csv") for folder in earlier]
        files = [name for name in files if Path(name).is_file()]
        if not files:
            raise FileNotFoundError(f"no {entity}.csv in {', '.join(map(str, earlier))}")
        listed = ", ".join("'" + name.replace("'", "''") + "'" for name in files)
        connection.execute(
            f"create view {entity} as select * from read_csv([{listed}], header = true, "
            "all_varchar = true, union_by_name = true)"
        )


def _new_invoices(
    connection: duckdb.DuckDBPyConnection, rng: np.random.Generator, as_of: dt.date, share: float
) -> pa.Table:
    accounts = connection.sql(
        """
        with latest as (
            select
                account_id,
                count(*) as invoices,
                arg_max(
                    cast(round(try_cast(amount as decimal(18, 2)) * 100) as bigint),
                    try_cast(issue_date as date)
                ) as last_cents
            from invoices
            group by account_id
        )
        select
            accounts.account_id,
            accounts.currency,
            accounts.segment,
            coalesce(latest.invoices, 0) as invoices,
            coalesce(latest.last_cents, 5000) as last_cents
        from accounts
        left join latest on accounts.account_id = latest.account_id
        where accounts.status = 'active'
        order by accounts.account_id
        """
    ).to_arrow_table()
    total = connection.sql("select count(*) from invoices").fetchall()[0][0]
    count = min(round(total * share), accounts.num_rows)
    chosen = np.sort(rng.choice(accounts.num_rows, size=count, replace=False))
    picked = accounts.take(pa.array(chosen, type=pa.int64()))
    first = _next_number(connection, "invoices", "invoice_id", "I") + np.arange(count)
    segments = np.asarray(picked.column("segment").to_numpy(zero_copy_only=False))
    due_in = np.full(count, 30)
    for name, days in zip(SEGMENTS, TERMS_DAYS, strict=True):
        due_in[segments == name] = days
    last_cents = picked.column("last_cents").to_numpy().astype(np.int64)
    cents = np.maximum(500, (last_cents * rng.normal(1.0, 0.12, count)).astype(np.int64))
    issue = np.full(count, as_of, dtype="datetime64[D]")
    cycle = picked.column("invoices").to_numpy() + 1
    return pa.table(
        {
            "invoice_id": np.char.add("I", np.char.zfill(first.astype(str), 9)),
            "account_id": picked.column("account_id"),
            "invoice_number": np.char.add("INV-", np.char.zfill(first.astype(str), 9)),
            "issue_date": pa.array(issue),
            "due_date": pa.array(issue + due_in.astype("timedelta64[D]")),
            "amount": pa.array(cents, type=pa.int64()),
            "currency": picked.column("currency"),
            "description": np.char.add("Monthly service, cycle ", cycle.astype(str)),
        }
    )


def _new_payments(
    connection: duckdb.DuckDBPyConnection, rng: np.random.Generator, as_of: dt.date, share: float
) -> pa.Table:
    unpaid = connection.sql(
        """
        select
            invoices.invoice_id,
            invoices.account_id,
            invoices.currency,
            cast(round(try_cast(invoices.amount as decimal(18, 2)) * 100) as bigint) as cents
        from invoices
        semi join accounts on invoices.account_id = accounts.account_id
        anti join payments on invoices.invoice_id = payments.invoice_id
        where
            regexp_full_match(invoices.invoice_id, 'I[0-9]+')
            and try_cast(invoices.due_date as date) between $since and $as_of
            and try_cast(invoices.amount as decimal(18, 2)) > 0
        order by invoices.invoice_id
        """,
        params={"since": as_of - dt.timedelta(days=PAID_WITHIN_DAYS), "as_of": as_of},
    ).to_arrow_table()
    total = connection.sql("select count(*) from payments").fetchall()[0][0]
    count = min(round(total * share), unpaid.num_rows)
    chosen = np.sort(rng.choice(unpaid.num_rows, size=count, replace=False))
    picked = unpaid.take(pa.array(chosen, type=pa.int64()))
    first = _next_number(connection, "payments", "payment_id", "P") + np.arange(count)
    method = rng.choice(len(METHODS), size=count, p=METHOD_WEIGHTS)
    return pa.table(
        {
            "payment_id": np.char.add("P", np.char.zfill(first.astype(str), 9)),
            "account_id": picked.column("account_id"),
            "invoice_id": picked.column("invoice_id"),
            "received_date": pa.array(np.full(count, as_of, dtype="datetime64[D]")),
            "amount": picked.column("cents"),
            "currency": picked.column("currency"),
            "method": np.array(METHODS)[method],
            "reverses_payment_id": pa.array([None] * count, type=pa.string()),
        }
    )


def _next_number(
    connection: duckdb.DuckDBPyConnection, entity: str, column: str, prefix: str
) -> int:
    """One past the highest number of the export's `<prefix>000000123` ids."""
    highest = connection.sql(
        f"select max(try_cast(substr({column}, 2) as bigint)) from {entity} "
        f"where regexp_full_match({column}, '{prefix}[0-9]+')"
    ).fetchall()[0][0]
    return (highest or 0) + 1


def _write(connection: duckdb.DuckDBPyConnection, table: pa.Table, target: Path) -> None:
    """The CSV as the demo export spells it: dates as YYYY-MM-DD, cents as 12.34."""
    connection.register("rows", table)
    names = ", ".join(
        f"cast(cast({name} as hugeint) * 0.01 as decimal(18, 2)) as {name}"
        if name == "amount"
        else name
        for name in table.column_names
    )
    connection.execute(f"copy (select {names} from rows) to '{target}' (header, delimiter ',')")
    connection.unregister("rows")
