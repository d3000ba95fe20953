"""Record retention: a customer done with for longer than `retention.years` (default 7) loses
their personal data; the audit trail of what recoup did stays (`recoup purge`).

When a customer is done with. The export contract has no closing date, so recoup uses what it
has. An account is done when billing sends it `closed`, or when it is settled: nothing open
and no credit on the latest build of the marts (paid in full, or written off). Its end date is
the latest of its activity: opened, invoices (issue and due dates), payments, adjustments,
disputes (opened, resolved), payment plans (due, created, cancelled), account flags (start,
end), recoup's contacts (ops.action_ledger), agency placements and remittances, and, for a
closed account, the day recoup first loaded it as closed since it was last open (billing may
have closed it earlier; recoup cannot know, so it counts from what it saw). A customer is done
when every account is; the customer's end date also counts their own dates (created_at,
customer-wide flags, skip-trace requests and results). A customer is purged when the end date
is more than `retention.years` before the purge's as-of date, unless something keeps them:
an active legal_hold flag, an open agency placement or an unresolved dispute (reported as
held, never purged).

What the purge removes, for those customers, in one transaction:

- raw.customers, every version: name and address become '(purged)' (they are required
  fields), email, phone, address line 2, SSN, date of birth, ssn_last4 and birth_year NULL;
  customer_id, type, country, time zone, language and created_at stay;
- raw.quarantine: their customers rows;
- ops.contact_overrides and ops.contact_problems: the contact details and their fingerprints;
- ops.action_ledger: the recipient (ids, dates, statuses, amounts stay); ops.email_events: the
  email of their contacts' events; ops.action_log holds no personal data and stays whole;
- marts.dim_customers: the same fields (the next build recomputes it from raw);

and, after the commit, the files under out/ and outbox/ (and the spooled SendGrid events and
run logs under state/) dated before the cutoff: by the date in their path (out/letters/<date>/,
out/credit_bureau/<YYYY-MM>/), else by modification time. ops.email_suppressions stays: an
opt-out or a bounce is honoured by address, and holds no name or customer id.

Each purge that changes something is recorded in ops.purges (with the counts) and
ops.purged_customers (which customer, done since when); then the warehouse file is rewritten so
no freed block keeps a purged value (pii.rewrite_warehouse). A purge that finds nothing left
to remove changes nothing and records nothing, so running it twice is the same as once.
Rules, and what lives where: docs/data-protection.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.lib.config import Settings
from flows.lib.contract import CUSTOMERS
from flows.lib.gates import latest_build
from flows.lib.pii import rewrite_warehouse
from flows.lib.run_lock import run_lock

PURGED_TEXT = "(purged)"
# raw.customers columns that identify a person: required ones get PURGED_TEXT, others NULL
PERSONAL_COLUMNS = (
    "full_name", "email", "phone", "address_line1", "address_line2", "city", "state",
    "postal_code", "date_of_birth", "ssn",
)  # fmt: skip
CLEAR_PARTS = ("ssn_last4", "birth_year")
# the same in marts.dim_customers (those it has): all NULL
MART_PERSONAL_COLUMNS = (
    *PERSONAL_COLUMNS, *CLEAR_PARTS, "billing_email", "billing_phone", "billing_address_line1",
    "billing_address_line2", "billing_city", "billing_state", "billing_postal_code",
)  # fmt: skip
OVERRIDE_COLUMNS = (
    "email", "phone", "address_line1", "address_line2", "city", "state", "postal_code", "country",
)  # fmt: skip
# folders whose files are deleted once older than the period (relative to RECOUP_HOME's paths)
STATE_FOLDERS = (
    "logs",
    "email_events/imported",
    "email_events/rejected",
    "email_events/opt_outs_imported",
    "email_events/opt_outs_rejected",
)
HOLD_REASONS = ("legal_hold", "open_placement", "open_dispute")

PURGES_DDL = """
create table if not exists ops.purges (
    purge_id VARCHAR PRIMARY KEY,
    as_of_date DATE NOT NULL,
    cutoff_date DATE NOT NULL,
    retention_years INTEGER NOT NULL,
    customers_purged INTEGER NOT NULL,
    rows_changed JSON NOT NULL,
    files_deleted INTEGER NOT NULL,
    held JSON NOT NULL,
    purged_at TIMESTAMPTZ NOT NULL
);
create table if not exists ops.purged_customers (
    purge_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    done_on DATE,
    PRIMARY KEY (purge_id, customer_id)
);
comment on table ops.purges is 'Every purge that removed personal data (recoup purge): the
as-of and cutoff dates, the retention period, and how many customers, rows and files.';
comment on table ops.purged_customers is 'The customers each purge removed personal data of,
with the date they were done with since (their last activity).';
"""


def ensure_retention_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """ops.purges and ops.purged_customers (idempotent)."""
    connection.execute("create schema if not exists ops")
    connection.execute(PURGES_DDL)


def cutoff_date(as_of: dt.date, years: int) -> dt.date:
    """The same calendar day `years` before (28 February for a 29 February)."""
    try:
        return as_of.replace(year=as_of.year - years)
    except ValueError:
        return as_of.replace(year=as_of.year - years, day=28)


@dataclass
class PurgeOutcome:
    """What one purge did (or, in a dry run, would do)."""

    as_of: dt.date
    cutoff: dt.date
    years: int
    dry_run: bool
    customers: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    purge_id: str | None = None

    @property
    def changed(self) -> bool:
        return bool(sum(self.rows.values()) or self.files)

    def __str__(self) -> str:
        would = "would be " if self.dry_run else ""
        head = (
            f"Purge as of {self.as_of} (retention {self.years} years: customers done with "
            f"before {self.cutoff})"
        )
        held = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.held.items()))
        kept = f" Kept past the period: {held}." if held else ""
        if not self.changed:
            return f"{head}: nothing to purge; nothing changed.{kept}"
        rows = ", ".join(f"{table} {n:,}" for table, n in self.rows.items() if n)
        rewritten = "; the warehouse file was rewritten" if sum(self.rows.values()) else ""
        recorded = (
            " Nothing changed (dry run)."
            if self.dry_run
            else f" Recorded in ops.purges as {self.purge_id}{rewritten}."
        )
        return (
            f"{head}: personal data of {self.customers:,} customers {would}removed (rows: "
            f"{rows or 'none'}); {len(self.files):,} files {would}deleted.{kept}{recorded}"
        )


def purge(settings: Settings, *, as_of: dt.date, dry_run: bool = False) -> PurgeOutcome:
    """The whole purge, under the run lock: the warehouse in one transaction, then the old
    files, then the warehouse file rewritten. A dry run only counts."""
    from flows.lib.warehouse import connect_warehouse

    roots = purge_roots(settings)
    cutoff = cutoff_date(as_of, settings.retention.years)
    with run_lock(settings.path("state"), "purge", settings.ingest.lock_wait_seconds):
        files = old_files(roots, cutoff)
        connection = connect_warehouse(settings)
        try:
            outcome = purge_personal_data(
                connection,
                as_of=as_of,
                years=settings.retention.years,
                files=files,
                dry_run=dry_run,
            )
        finally:
            connection.close()
        if outcome.changed and not dry_run:
            delete_files(files, roots)
            if sum(outcome.rows.values()):
                rewrite_warehouse(settings.warehouse_path, settings.duckdb_config())
    return outcome


def purge_roots(settings: Settings) -> list[Path]:
    """The folders whose old files a purge deletes: out/, outbox/ and the spooled events and
    run logs under state/."""
    state = settings.path("state")
    return [settings.path("out"), settings.path("outbox"), *(state / f for f in STATE_FOLDERS)]


def purge_personal_data(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    years: int,
    files: Sequence[Path] = (),
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> PurgeOutcome:
    """Remove the personal data of the customers done with for longer than `years`, in one
    transaction, and record it with the `files` about to be deleted (a dry run rolls back).
    The caller deletes the files and rewrites the warehouse file afterwards (`purge`)."""
    now = now or dt.datetime.now(dt.UTC)
    outcome = PurgeOutcome(
        as_of=as_of, cutoff=cutoff_date(as_of, years), years=years, dry_run=dry_run,
        files=list(files),
    )  # fmt: skip
    ensure_retention_schema(connection)
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"create or replace temp table _retention as {_retention_sql(connection)}",
            {"as_of": as_of, "cutoff": outcome.cutoff, "built_for": latest_build(connection)},
        )
        outcome.held = dict(
            connection.execute(
                "select hold, count(*) from _retention where hold is not null group by 1"
            ).fetchall()
        )
        outcome.rows = _remove(connection)
        outcome.customers = connection.execute(
            "select count(*) from _retention where hold is null and has_personal_data"
        ).fetchall()[0][0]
        if outcome.changed and not dry_run:
            outcome.purge_id = _record(connection, outcome, now)
            connection.execute("commit")
        else:
            connection.execute("rollback")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        connection.execute("drop table if exists _retention")
    return outcome


def _retention_sql(connection: duckdb.DuckDBPyConnection) -> str:
    """One row per customer done with before the cutoff: when (done_on), what keeps them
    (hold) and whether any personal data of theirs is left."""
    built = connection.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'marts' and table_name = 'fct_account_aging'"
    ).fetchall()[0][0]
    owing = (
        "select distinct account_id from marts.fct_account_aging where as_of_date = $built_for"
        if built
        else "select NULL::VARCHAR as account_id where false"
    )
    settled = "$built_for::date is not null and owing.account_id is null"
    left = " or ".join(
        f"{name} is distinct from {_purged_value(name)}"
        for name in (*PERSONAL_COLUMNS, *CLEAR_PARTS)
    )
    return f"""
        with

        reopened as (
            select account_id, max(_batch_id) as batch_id
            from raw.accounts
            where status <> 'closed'
            group by 1
        ),

        -- the day recoup first loaded the account as closed since it was last open
        closed_since as (
            select versions.account_id, min(versions._loaded_at)::date as closed_on
            from raw.accounts as versions
            left join reopened on versions.account_id = reopened.account_id
            where versions.status = 'closed'
                and versions._batch_id > coalesce(reopened.batch_id, 0)
            group by 1
        ),

        owing as ({owing}),

        account_dates as (
            select account_id, opened_date as on_date from raw.accounts_latest
            union all
            select account_id, greatest(issue_date, due_date) from raw.invoices_latest
            union all
            select account_id, received_date from raw.payments_latest
            union all
            select account_id, effective_date from raw.adjustments_latest
            union all
            select account_id, greatest(opened_date, resolved_date) from raw.disputes_latest
            union all
            select account_id, greatest(due_date, created_date, cancelled_date)
            from raw.payment_plans_latest
            union all
            select account_id, greatest(start_date, end_date) from raw.account_flags_latest
            where account_id is not null
            union all
            select account_id, as_of_date from ops.action_ledger
            union all
            select account_id, greatest(placed_date, recalled_date) from ops.placements
            union all
            select account_id, paid_date from ops.remittances
        ),

        accounts as (
            select
                accounts.account_id,
                accounts.customer_id,
                accounts.status = 'closed' or ({settled}) as is_done,
                greatest(max(account_dates.on_date), any_value(closed_since.closed_on)) as done_on
            from raw.accounts_latest as accounts
            left join account_dates on accounts.account_id = account_dates.account_id
            left join closed_since on accounts.account_id = closed_since.account_id
            left join owing on accounts.account_id = owing.account_id
            group by accounts.account_id, accounts.customer_id, accounts.status,
                owing.account_id
        ),

        customer_dates as (
            select customer_id, created_at::date as on_date from raw.customers_latest
            union all
            select customer_id, greatest(start_date, end_date) from raw.account_flags_latest
            where account_id is null
            union all
            select customer_id, greatest(requested_on, answered_on) from ops.skip_requests
            union all
            select customer_id, accepted_on from ops.contact_overrides
            union all
            select customer_id, reported_on from ops.contact_problems
            union all
            select customer_id, done_on from accounts
        ),

        -- what keeps a customer's data, however old
        holds as (
            select customer_id, 'legal_hold' as hold, 1 as priority
            from raw.account_flags_latest
            where flag = 'legal_hold' and start_date <= $as_of
                and (end_date is null or end_date >= $as_of)
            union all
            select customer_id, 'open_placement', 2 from ops.placements where status = 'open'
            union all
            select accounts.customer_id, 'open_dispute', 3
            from raw.disputes_latest as disputes
            inner join accounts on disputes.account_id = accounts.account_id
            where disputes.resolved_date is null
        ),

        customers as (
            select
                customers.customer_id,
                max(customer_dates.on_date) as done_on,
                coalesce(bool_and(accounts.is_done), true) as is_done
            from raw.customers_latest as customers
            left join customer_dates on customers.customer_id = customer_dates.customer_id
            left join accounts on customers.customer_id = accounts.customer_id
            group by customers.customer_id
        ),

        final as (
            select
                customers.customer_id,
                customers.done_on,
                (
                    select holds.hold from holds
                    where holds.customer_id = customers.customer_id
                    order by holds.priority
                    limit 1
                ) as hold,
                exists (
                    select 1 from raw.customers as versions
                    where versions.customer_id = customers.customer_id and ({left})
                ) as has_personal_data
            from customers
            where customers.is_done and customers.done_on < $cutoff
        )

        select * from final
    """


def _purged_value(column: str) -> str:
    if column in CLEAR_PARTS or not CUSTOMERS.column(column).required:
        return "NULL"
    return f"'{PURGED_TEXT}'"


def _remove(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every personal field of the customers to purge, blanked or deleted; rows changed per
    table (a row already purged is not counted again)."""
    purged = "(select customer_id from _retention where hold is null)"
    counts: dict[str, int] = {}
    # the addresses their contacts' events carry, before the customers rows lose them
    connection.execute(
        f"""
        create or replace temp table _purged_emails as
        select distinct lower(trim(email)) as email from raw.customers
        where customer_id in {purged} and email is not null
        union
        select distinct lower(trim(email)) from ops.contact_overrides
        where customer_id in {purged} and email is not null
        """
    )
    columns = (*PERSONAL_COLUMNS, *CLEAR_PARTS)
    counts["raw.customers"] = _update(
        connection,
        "raw.customers",
        {name: _purged_value(name) for name in columns},
        f"customer_id in {purged}",
    )
    counts["raw.quarantine"] = _scalar(
        connection,
        f"delete from raw.quarantine where entity = 'customers' and record_key in {purged}",
    )
    counts["ops.contact_overrides"] = _update(
        connection,
        "ops.contact_overrides",
        {
            **dict.fromkeys(OVERRIDE_COLUMNS, "NULL"),
            "billing_fingerprint": "''",
            "replaced_fingerprint": "''",
        },
        f"customer_id in {purged}",
    )
    counts["ops.contact_problems"] = _update(
        connection, "ops.contact_problems", {"fingerprint": "''"}, f"customer_id in {purged}"
    )
    counts["ops.email_events"] = _update(
        connection,
        "ops.email_events",
        {"email": "NULL"},
        f"""(
            outbox_id in (select action_key from ops.action_ledger where customer_id in {purged})
            or lower(trim(email)) in (select email from _purged_emails)
        )""",
    )
    counts["ops.action_ledger"] = _update(
        connection, "ops.action_ledger", {"recipient": "NULL"}, f"customer_id in {purged}"
    )
    mart = _columns_of(connection, "marts", "dim_customers")
    if mart:
        counts["marts.dim_customers"] = _update(
            connection,
            "marts.dim_customers",
            {name: "NULL" for name in MART_PERSONAL_COLUMNS if name in mart},
            f"customer_id in {purged}",
        )
    connection.execute("drop table if exists _purged_emails")
    return counts


