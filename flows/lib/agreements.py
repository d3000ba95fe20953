"""Agreements recorded in recoup: installment plans and settlements agreed with a customer by
phone (docs/negotiation.md, "Agreements").

A collector records an agreement with `recoup agreements add` (one agreement) or a file of them
with `recoup agreements import` (CSV, one line per installment, layout below). Both go through
the same set-based checks:

- **the data**: every line follows the layout (dates, amounts > 0 with at most 2 decimals,
  installment numbers 1..n without a gap or a repeat, due dates on or after the agreed date and
  increasing, the same account, kind, date and approver on every line of one agreement); the
  account is a billing account that is not closed and has something collectible; the id is not
  one of billing's plan ids; an agreement recorded before with the same id and the same content
  is a no-op, with other content a conflict;
- **the policy** of the account's segment (`negotiation.offers.<segment>`, `default` for the
  segments not listed): plan length, minimum installment (the last one may be smaller, as the
  remainder), balance and days-past-due ranges, no plan broken in the last months, a
  monthly-ish schedule (first installment within 45 days of the agreed date, no gap over 45
  days); a settlement of at least the tier's percent of the balance that forgives no more than
  `approval_above`. Each breach has a code (BREACH_CODES). An agreement outside the policy is
  recorded only with an approver (`approved_by`), with its breaches.

The balance an agreement is judged on is the account's collectible balance in
marts.fct_account_aging on the agreed date when the marts hold that date, else on the latest
date they hold (`balance_date` says which).

In a file, a bad line sets its whole agreement aside in `ops.agreement_quarantine` (never part
of a schedule): every line of it, with reason codes and a message, never the line's values
beyond ids, dates and amounts. The good agreements load. A file is one transaction; a file that
cannot be read as a whole (not CSV, not UTF-8, empty, a wrong header) raises AgreementFileError
and writes nothing; a file whose content was imported before changes nothing.

Recorded agreements are `ops.agreements` and `ops.agreement_installments`; dbt reads them
(stg_ops__agreements, stg_ops__agreement_installments) into the same plan machinery as
billing's plans (int_payment_plan_installments, plan_source `recoup`): they hold the account
while active, break after plan_grace_days like billing's, and a kept settlement is the start of
a write-off recommendation (flows/lib/settlements.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

import duckdb

from flows.lib.config import Settings
from flows.lib.contract import Column, Entity
from flows.lib.export_files import BatchError, ExportFile, _csv_header
from flows.lib.row_checks import Problem, column_problems

KINDS = ("installment_plan", "settlement")
LAYOUT_VERSION = "1"
# the most days from the agreed date to the first installment, and between two installments:
# a monthly schedule with room for a payday
MAX_FIRST_DUE_DAYS = 45
MAX_GAP_DAYS = 45
ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
NOTHING_LOADED = "Nothing from this file was loaded."

LAYOUT = Entity(
    name="agreements",
    columns=(
        Column("agreement_id"),
        Column("account_id"),
        Column("kind", "enum", values=KINDS),
        Column("agreed_date", "date"),
        Column("installment_no", "positive_integer"),
        Column("due_date", "date"),
        Column("amount", "amount"),
        Column("approved_by", required=False),
        # for the sender's own use: recoup reads nothing from it and stores nothing of it
        # (a collector's note may tell a customer's circumstances)
        Column("notes", required=False, sensitive=True),
    ),
    key=("agreement_id", "installment_no"),
)
CHECKED_COLUMNS = LAYOUT.column_names[:-1]  # every column but notes
HEADER_REQUIRED = LAYOUT.required_names

# outside the policy: recorded only with an approver
BREACH_CODES = (
    "segment_has_no_plans",
    "plan_length_not_allowed",
    "installment_below_minimum",
    "balance_outside_plan_range",
    "days_past_due_outside_plan_range",
    "recent_broken_plan",
    "segment_has_no_settlements",
    "balance_below_settlement_minimum",
    "settlement_too_early",
    "settlement_below_policy",
    "forgiven_above_approval_threshold",
    "first_installment_too_late",
    "installment_gap_too_long",
    "total_above_balance",
)
# what sets an agreement aside whoever approves it
REASON_CODES = (
    "missing_value",
    "bad_agreement_id",
    "unknown_kind",
    "bad_date",
    "bad_integer",
    "bad_amount",
    "negative_amount",
    "zero_amount",
    "too_long",
    "control_character",
    "duplicate_installment",
    "due_before_agreed",
    "due_dates_not_increasing",
    "installment_gap",
    "inconsistent_agreement",
    "unknown_account",
    "account_closed",
    "nothing_collectible",
    "agreement_id_taken",
    "agreement_conflict",
    "approval_required",
    "agreement_rejected",
    "unreadable_row",
)

AGREEMENTS_DDL = """
create table if not exists ops.agreements (
    agreement_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    agreed_date DATE NOT NULL,
    currency VARCHAR NOT NULL,
    balance_date DATE,
    balance_at_agreement DECIMAL(18,2) NOT NULL,
    days_past_due INTEGER,
    total_amount DECIMAL(18,2) NOT NULL,
    forgiven_amount DECIMAL(18,2) NOT NULL,
    installments INTEGER NOT NULL,
    approved_by VARCHAR,
    recorded_by VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    policy_breaches VARCHAR[] NOT NULL,
    offer_id VARCHAR,
    content_hash VARCHAR NOT NULL,
    import_id VARCHAR,
    cancelled_date DATE,
    cancelled_by VARCHAR,
    cancelled_at TIMESTAMPTZ,
    settled_on DATE,
    recorded_at TIMESTAMPTZ NOT NULL
)
"""
INSTALLMENTS_DDL = """
create table if not exists ops.agreement_installments (
    agreement_id VARCHAR NOT NULL,
    installment_no INTEGER NOT NULL,
    due_date DATE NOT NULL,
    amount DECIMAL(18,2) NOT NULL,
    PRIMARY KEY (agreement_id, installment_no)
)
"""
QUARANTINE_DDL = """
create table if not exists ops.agreement_quarantine (
    import_id VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    line_number INTEGER NOT NULL,
    agreement_id VARCHAR,
    reason_codes VARCHAR[] NOT NULL,
    message VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
)
"""
FILES_DDL = """
create table if not exists ops.agreement_files (
    import_id VARCHAR PRIMARY KEY,
    file_name VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    recorded_by VARCHAR NOT NULL,
    lines_read INTEGER NOT NULL,
    agreements_read INTEGER NOT NULL,
    agreements_recorded INTEGER NOT NULL,
    agreements_unchanged INTEGER NOT NULL,
    agreements_quarantined INTEGER NOT NULL,
    lines_quarantined INTEGER NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
)
"""
# written by flows/lib/settlements.py; created here so that open_warehouse makes it for dbt
WRITE_OFFS_DDL = """
create table if not exists ops.write_off_recommendations (
    recommendation_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    agreement_id VARCHAR NOT NULL UNIQUE,
    agreed_date DATE NOT NULL,
    approved_by VARCHAR,
    currency VARCHAR NOT NULL,
    settled_amount DECIMAL(18,2) NOT NULL,
    paid_amount DECIMAL(18,2) NOT NULL,
    write_off_amount DECIMAL(18,2) NOT NULL CHECK (write_off_amount > 0),
    reason VARCHAR NOT NULL,
    recommended_on DATE NOT NULL,
    run_id VARCHAR NOT NULL,
    file_path VARCHAR NOT NULL,
    recommended_at TIMESTAMPTZ NOT NULL
)
"""
COMMENTS = {
    "ops.agreements": "One row per installment plan or settlement agreed with a customer and "
    "recorded in recoup (recoup agreements add / import): the balance it was judged on, its "
    "total, what a settlement forgives, the policy breaches an approver accepted, who "
    "recorded it, and its cancellation. dbt ages it like billing''s plans (plan_source recoup).",
    "ops.agreement_installments": "The schedule of each recorded agreement: one row per "
    "installment.",
    "ops.agreement_quarantine": "Agreement-file lines set aside with their agreement: file, line, "
    "reason codes and a message (no personal values).",
    "ops.agreement_files": "Every agreement file imported, once per content.",
    "ops.write_off_recommendations": "One row per recoup settlement paid in full with something "
    "left to write off: the adjustment recommended to billing (recommendation_id hashes the "
    "agreement id), once per agreement ever, in "
    "out/adjustments/<recommended_on>/write_off_recommendations.csv.",
}

IN_TABLE = "_agr_in"
UNREADABLE_TABLE = "_agr_unreadable"
LINES_TABLE = "_agr_lines"
JUDGED_TABLE = "_agr_judged"
CHECKED_TABLE = "_agr_checked"
POLICY_TABLE = "_agr_policy"
TIERS_TABLE = "_agr_tiers"
WORK_TABLES = (IN_TABLE, UNREADABLE_TABLE, LINES_TABLE, JUDGED_TABLE, CHECKED_TABLE)


class AgreementError(ValueError):
    """An agreement cannot be recorded, or cancelled, as asked; nothing was changed."""


class AgreementRefused(AgreementError):
    """An agreement was not recorded: its problems (codes and messages) say why."""

    def __init__(self, message: str, codes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.codes = tuple(codes)


class AgreementFileError(AgreementError):
    """An agreement file cannot be imported at all; nothing from it was written."""


def ensure_agreement_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The agreement tables and the write-off recommendations of paid settlements
    (idempotent)."""
    connection.execute("create schema if not exists ops")
    for ddl in (AGREEMENTS_DDL, INSTALLMENTS_DDL, QUARANTINE_DDL, FILES_DDL, WRITE_OFFS_DDL):
        connection.execute(ddl)
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")


