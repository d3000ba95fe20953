"""Skip tracing: find the customers recoup can no longer reach, and ask a vendor where they are.

A customer is a skip candidate on a run's date when one of their accounts is being worked by
the ladder (in a stage, not held, not placed with an agency, something collectible past due)
and, for the contact details in use (marts.dim_customers, flows/lib/contact_details.py):

- `email_hard_bounce`: the email address hard-bounced (ops.email_suppressions);
- `letter_returned`: a letter to the address came back (returned-mail import);
- `phone_invalid`: the phone number was reported invalid;
- `no_usable_channel`: no channel can reach them: no email that may be sent to, no complete
  address that did not come back, no callable number.

A candidate gets one request (`ops.skip_requests`, its id hashes customer and date) unless a
request for them is still open, or one was made less than `skip_tracing.resubmit_after_days`
ago (a result that found nothing usable does not trigger a new request every day). A request
left unanswered for `skip_tracing.result_wait_days` expires; the customer may then be requested
again. The day's requests go out as `out/skip_tracing/<date>/skip_requests.csv` (layout in
docs/skip-tracing.md), rewritten whole from the ledger, so a rerun of the day writes the same
lines. The file carries what a vendor needs to search (name, last known address, email, phone,
date of birth, decrypted for the file only, and the last four of the SSN: never the full SSN)
and is readable by its owner only.

Results come back through `recoup skip-trace import` (flows/lib/skip_results.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.lib.config import SkipTracingSettings
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.pii import Keyring, restricted_identities
from flows.lib.runs import ensure_runs_table

REASONS = ("email_hard_bounce", "letter_returned", "phone_invalid", "no_usable_channel")
REQUEST_STATUSES = ("open", "found", "not_found", "expired")
REQUEST_COLUMNS = (
    "request_id", "customer_id", "customer_type", "requested_on", "reasons", "full_name",
    "address_line1", "address_line2", "city", "state", "postal_code", "country", "phone",
    "email", "date_of_birth", "ssn_last4", "account_ids", "max_days_past_due",
)  # fmt: skip
REQUEST_FILE = "skip_requests.csv"

REQUESTS_DDL = """
create table if not exists ops.skip_requests (
    request_id VARCHAR PRIMARY KEY,
    customer_id VARCHAR NOT NULL,
    requested_on DATE NOT NULL,
    run_id VARCHAR,
    reasons VARCHAR[] NOT NULL,
    account_ids VARCHAR[] NOT NULL,
    max_days_past_due INTEGER,
    status VARCHAR NOT NULL,
    answered_on DATE,
    result_import_id VARCHAR,
    request_file VARCHAR,
    requested_at TIMESTAMPTZ NOT NULL,
    status_at TIMESTAMPTZ NOT NULL
)
"""

RESULT_FILES_DDL = """
create table if not exists ops.skip_result_files (
    import_id VARCHAR PRIMARY KEY,
    file_kind VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    lines_read INTEGER NOT NULL,
    lines_loaded INTEGER NOT NULL,
    lines_quarantined INTEGER NOT NULL,
    imported_on DATE NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
)
"""

RESULTS_DDL = """
create table if not exists ops.skip_results (
    import_id VARCHAR NOT NULL,
    line_number INTEGER NOT NULL,
    request_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    field_group VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    source VARCHAR,
    confidence INTEGER,
    override_id VARCHAR,
    decided_at TIMESTAMPTZ NOT NULL
)
"""

QUARANTINE_DDL = """
create table if not exists ops.skip_quarantine (
    import_id VARCHAR NOT NULL,
    file_kind VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    line_number INTEGER NOT NULL,
    reference VARCHAR,
    reason_codes VARCHAR[] NOT NULL,
    reasons VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
)
"""

COMMENTS = {
    "ops.skip_requests": "One row per skip-trace request (its id hashes customer and date): "
    "why, for which past-due accounts, and where it stands (open, found, not_found, expired).",
    "ops.skip_result_files": "Every skip-trace result file and returned-mail / invalid-phone "
    "file imported, once per content.",
    "ops.skip_results": "What each accepted result line did per field group (email, phone, "
    "address): accepted (override_id), low_confidence, same_as_current or not_found.",
    "ops.skip_quarantine": "Result and returned-contact lines that were not loaded, with "
    "their line number and reasons (no contact details).",
}


def ensure_skip_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The skip-trace ledger tables (idempotent)."""
    connection.execute("create schema if not exists ops")
    for ddl in (REQUESTS_DDL, RESULT_FILES_DDL, RESULTS_DDL, QUARANTINE_DDL):
        connection.execute(ddl)
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")


def request_id(customer_id: str, requested_on: dt.date) -> str:
    """The id of the request for `customer_id` made on `requested_on`; the SQL below agrees."""
    text = f"skip|{customer_id}|{requested_on.isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


REQUEST_ID_SQL = (
    "left(sha256('skip|' || candidates.customer_id || '|' || strftime($as_of, '%Y-%m-%d')), 24)"
)