def _update(
    connection: duckdb.DuckDBPyConnection, table: str, values: dict[str, str], where: str
) -> int:
    """Set `values` on the rows matching `where` that do not hold them yet; the count."""
    if not values:
        return 0
    assignments = ", ".join(f"{name} = {value}" for name, value in values.items())
    differs = " or ".join(f"{name} is distinct from {value}" for name, value in values.items())
    return _scalar(connection, f"update {table} set {assignments} where {where} and ({differs})")


def _scalar(connection: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = connection.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


def _columns_of(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = connection.execute(
        "select column_name from duckdb_columns() where database_name = current_database() "
        "and schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return {name for (name,) in rows}


def _record(connection: duckdb.DuckDBPyConnection, outcome: PurgeOutcome, now: dt.datetime) -> str:
    purge_id = hashlib.sha256(f"{outcome.as_of}|{now.isoformat()}".encode()).hexdigest()[:16]
    connection.execute(
        "insert into ops.purges values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            purge_id,
            outcome.as_of,
            outcome.cutoff,
            outcome.years,
            outcome.customers,
            json.dumps(outcome.rows),
            len(outcome.files),
            json.dumps(outcome.held),
            now,
        ],
    )
    connection.execute(
        """
        insert into ops.purged_customers
        select ?, customer_id, done_on from _retention
        where hold is null and has_personal_data
        """,
        [purge_id],
    )
    return purge_id


# --- files --------------------------------------------------------------------------------

_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})(?!\d|-\d)")
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})T\d{6}")  # spooled events: 20261123T061500...Z


def file_date(path: Path, root: Path) -> dt.date:
    """The date a file is about: the last date in its path below `root` (a day, or a month's
    last day, or a spool file's UTC stamp), else the day it was last modified."""
    found: dt.date | None = None
    for part in path.relative_to(root).parts:
        for pattern in (_DAY, _STAMP):
            match = pattern.search(part)
            if match:
                found = _date(*match.groups()) or found
                break
        else:
            match = _MONTH.search(part)
            if match:
                year, month = int(match.group(1)), int(match.group(2))
                if 1 <= month <= 12:
                    following = dt.date(year + month // 12, month % 12 + 1, 1)
                    found = following - dt.timedelta(days=1)
    if found is not None:
        return found
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date()


def _date(year: str, month: str, day: str) -> dt.date | None:
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def old_files(roots: Sequence[Path], cutoff: dt.date) -> list[Path]:
    """The files under `roots` dated before `cutoff`, sorted."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and file_date(path, root) < cutoff:
                found.append(path)
    return sorted(found)


def delete_files(paths: Sequence[Path], roots: Sequence[Path]) -> None:
    """Delete the files, then the folders under `roots` they leave empty."""
    for path in paths:
        path.unlink(missing_ok=True)
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