# --- what is recorded ---------------------------------------------------------------------


@dataclass(frozen=True)
class Installment:
    due_date: dt.date
    amount: Decimal


@dataclass(frozen=True)
class Agreement:
    """One agreement as a collector states it (the `add` command)."""

    account_id: str
    kind: str
    agreed_date: dt.date
    installments: tuple[Installment, ...]
    approved_by: str | None = None
    agreement_id: str | None = None  # default: derived from what was agreed (agreement_id_for)

    @property
    def id(self) -> str:
        return self.agreement_id or agreement_id_for(
            self.account_id, self.kind, self.agreed_date, self.installments
        )


def agreement_id_for(
    account_id: str, kind: str, agreed_date: dt.date, installments: Sequence[Installment]
) -> str:
    """The id of an agreement recorded without one: the same agreement gets the same id, so
    recording it twice is a no-op."""
    schedule = ";".join(f"{item.due_date.isoformat()}={item.amount:.2f}" for item in installments)
    text = f"agreement|{account_id}|{kind}|{agreed_date.isoformat()}|{schedule}"
    return "AG-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class AgreementOutcome:
    """What recording one agreement did: `recorded`, or `unchanged` when the same agreement was
    recorded before."""

    agreement_id: str
    account_id: str
    kind: str
    status: Literal["recorded", "unchanged"]
    currency: str
    balance_at_agreement: Decimal
    balance_date: dt.date | None
    total_amount: Decimal
    forgiven_amount: Decimal
    installments: int
    policy_breaches: tuple[str, ...] = ()
    approved_by: str | None = None
    offer_id: str | None = None

    def __str__(self) -> str:
        what = "installment plan" if self.kind == "installment_plan" else "settlement"
        if self.status == "unchanged":
            return f"Agreement {self.agreement_id} was recorded before; nothing changed."
        text = (
            f"Recorded {what} {self.agreement_id} for account {self.account_id}: "
            f"{self.installments} installment{'s' if self.installments != 1 else ''}, "
            f"{self.currency} {self.total_amount:,.2f} on a balance of "
            f"{self.balance_at_agreement:,.2f} ({self.balance_date or 'no date'})"
        )
        if self.kind == "settlement":
            text += f", forgiving {self.forgiven_amount:,.2f}"
        if self.policy_breaches:
            text += (
                f"; outside the policy ({', '.join(self.policy_breaches)}), approved by "
                f"{self.approved_by}"
            )
        if self.offer_id:
            text += f"; offer {self.offer_id}"
        return text + "."


@dataclass(frozen=True)
class ImportOutcome:
    """What one agreement file did. `status` is `loaded`, or `unchanged` when the same content
    was imported before (then every count is 0 and `imported_at` is that import)."""

    file_name: str
    content_hash: str
    import_id: str
    status: Literal["loaded", "unchanged"]
    imported_at: dt.datetime
    lines_read: int = 0
    lines_quarantined: int = 0
    agreements_read: int = 0
    agreements_recorded: int = 0
    agreements_unchanged: int = 0  # recorded before with the same content: a no-op
    agreements_quarantined: int = 0
    approved_outside_policy: int = 0  # of those recorded, the ones with breaches and an approver
    # lines per reason code; a line with two problems counts under both
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.status == "loaded"

    def __str__(self) -> str:
        """One line for the command line: counts and codes only."""
        if not self.changed:
            return (
                f"{self.file_name}: these agreements were imported on "
                f"{self.imported_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; nothing changed."
            )
        text = (
            f"{self.file_name}: {self.lines_read:,} lines read, {self.agreements_read:,} "
            f"agreements: {self.agreements_recorded:,} recorded"
            f" ({self.approved_outside_policy:,} outside the policy, approved), "
            f"{self.agreements_unchanged:,} recorded before, {self.agreements_quarantined:,} "
            f"quarantined ({self.lines_quarantined:,} lines)"
        )
        if self.quarantined_by_reason:
            reasons = ", ".join(
                f"{code} {count:,}" for code, count in sorted(self.quarantined_by_reason.items())
            )
            text += f"; reasons: {reasons}; see ops.agreement_quarantine"
        return text + "."


