"""Settlements paid in full → write-off recommendations for the billing system, exactly once
(docs/negotiation.md, "Settlements and write-off recommendations").

A settlement recorded in recoup (flows/lib/agreements.py) is **kept** on a date when the
payments towards it cover every installment (marts.fct_payment_plans, plan_source `recoup`,
plan_kind `settlement`, plan_status `kept`). The account is then held `settled` for good, and
what it still owes (its collectible balance in marts.fct_account_aging on that date) is what
the company agreed to forgive: recoup never edits billing's ledger, it recommends the write-off.

Once per agreement ever: the first run that sees a settlement kept records it in
`ops.write_off_recommendations` (recommendation_id = the first 24 hex digits of
sha256(agreement_id)) and notes the date on the agreement (`ops.agreements.settled_on`); no
later date looks at it again. A settlement kept when the account owes nothing more (the
customer paid everything) is noted the same way but gets no recommendation: a zero amount is
not an adjustment. The day's file `out/adjustments/<date>/write_off_recommendations.csv` is
rewritten whole from the recommendations made on that date, so a rerun of the day writes the
same file and a later day never repeats a line. A run for a past date judges that date's marts,
so a date before the settlement was kept recommends nothing. A dry run counts and writes
nothing; a run scoped to a segment or accounts looks only at those accounts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import duckdb

from flows.lib.agreements import ensure_agreement_schema
from flows.lib.config import Settings
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.planner import ALL_ACCOUNTS, ContactScope

REASON = "settled_for_less"
FILE_NAME = "write_off_recommendations.csv"
WRITE_OFF_COLUMNS = (
    "recommendation_id", "account_id", "agreement_id", "agreed_date", "approved_by",
    "currency", "settled_amount", "paid_amount", "write_off_amount", "reason", "recommended_on",
)  # fmt: skip

CANDIDATES_TABLE = "_write_off_candidates"


def ensure_write_off_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """`ops.write_off_recommendations` (idempotent): ensure_agreement_schema creates it with
    the agreement tables, so that open_warehouse makes it for dbt."""
    ensure_agreement_schema(connection)


def recommendation_id(agreement_id: str) -> str:
    """The id of the write-off recommendation of one settlement; RECOMMENDATION_ID_SQL agrees."""
    return hashlib.sha256(agreement_id.encode("utf-8")).hexdigest()[:24]


RECOMMENDATION_ID_SQL = "left(sha256(candidates.agreement_id), 24)"


@dataclass(frozen=True)
class WriteOffOutcome:
    """What the write-off step found and did for one date (a dry run: would do)."""

    as_of: dt.date
    dry_run: bool = False
    kept: int = 0  # settlements kept on the date that no earlier date handled
    recommended: int = 0  # new recommendations (a dry run: would make)
    amounts: dict[str, Decimal] = field(default_factory=dict)  # of the new ones, per currency
    nothing_left: int = 0  # kept with nothing to write off: no recommendation
    in_file: int = 0  # recommendations of the date in its file (a rerun keeps the earlier ones)
    files: tuple[str, ...] = ()

    def __str__(self) -> str:
        amounts = ", ".join(f"{c} {a:,.2f}" for c, a in sorted(self.amounts.items()))
        made = "would recommend" if self.dry_run else "recommended"
        text = (
            f"{self.kept:,} settlements paid in full; {made} {self.recommended:,} write-offs"
            + (f" ({amounts})" if amounts else "")
            + f"; {self.nothing_left:,} with nothing left to write off"
        )
        if not self.dry_run:
            text += f"; {self.in_file:,} in the day's file"
        return text


def recommend_write_offs(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    scope: ContactScope = ALL_ACCOUNTS,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> WriteOffOutcome:
    """Recommend the write-off of what is left on each account whose recoup settlement is kept
    on `as_of`, once per settlement, and write the day's file (not in a dry run: then only
    count). Needs the marts built for `as_of`."""
    from flows.lib.contact_data import require_build_for

    ensure_write_off_schema(connection)
    require_build_for(
        connection,
        as_of,
        would=f"the write-off recommendations of {as_of} would judge another day's settlements",
        nothing="no recommendation was made and no file written",
    )
    where, parameters = scope.sql("accounts")
    connection.execute(
        f"""
        create or replace temp table {CANDIDATES_TABLE} as
        select
            agreements.agreement_id,
            agreements.account_id,
            agreements.agreed_date,
            agreements.approved_by,
            accounts.currency,
            plans.total_amount as settled_amount,
            plans.paid_amount,
            coalesce(aging.collectible_amount, 0) as remaining_amount,
            made.recommendation_id is not null as is_recommended
        from ops.agreements as agreements
        inner join marts.fct_payment_plans as plans
            on
                agreements.agreement_id = plans.plan_id
                and plans.plan_source = 'recoup'
                and plans.as_of_date = $as_of
        inner join marts.dim_accounts as accounts
            on agreements.account_id = accounts.account_id
        left join marts.fct_account_aging as aging
            on
                agreements.account_id = aging.account_id
                and aging.as_of_date = $as_of
        left join ops.write_off_recommendations as made
            on agreements.agreement_id = made.agreement_id
        where
            agreements.kind = 'settlement'
            and plans.plan_status = 'kept'
            -- handled by the first date that saw it kept; a rerun of that date again
            and (agreements.settled_on is null or agreements.settled_on = $as_of)
            and {where}
        """,
        {"as_of": as_of, **parameters},
    )
    try:
        new = connection.execute(
            f"""
            select currency, count(*), sum(remaining_amount)
            from {CANDIDATES_TABLE}
            where not is_recommended and remaining_amount > 0
            group by currency
            """
        ).fetchall()
        kept, nothing_left = connection.execute(
            f"select count(*), count(*) filter (where remaining_amount <= 0) "
            f"from {CANDIDATES_TABLE}"
        ).fetchall()[0]
        outcome = WriteOffOutcome(
            as_of=as_of,
            dry_run=dry_run,
            kept=int(kept),
            recommended=sum(int(count) for _, count, _ in new),
            amounts={currency: amount for currency, _, amount in new},
            nothing_left=int(nothing_left),
        )
        if dry_run:
            return outcome
        path = write_off_folder(settings.path("out"), as_of) / FILE_NAME
        connection.execute("begin transaction")
        try:
            connection.execute(
                f"""
                insert into ops.write_off_recommendations
                select
                    {RECOMMENDATION_ID_SQL},
                    candidates.account_id,
                    candidates.agreement_id,
                    candidates.agreed_date,
                    candidates.approved_by,
                    candidates.currency,
                    candidates.settled_amount,
                    candidates.paid_amount,
                    candidates.remaining_amount,
                    '{REASON}',
                    $as_of,
                    $run_id,
                    $path,
                    $now
                from {CANDIDATES_TABLE} as candidates
                where not candidates.is_recommended and candidates.remaining_amount > 0
                order by candidates.account_id, candidates.agreement_id
                """,
                {
                    "as_of": as_of,
                    "run_id": run_id,
                    "path": str(path),
                    "now": now or dt.datetime.now(dt.UTC),
                },
            )
            connection.execute(
                f"""
                update ops.agreements
                set settled_on = $as_of
                where
                    settled_on is null
                    and agreement_id in (select agreement_id from {CANDIDATES_TABLE})
                """,
                {"as_of": as_of},
            )
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        connection.execute(f"drop table if exists {CANDIDATES_TABLE}")
    rows = file_rows(connection, as_of)
    write_atomically(path, csv_bytes(WRITE_OFF_COLUMNS, rows))
    return replace(outcome, in_file=len(rows), files=(str(path),))


def file_rows(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[tuple]:
    """The lines of the write-off file of `as_of`: every recommendation made on that date."""
    return connection.execute(
        f"""
        select {", ".join(WRITE_OFF_COLUMNS)}
        from ops.write_off_recommendations
        where recommended_on = ?
        order by account_id, agreement_id
        """,
        [as_of],
    ).fetchall()


def write_off_folder(out: Path, as_of: dt.date) -> Path:
    """Where the write-off file of `as_of` goes."""
    return out / "adjustments" / as_of.isoformat()