@dataclass
class SkipTraceOutcome:
    """What the skip-trace step found and did for one date."""

    total_candidates: int = 0  # customers
    candidates: dict[str, int] = field(default_factory=dict)  # customers per reason
    waiting: int = 0  # candidates with an open or recent request: not requested again yet
    new_requests: int = 0  # made by this run (a dry run: would be)
    requested: int = 0  # requests of the date in its file (a rerun keeps the earlier ones)
    expired: int = 0  # requests that waited too long, expired by this run
    open_requests: int = 0  # after this run, all dates
    files: list[str] = field(default_factory=list)
    dry_run: bool = False
    held_back: str | None = None  # why this run makes no request (a past date, a scope)

    def __str__(self) -> str:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.candidates.items()))
        made = (
            f"would request {self.new_requests:,}"
            if self.dry_run
            else f"{self.new_requests:,} new requests ({self.requested:,} in the day's file)"
        )
        return (
            f"{self.total_candidates:,} customers to trace"
            + (f" ({reasons})" if reasons else "")
            + f"; {made}"
            + (f" ({self.held_back})" if self.held_back else "")
            + f"; {self.waiting:,} waiting on an earlier request"
            + f"; {self.open_requests:,} open, {self.expired:,} expired"
        )


def candidates_sql() -> str:
    """Today's skip candidates: one row per customer with reasons (a list), their past-due
    accounts and whether an open or recent request makes them wait."""
    return f"""
        with

        worked as (
            select
                history.customer_id,
                history.account_id,
                history.max_days_past_due,
                history.contact_restrictions
            from marts.fct_account_stage_history as history
            where
                history.as_of_date = $as_of
                and history.stage_order > 0
                and not history.is_held
                and history.collectible_amount > 0
                and history.max_days_past_due > 0
                and history.account_id not in (
                    select placements.account_id from ops.placements as placements
                    where placements.status = 'open'
                )
        ),

        per_customer as (
            select
                customer_id,
                list(account_id order by account_id) as account_ids,
                max(max_days_past_due) as max_days_past_due,
                bool_or(list_contains(string_split(contact_restrictions, ', '), 'do_not_email'))
                    as do_not_email,
                bool_or(list_contains(string_split(contact_restrictions, ', '), 'do_not_call'))
                    as do_not_call
            from worked
            group by customer_id
        ),

        judged as (
            select
                per_customer.*,
                customers.email is not null
                and bounced.email is not null as email_hard_bounce,
                coalesce(customers.is_address_returned, false) as letter_returned,
                customers.phone is not null
                and coalesce(customers.is_phone_invalid, false) as phone_invalid,
                customers.email is not null
                and suppressed.email is null
                and not per_customer.do_not_email as email_usable,
                customers.address_line1 is not null
                and customers.city is not null
                and customers.postal_code is not null
                and not coalesce(customers.is_address_returned, false) as letter_usable,
                customers.phone is not null
                and not coalesce(customers.is_phone_invalid, false)
                and not per_customer.do_not_call as phone_usable
            from per_customer
            inner join marts.dim_customers as customers
                on per_customer.customer_id = customers.customer_id
            left join ops.email_suppressions as suppressed
                on lower(trim(customers.email)) = suppressed.email
            left join ops.email_suppressions as bounced
                on
                    lower(trim(customers.email)) = bounced.email
                    and bounced.reason = 'hard_bounce'
        ),

        candidates as (
            select
                customer_id,
                account_ids,
                max_days_past_due,
                list_filter(
                    [
                        case when email_hard_bounce then 'email_hard_bounce' end,
                        case when letter_returned then 'letter_returned' end,
                        case when phone_invalid then 'phone_invalid' end,
                        case
                            when not (email_usable or letter_usable or phone_usable)
                                then 'no_usable_channel'
                        end
                    ],
                    lambda reason: reason is not null
                ) as reasons
            from judged
        )

        select
            candidates.*,
            exists (
                select 1 from ops.skip_requests as requests
                where
                    requests.customer_id = candidates.customer_id
                    and requests.request_id <> {REQUEST_ID_SQL}
                    and (
                        (requests.status = 'open' and requests.requested_on > $as_of - $wait_days)
                        or (
                            requests.status in ('found', 'not_found')
                            and requests.requested_on > $as_of - $resubmit_after_days
                        )
                    )
            ) as waiting
        from candidates
        where len(candidates.reasons) > 0
    """