@dataclass(frozen=True)
class CancelOutcome:
    agreement_id: str
    cancelled_date: dt.date
    status: Literal["cancelled", "unchanged"]

    def __str__(self) -> str:
        if self.status == "unchanged":
            return f"Agreement {self.agreement_id} was cancelled on {self.cancelled_date} before."
        return (
            f"Cancelled agreement {self.agreement_id} from {self.cancelled_date}: it holds the "
            "account no more from that date."
        )


# --- recording ----------------------------------------------------------------------------


def record_agreement(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    agreement: Agreement,
    *,
    recorded_by: str,
    now: dt.datetime | None = None,
) -> AgreementOutcome:
    """Check one agreement and record it. Raises AgreementRefused, recording nothing, when it
    has a problem or breaks the policy without an approver."""
    ensure_agreement_schema(connection)
    _require_marts(connection, "the agreement was not recorded")
    now = now or dt.datetime.now(dt.UTC)
    identifier = agreement.id
    rows = [
        [
            number, identifier, agreement.account_id, agreement.kind,
            agreement.agreed_date.isoformat(), str(number), item.due_date.isoformat(),
            f"{item.amount:f}", agreement.approved_by or None,
        ]
        for number, item in enumerate(agreement.installments, start=1)
    ]  # fmt: skip
    if not rows:
        raise AgreementRefused("an agreement needs at least one installment.", ["missing_value"])
    connection.execute("begin transaction")
    try:
        _create_in_table(connection)
        connection.executemany(f"insert into {IN_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        _judge(connection, settings)
        status, codes, messages = connection.execute(
            f"select status, codes, messages from {JUDGED_TABLE}"
        ).fetchall()[0]
        line_problems = connection.execute(
            f"select codes, messages from {CHECKED_TABLE} where len(codes) > 0 order by _line"
        ).fetchall()
        if status == "rejected":
            every_code = sorted(
                {*codes, *(code for line, _ in line_problems for code in line)}
                - {"agreement_rejected"}
            )
            every_message = list(
                dict.fromkeys([*messages, *(text for _, texts in line_problems for text in texts)])
            )
            raise AgreementRefused(
                f"agreement {identifier} for account {agreement.account_id} was not recorded: "
                + "; ".join(every_message)
                + ".",
                every_code,
            )
        if status == "new":
            _store(connection, recorded_by, "cli", None, now)
        outcome = _outcome(connection, identifier, status)
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    finally:
        _drop_work_tables(connection)
    return outcome


def import_agreements(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    path: Path,
    *,
    recorded_by: str,
    now: dt.datetime | None = None,
) -> ImportOutcome:
    """Import the agreement file at `path`: record its good agreements, quarantine the others
    whole. Raises AgreementFileError when the file cannot be imported at all; then nothing is
    written."""
    from flows.lib.file_reader import read_export_file  # it imports the warehouse module

    ensure_agreement_schema(connection)
    export = _check_file(path)
    imported_at = now or dt.datetime.now(dt.UTC)
    identifier = import_id(export.content_hash)
    earlier = _one(
        connection,
        "select min(imported_at) from ops.agreement_files where content_hash = ?",
        [export.content_hash],
    )
    if earlier is not None:
        return ImportOutcome(path.name, export.content_hash, identifier, "unchanged", earlier)
    _require_marts(connection, NOTHING_LOADED.lower().rstrip("."))
    try:
        read = read_export_file(connection, export)  # outside the transaction (rowids)
    except BatchError as problem:
        raise AgreementFileError(_file_message(problem)) from None
    read_table = f"_read_{LAYOUT.name}"
    try:
        connection.execute("begin transaction")
        try:
            _create_in_table(connection)
            present = set(export.columns)
            values = ", ".join(
                f"nullif(trim({name}), '')" if name in present else "NULL"
                for name in CHECKED_COLUMNS
            )
            connection.execute(f"insert into {IN_TABLE} select _line, {values} from {read_table}")
            if read.unreadable:
                connection.executemany(
                    f"insert into {UNREADABLE_TABLE} values (?, ?, ?)",
                    [
                        [bad.line, _agreement_id_of(bad.raw_line, export.columns), bad.message]
                        for bad in read.unreadable
                    ],
                )
            _judge(connection, settings)
            recorded = _store(connection, recorded_by, path.name, identifier, imported_at)
            quarantined = _quarantine(connection, identifier, path.name, imported_at)
            counts = _import_counts(connection)
            lines_read = read.rows + len(read.unreadable)
            connection.execute(
                "insert into ops.agreement_files values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    identifier, path.name, export.content_hash, recorded_by, lines_read,
                    counts["read"], recorded, counts["unchanged"], counts["rejected"],
                    quarantined, imported_at,
                ],
            )  # fmt: skip
            by_reason = _reason_counts(connection)
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        _drop_work_tables(connection)
        connection.execute(f"drop table if exists {read_table}")
    return ImportOutcome(
        file_name=path.name,
        content_hash=export.content_hash,
        import_id=identifier,
        status="loaded",
        imported_at=imported_at,
        lines_read=lines_read,
        lines_quarantined=quarantined,
        agreements_read=counts["read"],
        agreements_recorded=recorded,
        agreements_unchanged=counts["unchanged"],
        agreements_quarantined=counts["rejected"],
        approved_outside_policy=counts["approved"],
        quarantined_by_reason=by_reason,
    )


def cancel_agreement(
    connection: duckdb.DuckDBPyConnection,
    agreement_id: str,
    cancelled_date: dt.date,
    by: str,
    *,
    now: dt.datetime | None = None,
) -> CancelOutcome:
    """Cancel a recorded agreement from `cancelled_date`: from that date it holds nothing (a
    rerun of an earlier date still sees it active). Cancelling again on the same date is a
    no-op."""
    ensure_agreement_schema(connection)
    rows = connection.execute(
        "select agreed_date, cancelled_date, cancelled_by from ops.agreements "
        "where agreement_id = ?",
        [agreement_id],
    ).fetchall()
    if not rows:
        raise AgreementError(
            f"there is no agreement {agreement_id!r}; `recoup agreements list` shows them. "
            "Nothing was changed."
        )
    agreed, cancelled, cancelled_by = rows[0]
    if cancelled == cancelled_date:
        return CancelOutcome(agreement_id, cancelled_date, "unchanged")
    if cancelled is not None:
        raise AgreementError(
            f"agreement {agreement_id} was cancelled from {cancelled} by {cancelled_by} already. "
            "Nothing was changed."
        )
    if cancelled_date < agreed:
        raise AgreementError(
            f"agreement {agreement_id} was agreed on {agreed}; it cannot be cancelled from "
            f"{cancelled_date}, before it existed. Nothing was changed."
        )
    recommended = _write_off_of(connection, agreement_id)
    if recommended is not None:
        raise AgreementError(
            f"agreement {agreement_id} is a settlement paid in full, and its write-off was "
            f"recommended to billing on {recommended}: undo that adjustment in billing instead. "
            "Nothing was changed."
        )
    connection.execute(
        "update ops.agreements set cancelled_date = ?, cancelled_by = ?, cancelled_at = ? "
        "where agreement_id = ?",
        [cancelled_date, by, now or dt.datetime.now(dt.UTC), agreement_id],
    )
    return CancelOutcome(agreement_id, cancelled_date, "cancelled")