def trace_skips(
    connection: duckdb.DuckDBPyConnection,
    settings: SkipTracingSettings,
    out: Path,
    as_of: dt.date,
    *,
    run_id: str,
    dry_run: bool = False,
    scoped: bool = False,
    now: dt.datetime | None = None,
    keyring: Keyring | None = None,
) -> SkipTraceOutcome:
    """Expire old requests, request today's new candidates and write the day's request file
    (not in a dry run: then only count). Needs the marts built for `as_of`.

    Only a run for the whole book on the newest date makes new requests: a rerun for a past
    date (a later date was run, or requested, already) and a run scoped to a segment or a list
    of accounts count the candidates and make none, so nobody is traced on an old day's facts
    or twice. The day's file is written when the run made requests or there is none yet; once
    sent it is not rewritten with newer details."""
    from flows.lib.contact_data import require_build_for

    require_build_for(
        connection,
        as_of,
        would=f"the skip-trace requests of {as_of} would judge another day's accounts",
        nothing="no request was made and no file written",
    )
    now = now or dt.datetime.now(dt.UTC)
    parameters = {
        "as_of": as_of,
        "resubmit_after_days": settings.resubmit_after_days,
        "wait_days": settings.result_wait_days,
    }
    connection.execute(
        f"create or replace temp table _skip_candidates as {candidates_sql()}", parameters
    )
    outcome = SkipTraceOutcome(dry_run=dry_run)
    counts: Counter[str] = Counter()
    for reasons, waiting in connection.execute(
        "select reasons, waiting from _skip_candidates"
    ).fetchall():
        counts.update(reasons)
        outcome.waiting += bool(waiting)
    outcome.candidates = dict(counts)
    outcome.total_candidates = int(
        connection.execute("select count(*) from _skip_candidates").fetchall()[0][0]
    )
    outcome.held_back = (
        "a run scoped to a segment or accounts makes no request"
        if scoped
        else "a rerun for a past date makes no request"
        if _later_date_run(connection, as_of)
        else None
    )
    new_rows = f"""
        select
            {REQUEST_ID_SQL} as request_id,
            candidates.customer_id,
            candidates.reasons,
            candidates.account_ids,
            candidates.max_days_past_due
        from _skip_candidates as candidates
        where
            not candidates.waiting
            and {REQUEST_ID_SQL} not in (select request_id from ops.skip_requests)
            and {"false" if outcome.held_back else "true"}
    """
    if dry_run:
        outcome.new_requests = int(
            connection.execute(f"select count(*) from ({new_rows})", {"as_of": as_of}).fetchall()[
                0
            ][0]
        )
        outcome.open_requests = _open_requests(connection)
        connection.execute("drop table if exists _skip_candidates")
        return outcome
    folder = out / "skip_tracing" / as_of.isoformat()
    path = folder / REQUEST_FILE
    connection.execute("begin transaction")
    try:
        outcome.expired = len(
            connection.execute(
                """
                update ops.skip_requests
                set status = 'expired', status_at = $now
                where status = 'open' and requested_on <= $as_of - $wait_days
                returning request_id
                """,
                {"as_of": as_of, "wait_days": settings.result_wait_days, "now": now},
            ).fetchall()
        )
        outcome.new_requests = len(
            connection.execute(
                f"""
                insert into ops.skip_requests
                select
                    request_id, customer_id, $as_of, $run_id, reasons, account_ids,
                    max_days_past_due, 'open', null, null, $path, $now, $now
                from ({new_rows})
                returning request_id
                """,
                {"as_of": as_of, "run_id": run_id, "path": str(path), "now": now},
            ).fetchall()
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        connection.execute("drop table if exists _skip_candidates")
    rows = request_file_rows(connection, as_of, keyring)
    outcome.requested = len(rows)
    if outcome.new_requests or not path.exists():
        write_atomically(path, csv_bytes(REQUEST_COLUMNS, rows))
    outcome.files.append(str(path))
    outcome.open_requests = _open_requests(connection)
    return outcome


def _later_date_run(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> bool:
    """Whether a later date was run (ops.runs, not a dry run) or requested already."""
    ensure_runs_table(connection)
    return bool(
        connection.execute(
            """
            select
                exists (select 1 from ops.skip_requests where requested_on > $as_of)
                or exists (select 1 from ops.runs where as_of_date > $as_of and not dry_run)
            """,
            {"as_of": as_of},
        ).fetchall()[0][0]
    )


def request_file_rows(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, keyring: Keyring | None = None
) -> list[tuple]:
    """The lines of the request file of `as_of`: every request made that day, in customer
    order, with the contact details in use now. The date of birth is decrypted from
    raw.customers here, for the file only (the marts keep the year)."""
    rows = connection.execute(
        """
        select
            requests.request_id,
            requests.customer_id,
            customers.customer_type,
            requests.requested_on,
            array_to_string(requests.reasons, ';'),
            customers.full_name,
            customers.address_line1,
            customers.address_line2,
            customers.city,
            customers.state,
            customers.postal_code,
            customers.country,
            customers.phone,
            customers.email,
            customers.ssn_last4,
            array_to_string(requests.account_ids, ';'),
            requests.max_days_past_due
        from ops.skip_requests as requests
        left join marts.dim_customers as customers
            on requests.customer_id = customers.customer_id
        where requests.requested_on = ?
        order by requests.customer_id
        """,
        [as_of],
    ).fetchall()
    born = restricted_identities(
        connection, keyring, [row[1] for row in rows], needed_for="the skip-trace request file"
    )
    at = REQUEST_COLUMNS.index("date_of_birth")
    return [
        (*row[:at], born[row[1]].date_of_birth if row[1] in born else None, *row[at:])
        for row in rows
    ]


def _open_requests(connection: duckdb.DuckDBPyConnection) -> int:
    return int(
        connection.execute(
            "select count(*) from ops.skip_requests where status = 'open'"
        ).fetchall()[0][0]
    )