def list_agreements(
    connection: duckdb.DuckDBPyConnection, account_id: str | None = None
) -> list[dict[str, object]]:
    """The recorded agreements (one account's, or all), newest first, with their status in
    the marts of the last build (`recorded` when the marts have not seen them yet)."""
    if not _table_exists(connection, "ops", "agreements"):
        return []
    plans = _table_exists(connection, "marts", "fct_payment_plans")
    status = (
        "coalesce(case when agreements.cancelled_date is not null then 'cancelled' end, "
        "plans.plan_status, 'recorded')"
        if plans
        else "case when agreements.cancelled_date is not null then 'cancelled' else 'recorded' end"
    )
    joined = (
        "left join marts.fct_payment_plans as plans on agreements.agreement_id = plans.plan_id"
        if plans
        else ""
    )
    cursor = connection.execute(
        f"""
        select
            agreements.agreement_id,
            agreements.account_id,
            agreements.kind,
            agreements.agreed_date,
            agreements.installments,
            agreements.currency,
            agreements.total_amount,
            agreements.forgiven_amount,
            agreements.approved_by,
            {status} as status
        from ops.agreements as agreements
        {joined}
        where $account is null or agreements.account_id = $account
        order by agreements.agreed_date desc, agreements.agreement_id
        """,
        {"account": account_id},
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def import_id(content_hash: str) -> str:
    """The id of the import of one file content."""
    return hashlib.sha256(f"agreements|{content_hash}".encode()).hexdigest()[:24]


# --- the file as a whole -------------------------------------------------------------------


def _check_file(path: Path) -> ExportFile:
    """Format, encoding and header checks, before anything is read into the warehouse."""
    if not path.is_file():
        raise AgreementFileError(f"{path}: no such file. Pass the agreement file (CSV) itself.")
    if path.suffix.lower() != ".csv":
        raise AgreementFileError(
            f"{path.name}: an agreement file is CSV (layout v{LAYOUT_VERSION}, named *.csv). "
            f"{NOTHING_LOADED}"
        )
    try:
        columns = _csv_header(path, path.stat().st_size)
    except BatchError as problem:
        raise AgreementFileError(_file_message(problem)) from None
    with path.open("rb") as handle:  # a line break never splits a UTF-8 character
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise AgreementFileError(
                    f"{path.name}: line {number} holds bytes that are not UTF-8 text; save the "
                    f"file as UTF-8 CSV and import it again. {NOTHING_LOADED}"
                ) from None
    expected = LAYOUT.column_names
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    missing = [name for name in HEADER_REQUIRED if name not in columns]
    unknown = [name for name in columns if name not in expected]
    if repeated or missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
        if repeated:
            parts.append(f"repeated column(s) {', '.join(repeated)}")
        raise AgreementFileError(
            f"{path.name}: wrong header for an agreement file (layout v{LAYOUT_VERSION}): "
            f"{'; '.join(parts)}. The header names these columns: {', '.join(expected)} "
            f"(approved_by and notes may be left out). {NOTHING_LOADED}"
        )
    with path.open("rb") as handle:
        content_hash = hashlib.file_digest(handle, "sha256").hexdigest()
    return ExportFile(
        entity=LAYOUT,
        path=path,
        file_format="csv",
        columns=columns,
        content_hash=content_hash,
        size_bytes=path.stat().st_size,
    )


def _file_message(problem: BatchError) -> str:
    message = str(problem).replace("this batch", "this file").replace("the batch", "the file")
    return message if NOTHING_LOADED in message else f"{message} {NOTHING_LOADED}"


def _agreement_id_of(raw_line: str, columns: Sequence[str]) -> str | None:
    """The agreement an unreadable line belongs to, when its id can still be read: that
    agreement is set aside too (never loaded without one of its installments)."""
    fields = next(csv.reader([raw_line.strip("\r\n")]), [])
    at = list(columns).index("agreement_id")
    value = fields[at].strip() if at < len(fields) else ""
    return value if value and _looks_like_id(value) else None


def _looks_like_id(value: str) -> bool:
    import re

    return re.fullmatch(ID_PATTERN, value) is not None


# --- the checks (set-based) -----------------------------------------------------------------


def _create_in_table(connection: duckdb.DuckDBPyConnection) -> None:
    text_columns = ", ".join(f"{name} VARCHAR" for name in CHECKED_COLUMNS)
    connection.execute(f"create or replace temp table {IN_TABLE} (_line BIGINT, {text_columns})")
    connection.execute(
        f"create or replace temp table {UNREADABLE_TABLE} "
        "(_line BIGINT, agreement_id VARCHAR, message VARCHAR)"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _shown(expression: str, chars: int = 64) -> str:
    """An id, date or amount quoted in a message."""
    return f"'''' || left(cast({expression} as VARCHAR), {chars}) || ''''"


def _first_match(problems: list[Problem], attribute: str) -> str:
    branches = " ".join(
        f"when {problem.condition} then {getattr(problem, attribute)}" for problem in problems
    )
    return f"case {branches} end"


def _row_rules() -> tuple[str, str]:
    """SQL lists of each line's own problems (one per column at most), codes and messages."""
    extra = {
        "agreement_id": [
            Problem(
                f"agreement_id is not null and not regexp_full_match(agreement_id, '{ID_PATTERN}')",
                "bad_agreement_id",
                _literal(
                    "agreement_id is not an id: 1 to 64 letters, digits and . _ : - "
                    "(starting with a letter or digit)"
                ),
            )
        ]
    }
    codes, messages = [], []
    for name in CHECKED_COLUMNS:
        column = LAYOUT.column(name)
        problems = [
            Problem(p.condition, "unknown_kind" if p.code == "unknown_value" else p.code, p.message)
            for p in column_problems(column)
        ] + extra.get(name, [])
        codes.append(_first_match(problems, "code_sql"))
        messages.append(_first_match(problems, "message"))
    return f"[{', '.join(codes)}]", f"[{', '.join(messages)}]"


def _create_policy_tables(connection: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Each segment's offer policy as a row (and its settlement tiers), for the checks."""
    connection.execute(
        f"""
        create or replace temp table {POLICY_TABLE} (
            segment VARCHAR, plan_allowed BOOLEAN, plan_min_balance DECIMAL(18,2),
            plan_max_balance DECIMAL(18,2), plan_min_dpd INTEGER, plan_max_dpd INTEGER,
            plan_broken_months INTEGER, plan_lengths INTEGER[],
            plan_min_installment DECIMAL(18,2), settlement_allowed BOOLEAN,
            settlement_min_balance DECIMAL(18,2), approval_above DECIMAL(18,2)
        )
        """
    )
    connection.execute(
        f"create or replace temp table {TIERS_TABLE} "
        "(segment VARCHAR, min_days_past_due INTEGER, percent DECIMAL(7,4))"
    )
    policies, tiers = [], []
    for segment, policy in settings.negotiation.offers.items():
        plan, settlement = policy.plan, policy.settlement
        policies.append(
            [
                segment,
                plan is not None,
                plan.min_balance if plan else None,
                plan.max_balance if plan else None,
                plan.min_days_past_due if plan else None,
                plan.max_days_past_due if plan else None,
                plan.no_broken_plan_months if plan else None,
                list(plan.lengths) if plan else None,
                plan.min_installment if plan else None,
                settlement is not None,
                settlement.min_balance if settlement else None,
                settlement.approval_above if settlement else None,
            ]
        )
        for tier in settlement.tiers if settlement else []:
            tiers.append([segment, tier.min_days_past_due, tier.percent])
    connection.executemany(
        f"insert into {POLICY_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", policies
    )
    if tiers:
        connection.executemany(f"insert into {TIERS_TABLE} values (?, ?, ?)", tiers)


def _judge(connection: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """From `_agr_in` (text lines) and `_agr_unreadable`: `_agr_lines` (typed lines with their
    own problems), `_agr_judged` (one row per agreement: status new, unchanged or rejected,
    its balance, breaches, codes and messages) and `_agr_checked` (each line's codes)."""
    _create_policy_tables(connection, settings)
    codes, messages = _row_rules()
    connection.execute(
        f"""
        create or replace temp table {LINES_TABLE} as
        with

        typed as (
            select
                {IN_TABLE}.*,
                cast(try_strptime(agreed_date, '%Y-%m-%d') as DATE) as agreed_value,
                cast(try_strptime(due_date, '%Y-%m-%d') as DATE) as due_value,
                try_cast(installment_no as INTEGER) as number_value,
                case
                    when regexp_full_match(amount, '[0-9]{{1,16}}(\\.[0-9]{{1,2}})?')
                        then cast(amount as DECIMAL(18,2))
                end as amount_value,
                list_filter({codes}, lambda code: code is not null) as row_codes,
                list_filter({messages}, lambda message: message is not null) as row_messages
            from {IN_TABLE}
        ),

        numbered as (
            select
                typed.*,
                count(*) over (partition by agreement_id, number_value) as copies,
                max(number_value) over (partition by agreement_id) as final_number,
                lag(due_value) over (
                    partition by agreement_id order by number_value, _line
                ) as previous_due
            from typed
        ),

        final as (
            select
                numbered.* exclude (row_codes, row_messages),
                row_codes || list_filter(
                    [
                        case when agreement_id is not null and number_value is not null
                            and copies > 1 then 'duplicate_installment' end,
                        case when due_value < agreed_value then 'due_before_agreed' end,
                        case when due_value <= previous_due then 'due_dates_not_increasing' end
                    ],
                    lambda code: code is not null
                ) as line_codes,
                row_messages || list_filter(
                    [
                        case when agreement_id is not null and number_value is not null
                            and copies > 1 then
                            'installment ' || number_value || ' of agreement '
                            || {_shown("agreement_id")} || ' is on ' || copies
                            || ' lines; number each installment once'
                        end,
                        case when due_value < agreed_value then
                            'installment ' || coalesce(cast(number_value as VARCHAR), '?')
                            || ' is due on ' || strftime(due_value, '%Y-%m-%d')
                            || ', before the agreed date ' || strftime(agreed_value, '%Y-%m-%d')
                        end,
                        case when due_value <= previous_due then
                            'installment ' || coalesce(cast(number_value as VARCHAR), '?')
                            || ' is due on ' || strftime(due_value, '%Y-%m-%d')
                            || ', not after the installment before it ('
                            || strftime(previous_due, '%Y-%m-%d') || ')'
                        end
                    ],
                    lambda message: message is not null
                ) as line_messages
            from numbered
        )

        select * from final
        """
    )
    aging = "marts.fct_account_aging"
    broken = (
        """
        select
            headers.agreement_id,
            max(plans.broken_on) as last_broken_on
        from headers
        inner join marts.fct_payment_plans as plans
            on headers.account_id = plans.account_id
        where
            plans.plan_status = 'broken'
            and plans.plan_id <> headers.agreement_id
            and plans.broken_on <= headers.agreed_date
        group by headers.agreement_id
        """
        if _table_exists(connection, "marts", "fct_payment_plans")
        else "select null::VARCHAR as agreement_id, null::DATE as last_broken_on where false"
    )
    offers = _offer_sql(connection)
    connection.execute(
        f"""
        create or replace temp table {JUDGED_TABLE} as
        with

        lines as (
            select * from {LINES_TABLE}
            where agreement_id is not null
        ),

        unreadable as (
            select
                agreement_id,
                list(_line order by _line) as unreadable_lines
            from {UNREADABLE_TABLE}
            where agreement_id is not null
            group by agreement_id
        ),

        headers as (
            select
                agreement_id,
                count(*) as line_count,
                count(distinct account_id) as account_ids,
                count(distinct kind) as kinds,
                count(distinct agreed_value) as agreed_dates,
                count(distinct coalesce(approved_by, '')) as approvers,
                any_value(account_id) as account_id,
                any_value(kind) as kind,
                any_value(agreed_value) as agreed_date,
                any_value(approved_by) as approved_by,
                count(number_value) as numbered_lines,
                count(distinct number_value) as installments,
                min(number_value) as first_number,
                max(number_value) as last_number,
                min(due_value) as first_due_date,
                max(due_value - previous_due) as longest_gap_days,
                sum(amount_value) as total_amount,
                min(amount_value) filter (where number_value < final_number)
                    as smallest_before_last,
                min(amount_value) filter (where number_value = final_number) as last_amount,
                list(_line order by _line) filter (where len(line_codes) > 0) as bad_lines,
                sha256(
                    any_value(account_id) || '|' || any_value(kind) || '|'
                    || strftime(any_value(agreed_value), '%Y-%m-%d') || '|'
                    || coalesce(any_value(approved_by), '') || '|'
                    || string_agg(
                        cast(number_value as VARCHAR) || ':' || strftime(due_value, '%Y-%m-%d')
                        || ':' || cast(amount_value as VARCHAR), ';' order by number_value
                    )
                ) as content_hash
            from lines
            group by agreement_id
        ),

        aging_dates as (
            select distinct as_of_date from {aging}
        ),

        placed as (
            select
                headers.*,
                accounts.account_id is not null as is_account,
                accounts.status as account_status,
                accounts.currency,
                case
                    when accounts.segment in (select segment from {POLICY_TABLE})
                        then accounts.segment
                    else 'default'
                end as policy_segment,
                case
                    when headers.agreed_date in (select as_of_date from aging_dates)
                        then headers.agreed_date
                    else (select max(as_of_date) from aging_dates)
                end as balance_date
            from headers
            left join raw.accounts_latest as accounts
                on headers.account_id = accounts.account_id
        ),

        balanced as (
            select
                placed.*,
                coalesce(aging.collectible_amount, 0) as balance,
                aging.max_days_past_due as days_past_due
            from placed
            left join {aging} as aging
                on
                    placed.account_id = aging.account_id
                    and placed.balance_date = aging.as_of_date
        ),

        tiers as (
            select
                balanced.agreement_id,
                max_by(tier.percent, tier.min_days_past_due) as tier_percent
            from balanced
            inner join {TIERS_TABLE} as tier
                on
                    balanced.policy_segment = tier.segment
                    and tier.min_days_past_due <= balanced.days_past_due
            group by balanced.agreement_id
        ),

        broken as ({broken}),

        offers as ({offers}),

        measured as (
            select
                balanced.*,
                policy.plan_allowed,
                policy.plan_min_balance,
                policy.plan_max_balance,
                policy.plan_min_dpd,
                policy.plan_max_dpd,
                policy.plan_broken_months,
                policy.plan_lengths,
                policy.plan_min_installment,
                policy.settlement_allowed,
                policy.settlement_min_balance,
                policy.approval_above,
                tiers.tier_percent,
                cast(round(balanced.balance * tiers.tier_percent, 0) * 0.01 as DECIMAL(18,2))
                    as settlement_minimum,
                balanced.balance - balanced.total_amount as shortfall,
                broken.last_broken_on,
                offers.offer_id,
                recorded.content_hash as recorded_hash,
                billing_plans.plan_id is not null as is_billing_plan_id,
                coalesce(balanced.bad_lines, []) || coalesce(unreadable.unreadable_lines, [])
                    as rejected_lines
            from balanced
            left join {POLICY_TABLE} as policy
                on balanced.policy_segment = policy.segment
            left join tiers
                on balanced.agreement_id = tiers.agreement_id
            left join broken
                on balanced.agreement_id = broken.agreement_id
            left join offers
                on balanced.agreement_id = offers.agreement_id
            left join ops.agreements as recorded
                on balanced.agreement_id = recorded.agreement_id
            left join (select distinct plan_id from raw.payment_plans_latest) as billing_plans
                on balanced.agreement_id = billing_plans.plan_id
            left join unreadable
                on balanced.agreement_id = unreadable.agreement_id
        ),

        {_breaches_cte()},

        {_problems_cte()},

        final as (
            select
                judged.*,
                case
                    when
                        recorded_hash = content_hash
                        and len(rejected_lines) = 0
                        then 'unchanged'
                    when len(codes) > 0 or len(rejected_lines) > 0 then 'rejected'
                    else 'new'
                end as status
            from judged
        )

        select * from final
        """
    )
    connection.execute(
        f"""
        create or replace temp table {CHECKED_TABLE} as
        select
            lines._line,
            lines.agreement_id,
            case
                when lines.agreement_id is null then lines.line_codes
                when judged.status <> 'rejected' then []
                when len(lines.line_codes) + len(judged.codes) = 0 then ['agreement_rejected']
                else list_sort(list_distinct(lines.line_codes || judged.codes))
            end as codes,
            case
                when lines.agreement_id is null then lines.line_messages
                when judged.status <> 'rejected' then []
                when len(lines.line_codes) + len(judged.codes) = 0 then [
                    'line ' || array_to_string(judged.rejected_lines, ', ') || ' of agreement '
                    || {_shown("lines.agreement_id")} || ' cannot be recorded, so none of its '
                    || 'lines is: an agreement loads whole or not at all'
                ]
                else lines.line_messages || judged.messages
            end as messages
        from {LINES_TABLE} as lines
        left join {JUDGED_TABLE} as judged
            on lines.agreement_id = judged.agreement_id
        """
    )


def _breaches_cte() -> str:
    """`breached`: the policy breaches of each agreement, codes and messages."""
    plan = "kind = 'installment_plan'"
    settle = "kind = 'settlement'"
    checks = [
        (
            f"{plan} and not plan_allowed",
            "segment_has_no_plans",
            "'the account''s segment offers no installment plans'",
        ),
        (
            f"{plan} and plan_allowed and not list_contains(plan_lengths, "
            "cast(installments as INTEGER))",
            "plan_length_not_allowed",
            "'a plan of ' || installments || ' installments is not an allowed length ('"
            " || array_to_string(plan_lengths, ', ') || ')'",
        ),
        (
            f"{plan} and plan_allowed and (smallest_before_last < plan_min_installment "
            "or (installments = 1 and last_amount < plan_min_installment))",
            "installment_below_minimum",
            "'an installment is below the minimum of ' || plan_min_installment || ' (only the "
            "last may be smaller, as the remainder)'",
        ),
        (
            f"{plan} and plan_allowed and (balance < plan_min_balance "
            "or balance > plan_max_balance)",
            "balance_outside_plan_range",
            "'the balance ' || balance || ' is outside the plan range ' || plan_min_balance "
            "|| ' to ' || plan_max_balance",
        ),
        (
            f"{plan} and plan_allowed and (days_past_due < plan_min_dpd "
            "or days_past_due > plan_max_dpd)",
            "days_past_due_outside_plan_range",
            "'the account is ' || days_past_due || ' days past due, outside the plan range ' "
            "|| plan_min_dpd || ' to ' || plan_max_dpd",
        ),
        (
            f"{plan} and plan_allowed and last_broken_on "
            "> agreed_date - to_months(plan_broken_months)",
            "recent_broken_plan",
            "'a plan of the account broke on ' || strftime(last_broken_on, '%Y-%m-%d') || ', "
            "within ' || plan_broken_months || ' months'",
        ),
        (
            f"{settle} and not settlement_allowed",
            "segment_has_no_settlements",
            "'the account''s segment offers no settlements'",
        ),
        (
            f"{settle} and settlement_allowed and balance < settlement_min_balance",
            "balance_below_settlement_minimum",
            "'the balance ' || balance || ' is below the settlement minimum ' "
            "|| settlement_min_balance",
        ),
        (
            f"{settle} and settlement_allowed and balance > 0 and tier_percent is null",
            "settlement_too_early",
            "'at ' || coalesce(cast(days_past_due as VARCHAR), '?') || ' days past due no "
            "settlement tier applies yet'",
        ),
        (
            f"{settle} and settlement_allowed and total_amount < settlement_minimum",
            "settlement_below_policy",
            "'the settlement ' || total_amount || ' is below ' || cast(tier_percent as "
            "DECIMAL(5,2)) || '% of the balance ' || balance || ' (' || settlement_minimum || ')'",
        ),
        (
            f"{settle} and settlement_allowed and shortfall > approval_above",
            "forgiven_above_approval_threshold",
            "'it forgives ' || shortfall || ', more than ' || approval_above",
        ),
        (
            f"first_due_date > agreed_date + {MAX_FIRST_DUE_DAYS}",
            "first_installment_too_late",
            "'the first installment is due ' || (first_due_date - agreed_date) || ' days "
            f"after the agreed date (at most {MAX_FIRST_DUE_DAYS})'",
        ),
        (
            f"longest_gap_days > {MAX_GAP_DAYS}",
            "installment_gap_too_long",
            "'two installments are ' || longest_gap_days || ' days apart (at most "
            f"{MAX_GAP_DAYS})'",
        ),
        (
            "total_amount > balance and balance > 0",
            "total_above_balance",
            "'the installments add up to ' || total_amount || ', more than the balance ' "
            "|| balance",
        ),
    ]
    assert [code for _, code, _ in checks] == list(BREACH_CODES)
    codes = ", ".join(f"case when {condition} then '{code}' end" for condition, code, _ in checks)
    messages = ", ".join(
        f"case when {condition} then {message} end" for condition, _, message in checks
    )
    return f"""
        breached as (
            select
                measured.*,
                list_filter([{codes}], lambda code: code is not null) as breaches,
                list_filter([{messages}], lambda message: message is not null)
                    as breach_messages
            from measured
        )"""


def _problems_cte() -> str:
    """`problems`: what sets each agreement aside whoever approves it (hard_codes), and
    `judged`: those, or the need of an approver for an agreement outside the policy."""
    shown_id = _shown("agreement_id")
    checks = [
        (
            "account_ids > 1 or kinds > 1 or agreed_dates > 1 or approvers > 1",
            "inconsistent_agreement",
            f"'the lines of agreement ' || {shown_id} || ' differ in account_id, kind, "
            "agreed_date or approved_by; every line of an agreement states the same'",
        ),
        (
            "numbered_lines = line_count and (first_number <> 1 or last_number <> installments)",
            "installment_gap",
            f"'the installments of agreement ' || {shown_id} || ' are numbered ' || first_number"
            " || ' to ' || last_number || ' with ' || installments || ' numbers; number them "
            "1, 2, 3 ... without a gap'",
        ),
        (
            "account_id is not null and not is_account",
            "unknown_account",
            f"'account_id ' || {_shown('account_id')} || ' is not a billing account'",
        ),
        (
            "account_status = 'closed'",
            "account_closed",
            f"'account ' || {_shown('account_id')} || ' is closed'",
        ),
        (
            "is_account and account_status <> 'closed' and balance <= 0",
            "nothing_collectible",
            f"'account ' || {_shown('account_id')} || ' has nothing collectible on ' "
            "|| coalesce(strftime(balance_date, '%Y-%m-%d'), 'any date the marts hold')",
        ),
        (
            "is_billing_plan_id",
            "agreement_id_taken",
            f"'agreement_id ' || {shown_id} || ' is a payment plan id of the billing system; "
            "give the agreement an id of its own'",
        ),
        (
            "recorded_hash is not null and recorded_hash <> content_hash",
            "agreement_conflict",
            f"'agreement ' || {shown_id} || ' was recorded before with another account, kind, "
            "date, approver or schedule; give a changed agreement a new id (and cancel the "
            "old one)'",
        ),
    ]
    codes = ", ".join(f"case when {condition} then '{code}' end" for condition, code, _ in checks)
    messages = ", ".join(
        f"case when {condition} then {message} end" for condition, _, message in checks
    )
    # the policy is judged on good data only: a bad line or a hard problem comes first
    approval = (
        "len(hard_codes) = 0 and len(rejected_lines) = 0 and len(breaches) > 0 "
        "and approved_by is null"
    )
    return f"""
        problems as (
            select
                breached.*,
                list_filter([{codes}], lambda code: code is not null) as hard_codes,
                list_filter([{messages}], lambda message: message is not null) as hard_messages
            from breached
        ),

        judged as (
            select
                problems.* exclude (hard_codes, hard_messages),
                hard_codes
                || case when {approval} then ['approval_required'] || breaches else [] end
                    as codes,
                hard_messages
                || case
                    when {approval} then [
                        'it is outside the offer policy (' || array_to_string(breach_messages,
                        '; ') || ') and needs a recorded approver (approved_by)'
                    ]
                    else []
                end as messages
            from problems
        )"""


def _offer_sql(connection: duckdb.DuckDBPyConnection) -> str:
    """The offer an agreement takes up: in ops.offers (when the offers step has made any), the
    account's latest offer of the same kind (for a plan, of the same length when there is
    one) standing on the agreed date."""
    empty = "select null::VARCHAR as agreement_id, null::VARCHAR as offer_id where false"
    needed = {"offer_id", "account_id", "kind", "plan_length", "offer_date", "expires_on"}
    if not needed <= _columns(connection, "ops", "offers"):
        return empty
    return """
        select
            headers.agreement_id,
            arg_max(
                made.offer_id,
                [
                    cast(made.plan_length = headers.installments as INTEGER),
                    cast(strftime(made.offer_date, '%Y%m%d') as INTEGER)
                ]
            ) as offer_id
        from headers
        inner join ops.offers as made
            on
                headers.account_id = made.account_id
                and headers.kind = made.kind
                and made.offer_date <= headers.agreed_date
                and made.expires_on >= headers.agreed_date
        group by headers.agreement_id
    """


# --- writing -------------------------------------------------------------------------------


def _store(
    connection: duckdb.DuckDBPyConnection,
    recorded_by: str,
    source: str,
    identifier: str | None,
    now: dt.datetime,
) -> int:
    """The new agreements and their schedules into ops. Returns how many."""
    inserted = connection.execute(
        f"""
        insert into ops.agreements (
            agreement_id, account_id, kind, agreed_date, currency, balance_date,
            balance_at_agreement, days_past_due, total_amount, forgiven_amount, installments,
            approved_by, recorded_by, source, policy_breaches, offer_id, content_hash,
            import_id, recorded_at
        )
        select
            agreement_id,
            account_id,
            kind,
            agreed_date,
            currency,
            balance_date,
            balance,
            days_past_due,
            total_amount,
            case when kind = 'settlement' then greatest(balance - total_amount, 0) else 0 end,
            installments,
            approved_by,
            $recorded_by,
            $source,
            breaches,
            offer_id,
            content_hash,
            $import_id,
            $now
        from {JUDGED_TABLE}
        where status = 'new'
        order by agreement_id
        returning agreement_id
        """,
        {"recorded_by": recorded_by, "source": source, "import_id": identifier, "now": now},
    ).fetchall()
    connection.execute(
        f"""
        insert into ops.agreement_installments
        select lines.agreement_id, lines.number_value, lines.due_value, lines.amount_value
        from {LINES_TABLE} as lines
        inner join {JUDGED_TABLE} as judged
            on lines.agreement_id = judged.agreement_id
        where judged.status = 'new'
        order by lines.agreement_id, lines.number_value
        """
    )
    return len(inserted)


def _quarantine(
    connection: duckdb.DuckDBPyConnection, identifier: str, file_name: str, now: dt.datetime
) -> int:
    """Every line of a rejected agreement (and every line without an agreement id, and every
    unreadable line) into ops.agreement_quarantine. Returns the lines."""
    values = {"import_id": identifier, "file": file_name, "now": now}
    checked = connection.execute(
        f"""
        insert into ops.agreement_quarantine
        select
            $import_id,
            $file,
            _line,
            case when regexp_full_match(agreement_id, '{ID_PATTERN}') then agreement_id end,
            codes,
            array_to_string(messages, '; '),
            $now
        from {CHECKED_TABLE}
        where len(codes) > 0
        order by _line
        returning line_number
        """,
        values,
    ).fetchall()
    unreadable = connection.execute(
        f"""
        insert into ops.agreement_quarantine
        select $import_id, $file, _line, agreement_id, ['unreadable_row'],
            'the line ' || message, $now
        from {UNREADABLE_TABLE}
        order by _line
        returning line_number
        """,
        values,
    ).fetchall()
    return len(checked) + len(unreadable)


def _import_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    read, unchanged, rejected, approved = connection.execute(
        f"""
        select
            (select count(distinct agreement_id) from (
                select agreement_id from {LINES_TABLE}
                union all
                select agreement_id from {UNREADABLE_TABLE}
            )),
            count(*) filter (where status = 'unchanged'),
            count(*) filter (where status = 'rejected'),
            count(*) filter (where status = 'new' and len(breaches) > 0)
        from {JUDGED_TABLE}
        """
    ).fetchall()[0]
    # an agreement whose every line is unreadable has no row in _agr_judged: rejected too
    only_unreadable = _one(
        connection,
        f"select count(distinct agreement_id) from {UNREADABLE_TABLE} where agreement_id "
        f"not in (select agreement_id from {JUDGED_TABLE})",
    )
    return {
        "read": int(read),
        "unchanged": int(unchanged),
        "rejected": int(rejected) + int(only_unreadable),
        "approved": int(approved),
    }


def _reason_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = connection.execute(
        f"""
        select code, count(*) from (
            select unnest(codes) as code from {CHECKED_TABLE}
            union all
            select 'unreadable_row' from {UNREADABLE_TABLE}
        )
        group by code
        """
    ).fetchall()
    return dict(sorted((code, int(count)) for code, count in rows))


def _outcome(
    connection: duckdb.DuckDBPyConnection, identifier: str, status: str
) -> AgreementOutcome:
    row = connection.execute(
        """
        select account_id, kind, currency, balance_at_agreement, balance_date, total_amount,
            forgiven_amount, installments, policy_breaches, approved_by, offer_id
        from ops.agreements
        where agreement_id = ?
        """,
        [identifier],
    ).fetchall()[0]
    account, kind, currency, balance, balance_date, total, forgiven, count, breaches, by, offer = (
        row
    )
    return AgreementOutcome(
        agreement_id=identifier,
        account_id=account,
        kind=kind,
        status="unchanged" if status == "unchanged" else "recorded",
        currency=currency,
        balance_at_agreement=balance,
        balance_date=balance_date,
        total_amount=total,
        forgiven_amount=forgiven,
        installments=count,
        policy_breaches=tuple(breaches),
        approved_by=by,
        offer_id=offer,
    )


def _drop_work_tables(connection: duckdb.DuckDBPyConnection) -> None:
    for table in (*WORK_TABLES, POLICY_TABLE, TIERS_TABLE):
        connection.execute(f"drop table if exists {table}")


# --- small helpers --------------------------------------------------------------------------


def _one(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None):
    """The single value of a one-row query, fully fetched (see warehouse.scalar)."""
    rows = connection.execute(sql, parameters or []).fetchall()
    return rows[0][0] if rows else None


def _columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = connection.execute(
        "select column_name from duckdb_columns() where schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return {name for (name,) in rows}


def _table_exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(_columns(connection, schema, table))


def _require_marts(connection: duckdb.DuckDBPyConnection, nothing: str) -> None:
    if not _table_exists(connection, "marts", "fct_account_aging"):
        raise AgreementError(
            "the warehouse has no aging yet (marts.fct_account_aging), so no balance to judge "
            f"an agreement on: run `recoup run` first; {nothing}."
        )


def _write_off_of(connection: duckdb.DuckDBPyConnection, agreement_id: str) -> dt.date | None:
    if not _table_exists(connection, "ops", "write_off_recommendations"):
        return None
    return _one(
        connection,
        "select recommended_on from ops.write_off_recommendations where agreement_id = ?",
        [agreement_id],
    )
