"""Import what comes back about contact details: skip-trace results and returned contacts.

Two CSV files (layout v1 each, docs/skip-tracing.md):

- a **result file** from the skip-trace vendor answers recoup's requests (`ops.skip_requests`,
  flows/lib/skip_tracing.py): per request, a new email, phone and/or address (the six address
  columns travel together), with the vendor's source and confidence;
- a **returned-contacts file** lists letters that came back (from the print vendor) and phone
  numbers collectors found invalid.

Both are read with the billing ingest's reader (text columns with a text editor's line
numbers) and checked in set-based SQL. A bad line is set aside whole in `ops.skip_quarantine`
with its line number, a reference (the request_id, or the customer_id), reason codes and a
message, never the contact values themselves. The good lines are applied:

- a result is judged per field group given: below `skip_tracing.min_confidence` it is
  recorded as `low_confidence`; equal (normalised, `contact_details.fingerprint_sql`) to what
  is in use it is `same_as_current`; otherwise it is `accepted` and appended to
  `ops.contact_overrides`. Every judgement is a row of `ops.skip_results`; a line that gives
  nothing is one `not_found` row. The request becomes `found` (something accepted) or
  `not_found`. What billing sent (`raw.customers`) is never changed: the view
  `ops.customer_contacts` lays the override over it while billing still sends the value it
  replaced;
- a returned letter or invalid number becomes a row of `ops.contact_problems` against the
  fingerprint of the address or number in use when the import runs.

A file is one transaction: its applied lines, quarantined lines and its `ops.skip_result_files`
row are written together or not at all. A file that cannot be read as a whole (not CSV, not
UTF-8, empty, a wrong header) raises SkipResultFileError and writes nothing; a file whose
content was imported before (same kind, same SHA-256) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import duckdb

from flows.lib.config import SkipTracingSettings
from flows.lib.contact_details import ADDRESS_COLUMNS, FIELD_GROUPS, fingerprint_sql
from flows.lib.contract import Column, Entity
from flows.lib.export_files import BatchError, ExportFile, _csv_header
from flows.lib.file_reader import ReadResult, Unreadable, read_export_file, read_table_name
from flows.lib.metro2_validate import STATES
from flows.lib.row_checks import REFERENCE_TABLES, Problem, column_problems
from flows.lib.warehouse import scalar

FileKind = Literal["results", "returned"]
LAYOUT_VERSION = "1"
MAX_VALUE_CHARS = 200
# control, format (bidi overrides, zero-width), private-use, unassigned characters and the
# Unicode line and paragraph separators: nothing a name, address or email holds
NOT_PRINTABLE = r"[\p{C}\p{Zl}\p{Zp}]"
US_POSTAL_CODE = r"[0-9]{5}(-[0-9]{4})?"
COUNTRIES = REFERENCE_TABLES["country"]
NOTHING_LOADED = "Nothing from this file was loaded."


def _contact(name: str, kind: Literal["text", "email"] = "text") -> Column:
    # sensitive: a message never shows the value (contact details are PII)
    return Column(name, kind, required=False, sensitive=True)


RESULT_LAYOUT = Entity(
    name="skip_results",
    columns=(
        Column("request_id"),
        Column("customer_id"),
        _contact("email", "email"),
        _contact("phone"),
        *(_contact(name) for name in ADDRESS_COLUMNS),
        Column("source"),
        Column("confidence"),
    ),
    key=("request_id",),
)
RETURNED_LAYOUT = Entity(
    name="returned_contacts",
    columns=(
        Column("customer_id"),
        Column("channel", "enum", values=("letter", "phone")),
        Column("reported_on", "date"),
        Column("reason", required=False),
        Column("reference", required=False),
    ),
    key=("customer_id", "channel", "reported_on"),
)
# every column of a result file is in its header (a blank value means "nothing found");
# a returned-contacts file may leave out its optional columns
RESULT_HEADER_REQUIRED = RESULT_LAYOUT.column_names
RETURNED_HEADER_REQUIRED = RETURNED_LAYOUT.required_names

RESULT_REASON_CODES = (
    "missing_value",
    "bad_value",
    "value_too_long",
    "bad_email",
    "bad_phone",
    "incomplete_address",
    "bad_state",
    "bad_postal_code",
    "bad_country",
    "bad_confidence",
    "unknown_request",
    "customer_mismatch",
    "unknown_customer",
    "already_answered",
    "duplicate_line",
    "unreadable_row",
)
RETURNED_REASON_CODES = (
    "missing_value",
    "bad_value",
    "value_too_long",
    "bad_channel",
    "bad_date",
    "future_date",
    "unknown_customer",
    "nothing_on_record",
    "replaced_since",
    "duplicate_line",
    "unreadable_row",
)
OUTCOMES = ("accepted", "low_confidence", "same_as_current", "not_found", "not_used")
DEFAULT_PROBLEM_REASON = {"letter": "returned_mail", "phone": "phone_invalid"}

IN_TABLE = "_skip_in"
CHECKED_TABLE = "_skip_checked"
DECIDED_TABLE = "_skip_decided"


class SkipResultFileError(ValueError):
    """A skip-trace result file (or a returned-contacts file) cannot be imported; nothing from
    it was written."""


class ReturnedContactsFileError(SkipResultFileError):
    """A returned-contacts file cannot be imported; nothing from it was written. A subclass,
    so catching SkipResultFileError covers both files."""


@dataclass(frozen=True)
class SkipResultOutcome:
    """What one result-file import did. `status` is `loaded`, or `unchanged` when the same
    content was imported before (then every count is 0 and `imported_at` is that import)."""

    file_name: str
    content_hash: str
    import_id: str
    status: Literal["loaded", "unchanged"]
    imported_at: dt.datetime
    lines_read: int = 0
    lines_loaded: int = 0
    lines_quarantined: int = 0
    # lines per reason code; a line with two problems counts under both
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)
    # field group (email, phone, address, none) -> outcome -> judgements
    outcomes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    requests_found: int = 0
    requests_not_found: int = 0

    @property
    def changed(self) -> bool:
        return self.status == "loaded"

    @property
    def accepted(self) -> int:
        return sum(by_outcome.get("accepted", 0) for by_outcome in self.outcomes.values())

    def __str__(self) -> str:
        """One line for the command line: counts only, never a contact detail."""
        if not self.changed:
            return _unchanged_line(self.file_name, "skip-trace results", self.imported_at)
        parts = [_lines_part(self)]
        for group in (*FIELD_GROUPS, "none"):
            by_outcome = self.outcomes.get(group)
            if by_outcome:
                counts = ", ".join(
                    f"{outcome} {by_outcome[outcome]:,}"
                    for outcome in OUTCOMES
                    if outcome in by_outcome
                )
                parts.append(f"{group}: {counts}")
        parts.append(
            f"requests: {self.requests_found:,} found, {self.requests_not_found:,} not found"
        )
        return "; ".join(parts) + "."


@dataclass(frozen=True)
class ReturnedContactsOutcome:
    """What one returned-contacts import did; `status` as in SkipResultOutcome."""

    file_name: str
    content_hash: str
    import_id: str
    status: Literal["loaded", "unchanged"]
    imported_at: dt.datetime
    lines_read: int = 0
    lines_loaded: int = 0
    lines_quarantined: int = 0
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)
    # new rows of ops.contact_problems per channel (letter, phone)
    problems_recorded: Mapping[str, int] = field(default_factory=dict)
    # good lines whose problem was recorded before (by an earlier file): nothing changed
    problems_known: int = 0

    @property
    def changed(self) -> bool:
        return self.status == "loaded"

    def __str__(self) -> str:
        """One line for the command line: counts only, never a contact detail."""
        if not self.changed:
            return _unchanged_line(self.file_name, "returned contacts", self.imported_at)
        recorded = ", ".join(
            f"{channel} {count:,}" for channel, count in sorted(self.problems_recorded.items())
        )
        return (
            f"{_lines_part(self)}; new problems: {recorded or 'none'}"
            f"; {self.problems_known:,} recorded before."
        )


def _unchanged_line(file_name: str, what: str, imported_at: dt.datetime) -> str:
    return (
        f"{file_name}: these {what} were imported on "
        f"{imported_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; nothing changed."
    )


def _lines_part(outcome: SkipResultOutcome | ReturnedContactsOutcome) -> str:
    text = (
        f"{outcome.file_name}: {outcome.lines_read:,} lines read, {outcome.lines_loaded:,} "
        f"loaded, {outcome.lines_quarantined:,} quarantined"
    )
    if outcome.quarantined_by_reason:
        reasons = ", ".join(
            f"{code} {count:,}" for code, count in sorted(outcome.quarantined_by_reason.items())
        )
        text += f" (reasons: {reasons}; see ops.skip_quarantine)"
    return text


# --- ids ------------------------------------------------------------------------------------


def import_id(file_kind: FileKind, content_hash: str) -> str:
    """The id of the import of one file content of one kind."""
    return hashlib.sha256(f"{file_kind}|{content_hash}".encode()).hexdigest()[:24]


def override_id(request_id: str, field_group: str) -> str:
    """The id of the override a request's result makes for one field group; OVERRIDE_ID_SQL
    agrees."""
    return hashlib.sha256(f"override|{request_id}|{field_group}".encode()).hexdigest()[:24]


def problem_id(customer_id: str, channel: str, fingerprint: str, reported_on: dt.date) -> str:
    """The id of a reported problem with one address or number; PROBLEM_ID_SQL agrees."""
    text = f"problem|{customer_id}|{channel}|{fingerprint}|{reported_on.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


OVERRIDE_ID_SQL = "left(sha256('override|' || request_id || '|' || field_group), 24)"
PROBLEM_ID_SQL = (
    "left(sha256('problem|' || customer_id || '|' || channel || '|' || fingerprint || '|' "
    "|| strftime(reported_date, '%Y-%m-%d')), 24)"
)


# --- the two imports --------------------------------------------------------------------------


def import_skip_results(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    settings: SkipTracingSettings,
    today: dt.date,
    use_emails: bool = True,
    now: dt.datetime | None = None,
) -> SkipResultOutcome:
    """Import the skip-trace result file at `path`: check every line, apply the good ones as
    contact overrides and answer their requests. Raises SkipResultFileError when the file
    cannot be imported at all; then nothing is written."""
    export = _check_file(path, RESULT_LAYOUT, RESULT_HEADER_REQUIRED, SkipResultFileError)
    imported_at = now or dt.datetime.now(dt.UTC)
    identifier = import_id("results", export.content_hash)
    earlier = _earlier_import(connection, "results", export.content_hash)
    if earlier is not None:
        return SkipResultOutcome(path.name, export.content_hash, identifier, "unchanged", earlier)
    read = _read(connection, export, SkipResultFileError)
    try:
        _create_country_table(connection)
        connection.execute("begin transaction")
        try:
            _collect_lines(connection, export)
            _check_result_lines(connection)
            _decide_results(connection, settings.min_confidence, use_emails)
            loaded = _apply_results(connection, identifier, today, imported_at)
            quarantined = _quarantine(
                connection, identifier, "results", path.name, "request_id", read.unreadable,
                imported_at,
            )  # fmt: skip
            lines_read = read.rows + len(read.unreadable)
            _record_file(
                connection, identifier, "results", export, lines_read, loaded, quarantined,
                today, imported_at,
            )  # fmt: skip
            by_reason = _reason_counts(connection, len(read.unreadable))
            outcomes = _outcome_counts(connection)
            found, not_found = _request_counts(connection)
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        _drop_work_tables(connection, export)
    return SkipResultOutcome(
        file_name=path.name,
        content_hash=export.content_hash,
        import_id=identifier,
        status="loaded",
        imported_at=imported_at,
        lines_read=lines_read,
        lines_loaded=loaded,
        lines_quarantined=quarantined,
        quarantined_by_reason=by_reason,
        outcomes=outcomes,
        requests_found=found,
        requests_not_found=not_found,
    )


def import_returned_contacts(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    today: dt.date,
    now: dt.datetime | None = None,
) -> ReturnedContactsOutcome:
    """Import the returned-mail / invalid-phone file at `path`: each good line records a
    problem with the customer's address or phone number in use now. Raises
    ReturnedContactsFileError when the file cannot be imported at all; then nothing is
    written."""
    export = _check_file(path, RETURNED_LAYOUT, RETURNED_HEADER_REQUIRED, ReturnedContactsFileError)
    imported_at = now or dt.datetime.now(dt.UTC)
    identifier = import_id("returned", export.content_hash)
    earlier = _earlier_import(connection, "returned", export.content_hash)
    if earlier is not None:
        return ReturnedContactsOutcome(
            path.name, export.content_hash, identifier, "unchanged", earlier
        )
    read = _read(connection, export, ReturnedContactsFileError)
    try:
        connection.execute("begin transaction")
        try:
            _collect_lines(connection, export)
            _check_returned_lines(connection, today)
            loaded = scalar(
                connection, f"select count(*) from {CHECKED_TABLE} where len(codes) = 0"
            )
            recorded = _record_problems(connection, identifier, path.name, imported_at)
            quarantined = _quarantine(
                connection, identifier, "returned", path.name, "customer_id", read.unreadable,
                imported_at,
            )  # fmt: skip
            lines_read = read.rows + len(read.unreadable)
            _record_file(
                connection, identifier, "returned", export, lines_read, loaded, quarantined,
                today, imported_at,
            )  # fmt: skip
            by_reason = _reason_counts(connection, len(read.unreadable))
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        _drop_work_tables(connection, export)
    return ReturnedContactsOutcome(
        file_name=path.name,
        content_hash=export.content_hash,
        import_id=identifier,
        status="loaded",
        imported_at=imported_at,
        lines_read=lines_read,
        lines_loaded=loaded,
        lines_quarantined=quarantined,
        quarantined_by_reason=by_reason,
        problems_recorded=recorded,
        problems_known=loaded - sum(recorded.values()),
    )


# --- the file as a whole ---------------------------------------------------------------------


def _check_file(
    path: Path,
    layout: Entity,
    header_required: tuple[str, ...],
    error: type[SkipResultFileError],
) -> ExportFile:
    """Format, encoding and header checks, before anything is read into the warehouse."""
    what = _what(layout)
    if not path.is_file():
        raise error(f"{path}: no such file. Pass the {what} (CSV) itself.")
    if path.suffix.lower() != ".csv":
        raise error(
            f"{path.name}: a {what} is CSV (layout v{LAYOUT_VERSION}, named *.csv); ask for a "
            f"CSV export. {NOTHING_LOADED}"
        )
    try:
        columns = _csv_header(path, path.stat().st_size)
    except BatchError as problem:
        raise error(_file_message(problem)) from None
    _check_utf8(path, error)
    _check_header(path.name, layout, header_required, columns, error)
    with path.open("rb") as handle:
        content_hash = hashlib.file_digest(handle, "sha256").hexdigest()
    return ExportFile(
        entity=layout,
        path=path,
        file_format="csv",
        columns=columns,
        content_hash=content_hash,
        size_bytes=path.stat().st_size,
    )


def _what(layout: Entity) -> str:
    return "skip-trace result file" if layout is RESULT_LAYOUT else "returned-contacts file"


def _check_utf8(path: Path, error: type[SkipResultFileError]) -> None:
    """The whole file is UTF-8 text (a line break never splits a UTF-8 character, so line by
    line is exact)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise error(
                    f"{path.name}: line {number} holds bytes that are not UTF-8 text; save the "
                    f"file as UTF-8 CSV and send it again. {NOTHING_LOADED}"
                ) from None


def _check_header(
    file_name: str,
    layout: Entity,
    header_required: tuple[str, ...],
    columns: tuple[str, ...],
    error: type[SkipResultFileError],
) -> None:
    expected = layout.column_names
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    missing = [name for name in header_required if name not in columns]
    unknown = [name for name in columns if name not in expected]
    if not (repeated or missing or unknown):
        return
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
    if repeated:
        parts.append(f"repeated column(s) {', '.join(repeated)}")
    optional = [name for name in expected if name not in header_required]
    may_omit = f" ({', '.join(optional)} may be left out)" if optional else ""
    raise error(
        f"{file_name}: wrong header for a {_what(layout)} (layout v{LAYOUT_VERSION}): "
        f"{'; '.join(parts)}. The header must name these columns: {', '.join(expected)}"
        f"{may_omit}. {NOTHING_LOADED}"
    )


def _file_message(problem: BatchError) -> str:
    message = str(problem).replace("this batch", "this file").replace("the batch", "the file")
    return message if NOTHING_LOADED in message else f"{message} {NOTHING_LOADED}"


def _read(
    connection: duckdb.DuckDBPyConnection, export: ExportFile, error: type[SkipResultFileError]
) -> ReadResult:
    try:
        return read_export_file(connection, export)  # outside the transaction (rowids)
    except BatchError as problem:
        raise error(_file_message(problem)) from None


def _earlier_import(
    connection: duckdb.DuckDBPyConnection, file_kind: FileKind, content_hash: str
) -> dt.datetime | None:
    return scalar(
        connection,
        "select min(imported_at) from ops.skip_result_files "
        "where file_kind = ? and content_hash = ?",
        [file_kind, content_hash],
    )


def _create_country_table(connection: duckdb.DuckDBPyConnection) -> None:
    """The ISO 3166 alpha-2 list the billing loader checks countries against."""
    from flows.lib.loader import _create_reference_tables

    _create_reference_tables(connection)


def _drop_work_tables(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> None:
    tables = (read_table_name(export), IN_TABLE, CHECKED_TABLE, DECIDED_TABLE)
    for table in (*tables, *REFERENCE_TABLES.values()):
        connection.execute(f"drop table if exists {table}")


# --- per-line rules ----------------------------------------------------------------------------


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _generic_problems(name: str) -> list[Problem]:
    """Rules every column follows. The messages never show the value."""
    present = f"{name} is not null"
    return [
        Problem(
            f"{present} and regexp_matches({name}, '{NOT_PRINTABLE}')",
            "bad_value",
            _literal(
                f"{name} holds control or other non-printable characters (a tab, a line break "
                "inside the field, a zero-width or direction mark); send plain text"
            ),
        ),
        Problem(
            f"{present} and length({name}) > {MAX_VALUE_CHARS}",
            "value_too_long",
            _literal(f"{name} is longer than {MAX_VALUE_CHARS} characters"),
        ),
    ]


def _column_rules(
    column: Column, extra: list[Problem], renamed: Mapping[str, str] | None = None
) -> list[Problem]:
    """A column's rules in the order they are tried (first match wins): required, the
    generic ones, the contract's format rule (row_checks), then the layout's own."""
    renamed = renamed or {}
    problems = column_problems(column)
    required = [problem for problem in problems if problem.code == "missing_value"]
    formats = [
        replace(problem, code=renamed.get(problem.code, problem.code))
        for problem in problems
        if problem.code != "missing_value"
    ]
    return required + _generic_problems(column.name) + formats + extra


def _first_match(problems: list[Problem], attribute: str) -> str:
    branches = " ".join(
        f"when {problem.condition} then {getattr(problem, attribute)}" for problem in problems
    )
    return f"case {branches} end"


def _row_problem_lists(rules: list[list[Problem]]) -> tuple[str, str]:
    """SQL list literals of problem codes and messages, one item per column (NULL if clean)."""
    codes = ", ".join(_first_match(problems, "code_sql") for problems in rules)
    messages = ", ".join(_first_match(problems, "message") for problems in rules)
    return f"[{codes}]", f"[{messages}]"


ADDRESS_GIVEN = "(" + " or ".join(f"{name} is not null" for name in ADDRESS_COLUMNS) + ")"
IS_US = "upper(country) = 'US'"
STATE_LIST = ", ".join(_literal(state) for state in sorted(STATES))


def _result_rules() -> list[list[Problem]]:
    extra: dict[str, list[Problem]] = {
        "phone": [
            Problem(
                "phone is not null and not regexp_full_match(regexp_replace("
                "regexp_replace(phone, '[ ().\\-]', '', 'g'), '^\\+', ''), '[0-9]{10,15}')",
                "bad_phone",
                _literal(
                    "phone is not a phone number: without spaces, dashes, dots, parentheses "
                    "and a leading +, it must be 10 to 15 digits"
                ),
            )
        ],
        "address_line1": [
            Problem(
                f"{ADDRESS_GIVEN} and (address_line1 is null or city is null "
                "or postal_code is null or country is null)",
                "incomplete_address",
                "'the address is incomplete: ' || concat_ws(', ', "
                + ", ".join(
                    f"case when {name} is null then '{name}' end"
                    for name in ("address_line1", "city", "postal_code", "country")
                )
                + ") || ' empty; an address needs address_line1, city, postal_code and country "
                "(address_line2, and state outside the US, may be empty), or leave all six "
                "address columns empty'",
            )
        ],
        "state": [
            Problem(
                f"{IS_US} and (state is null or upper(state) not in ({STATE_LIST}))",
                "bad_state",
                _literal("state is not a US state code for a US address (2 letters, like TX)"),
            )
        ],
        "postal_code": [
            Problem(
                f"postal_code is not null and {IS_US} "
                f"and not regexp_full_match(postal_code, '{US_POSTAL_CODE}')",
                "bad_postal_code",
                _literal("postal_code is not a US ZIP code (5 digits, or ZIP+4 like 78701-1234)"),
            )
        ],
        "country": [
            Problem(
                f"country is not null and upper(country) not in (select code from {COUNTRIES})",
                "bad_country",
                _literal("country is not an ISO 3166 alpha-2 country code, like US"),
            )
        ],
        "confidence": [
            Problem(
                "confidence is not null and (not regexp_full_match(confidence, '[0-9]{1,3}') "
                "or try_cast(confidence as INTEGER) > 100)",
                "bad_confidence",
                "'confidence ''' || left(confidence, 20) || ''' is not a whole number from 0 "
                "to 100'",
            )
        ],
    }
    return [_column_rules(column, extra.get(column.name, [])) for column in RESULT_LAYOUT.columns]


def _collect_lines(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> None:
    """`_skip_in`: every readable line as trimmed text, NULL for an empty field or a column
    the header left out."""
    present = set(export.columns)
    values = ", ".join(
        f"nullif(trim({name}), '') as {name}" if name in present else f"NULL::VARCHAR as {name}"
        for name in export.entity.column_names
    )
    connection.execute(
        f"create or replace temp table {IN_TABLE} as "
        f"select _line, {values} from {read_table_name(export)}"
    )


def _shown(name: str, chars: int = 40) -> str:
    """A non-contact value (an id) quoted in a message."""
    return f"'''' || left({name}, {chars}) || ''''"


def _check_result_lines(connection: duckdb.DuckDBPyConnection) -> None:
    """`_skip_checked`: one row per line with its problems, against the request ledger."""
    codes, messages = _row_problem_lists(_result_rules())
    connection.execute(
        f"""
        create or replace temp table {CHECKED_TABLE} as
        with

        lines as (
            select
                {IN_TABLE}.*,
                {ADDRESS_GIVEN} as has_address,
                try_cast(confidence as INTEGER) as confidence_value,
                {codes} as row_codes,
                {messages} as row_messages
            from {IN_TABLE}
        ),

        requested as (
            select
                lines.*,
                requests.customer_id as request_customer_id,
                requests.status as request_status,
                requests.answered_on as request_answered_on
            from lines
            left join ops.skip_requests as requests
                on lines.request_id = requests.request_id
        ),

        request_copies as (
            select
                request_id,
                count(*) as copies,
                string_agg(cast(_line as VARCHAR), ', ' order by _line) as on_lines
            from requested
            where request_id is not null
            group by request_id
        ),

        -- two waiting requests of one customer answered in one file: which would be in effect?
        customer_copies as (
            select
                customer_id,
                count(distinct request_id) as requests,
                string_agg(cast(_line as VARCHAR), ', ' order by _line) as on_lines
            from requested
            where
                customer_id = request_customer_id
                and request_status in ('open', 'expired')
            group by customer_id
        ),

        located as (
            select
                requested.*,
                coalesce(request_copies.copies, 1) as request_copies,
                request_copies.on_lines as request_lines,
                coalesce(customer_copies.requests, 1) as customer_requests,
                customer_copies.on_lines as customer_lines,
                contacts.customer_id is not null as has_contacts
            from requested
            left join request_copies
                on requested.request_id = request_copies.request_id
            left join customer_copies
                on
                    requested.customer_id = customer_copies.customer_id
                    and requested.customer_id = requested.request_customer_id
                    and requested.request_status in ('open', 'expired')
            left join ops.customer_contacts as contacts
                on requested.customer_id = contacts.customer_id
        ),

        problems as (
            select
                located.*,
                list_filter(
                    row_codes || [
                        case when request_id is not null and request_status is null
                            then 'unknown_request' end,
                        case when customer_id <> request_customer_id
                            then 'customer_mismatch' end,
                        case when customer_id = request_customer_id and not has_contacts
                            then 'unknown_customer' end,
                        case when request_status in ('found', 'not_found')
                            then 'already_answered' end,
                        case when request_copies > 1 or customer_requests > 1
                            then 'duplicate_line' end
                    ],
                    lambda code: code is not null
                ) as all_codes,
                list_filter(
                    row_messages || [
                        case when request_id is not null and request_status is null then
                            'request_id ' || {_shown("request_id")} || ' is not a request '
                            || 'recoup made; check it against the request files'
                        end,
                        case when customer_id <> request_customer_id then
                            'customer_id ' || {_shown("customer_id")} || ' is not the '
                            || 'customer of request ' || {_shown("request_id")} || ' (it was '
                            || 'made for ' || {_shown("request_customer_id")} || '); check '
                            || 'the line against the request file'
                        end,
                        case when customer_id = request_customer_id and not has_contacts then
                            'customer_id ' || {_shown("customer_id")} || ' has no billing '
                            || 'record, so there is nothing to update'
                        end,
                        case when request_status in ('found', 'not_found') then
                            'request ' || {_shown("request_id")} || ' was answered on '
                            || coalesce(strftime(request_answered_on, '%Y-%m-%d'), '?')
                            || ' (' || request_status || '); a request takes one result: '
                            || 'send new lines only'
                        end,
                        case
                            when request_copies > 1 then
                                'request_id ' || {_shown("request_id")} || ' is on lines '
                                || request_lines || ' of this file; every copy is set aside: '
                                || 'send one line per request'
                            when customer_requests > 1 then
                                'customer_id ' || {_shown("customer_id")} || ' has results '
                                || 'for different requests on lines ' || customer_lines
                                || ' of this file; every one is set aside: send one line per '
                                || 'customer'
                        end
                    ],
                    lambda message: message is not null
                ) as messages
            from located
        ),

        final as (
            select
                problems.* exclude (all_codes, row_codes, row_messages),
                list_sort(list_distinct(all_codes)) as codes
            from problems
        )

        select * from final
        """
    )


def _decide_results(
    connection: duckdb.DuckDBPyConnection, min_confidence: int, use_emails: bool = True
) -> None:
    """`_skip_decided`: per good line, one row per field group it gives (or one `none` row),
    with the outcome and the fingerprints it is judged by."""

    def by_group(columns: Mapping[str, str]) -> str:
        branches = " ".join(
            f"when '{group}' then {expression}" for group, expression in columns.items()
        )
        return f"case given.field_group {branches} end"

    line_fingerprint = by_group({group: fingerprint_sql(group, "good") for group in FIELD_GROUPS})
    current = by_group({group: f"contacts.{group}_fingerprint" for group in FIELD_GROUPS})
    billing = by_group({group: f"contacts.billing_{group}_fingerprint" for group in FIELD_GROUPS})
    connection.execute(
        f"""
        create or replace temp table {DECIDED_TABLE} as
        with

        good as (
            select * from {CHECKED_TABLE}
            where len(codes) = 0
        ),

        groups_given as (
            select
                _line,
                unnest(list_filter(
                    [
                        case when email is not null then 'email' end,
                        case when phone is not null then 'phone' end,
                        case when has_address then 'address' end
                    ],
                    lambda field_group: field_group is not null
                )) as field_group
            from good
        ),

        given as (
            select _line, field_group from groups_given
            union all
            select _line, 'none' as field_group
            from good
            where email is null and phone is null and not has_address
        ),

        judged as (
            select
                given._line,
                given.field_group,
                good.request_id,
                good.customer_id,
                good.source,
                good.confidence_value as confidence,
                {line_fingerprint} as line_fingerprint,
                {current} as current_fingerprint,
                {billing} as billing_fingerprint
            from given
            inner join good
                on given._line = good._line
            inner join ops.customer_contacts as contacts
                on good.customer_id = contacts.customer_id
        ),

        final as (
            select
                judged.*,
                case
                    when field_group = 'none' then 'not_found'
                    when field_group = 'email' and not $use_emails then 'not_used'
                    when confidence < $min_confidence then 'low_confidence'
                    when line_fingerprint = current_fingerprint then 'same_as_current'
                    else 'accepted'
                end as outcome
            from judged
        )

        select
            final.*,
            case when outcome = 'accepted' then {OVERRIDE_ID_SQL} end as override_id
        from final
        """,
        {"min_confidence": min_confidence, "use_emails": use_emails},
    )


def _apply_results(
    connection: duckdb.DuckDBPyConnection,
    identifier: str,
    today: dt.date,
    now: dt.datetime,
) -> int:
    """Overrides for what was accepted, a judgement row per group, the requests answered.
    Returns the number of lines applied."""
    values = {"import_id": identifier, "today": today, "now": now}

    def when(group: str, expression: str) -> str:
        return f"case when decided.field_group = '{group}' then {expression} end"

    address_values = ", ".join(
        when("address", f"upper(lines.{name})" if name in ("state", "country") else f"lines.{name}")
        for name in ADDRESS_COLUMNS
    )
    connection.execute(
        f"""
        insert into ops.contact_overrides (
            override_id, customer_id, field_group, email, phone, {", ".join(ADDRESS_COLUMNS)},
            billing_fingerprint, replaced_fingerprint, source, confidence, request_id,
            import_id, accepted_on, accepted_at
        )
        select
            decided.override_id,
            decided.customer_id,
            decided.field_group,
            {when("email", "lines.email")},
            {when("phone", "lines.phone")},
            {address_values},
            decided.billing_fingerprint,
            decided.current_fingerprint,
            decided.source,
            decided.confidence,
            decided.request_id,
            $import_id,
            $today,
            $now
        from {DECIDED_TABLE} as decided
        inner join {CHECKED_TABLE} as lines
            on decided._line = lines._line
        where decided.outcome = 'accepted'
        order by decided._line, decided.field_group
        """,
        values,
    )
    connection.execute(
        f"""
        insert into ops.skip_results (
            import_id, line_number, request_id, customer_id, field_group, outcome, source,
            confidence, override_id, decided_at
        )
        select
            $import_id, _line, request_id, customer_id, field_group, outcome, source,
            confidence, override_id, $now
        from {DECIDED_TABLE}
        order by _line, field_group
        """,
        {"import_id": identifier, "now": now},
    )
    connection.execute(
        f"""
        update ops.skip_requests as requests
        set
            status = answered.status,
            answered_on = $today,
            result_import_id = $import_id,
            status_at = $now
        from (
            select
                request_id,
                case when bool_or(outcome = 'accepted') then 'found' else 'not_found' end
                    as status
            from {DECIDED_TABLE}
            group by request_id
        ) as answered
        where requests.request_id = answered.request_id
        """,
        values,
    )
    return scalar(connection, f"select count(distinct _line) from {DECIDED_TABLE}")


def _check_returned_lines(connection: duckdb.DuckDBPyConnection, today: dt.date) -> None:
    """`_skip_checked` for a returned-contacts file: problems per line, against the contact
    details in use now."""
    rules = [
        _column_rules(column, [], renamed={"unknown_value": "bad_channel"})
        for column in RETURNED_LAYOUT.columns
    ]
    codes, messages = _row_problem_lists(rules)
    connection.execute(
        f"""
        create or replace temp table {CHECKED_TABLE} as
        with

        lines as (
            select
                {IN_TABLE}.*,
                cast(try_strptime(reported_on, '%Y-%m-%d') as DATE) as reported_date,
                {codes} as row_codes,
                {messages} as row_messages
            from {IN_TABLE}
        ),

        located as (
            select
                lines.*,
                contacts.customer_id is not null as is_customer,
                case lines.channel
                    when 'letter' then contacts.address_fingerprint
                    when 'phone' then contacts.phone_fingerprint
                end as fingerprint,
                case lines.channel
                    when 'letter' then
                        contacts.address_line1 is not null
                        and contacts.city is not null
                        and contacts.postal_code is not null
                    when 'phone' then contacts.phone_fingerprint <> ''
                end as has_value,
                -- set only while a skip-trace value is in effect: the day it was accepted
                case lines.channel
                    when 'letter' then contacts.address_updated_on
                    when 'phone' then contacts.phone_updated_on
                end as value_since,
                min(lines._line) over (
                    partition by lines.customer_id, lines.channel, lines.reported_on
                ) as first_line
            from lines
            left join ops.customer_contacts as contacts
                on lines.customer_id = contacts.customer_id
        ),

        problems as (
            select
                located.*,
                list_filter(
                    row_codes || [
                        case when reported_date > $today then 'future_date' end,
                        case when customer_id is not null and not is_customer
                            then 'unknown_customer' end,
                        case when is_customer and not has_value then 'nothing_on_record' end,
                        case when has_value and reported_date <= value_since
                            then 'replaced_since' end,
                        case when customer_id is not null and channel is not null
                            and reported_on is not null and _line > first_line
                            then 'duplicate_line' end
                    ],
                    lambda code: code is not null
                ) as all_codes,
                list_filter(
                    row_messages || [
                        case when reported_date > $today then
                            'reported_on ' || strftime(reported_date, '%Y-%m-%d') || ' is '
                            || 'after today (' || strftime($today, '%Y-%m-%d') || '); report '
                            || 'what already happened'
                        end,
                        case when customer_id is not null and not is_customer then
                            'customer_id ' || {_shown("customer_id")} || ' is not a billing '
                            || 'customer; check the id'
                        end,
                        case when is_customer and not has_value then
                            case channel
                                when 'letter' then 'customer ' || {_shown("customer_id")}
                                    || ' has no complete address on record, so no letter '
                                    || 'could have come back from it'
                                else 'customer ' || {_shown("customer_id")} || ' has no '
                                    || 'phone number on record'
                            end
                        end,
                        case when has_value and reported_date <= value_since then
                            'the ' || case channel when 'letter' then 'address' else 'phone '
                            || 'number' end || ' of customer ' || {_shown("customer_id")}
                            || ' in use was accepted from a skip trace on '
                            || strftime(value_since, '%Y-%m-%d') || ', on or after '
                            || 'reported_on ' || strftime(reported_date, '%Y-%m-%d')
                            || ': the report is about the one before it and was not recorded'
                        end,
                        case when customer_id is not null and channel is not null
                            and reported_on is not null and _line > first_line then
                            'the same customer, channel and reported_on are on line '
                            || first_line || ' of this file; only the first copy is considered'
                        end
                    ],
                    lambda message: message is not null
                ) as messages
            from located
        ),

        final as (
            select
                problems.* exclude (all_codes, row_codes, row_messages),
                list_sort(list_distinct(all_codes)) as codes
            from problems
        )

        select * from final
        """,
        {"today": today},
    )


def _record_problems(
    connection: duckdb.DuckDBPyConnection,
    identifier: str,
    file_name: str,
    now: dt.datetime,
) -> dict[str, int]:
    """The good lines as ops.contact_problems rows; one recorded before stays as it was.
    Returns the new rows per channel."""
    rows = connection.execute(
        f"""
        insert or ignore into ops.contact_problems (
            problem_id, customer_id, channel, fingerprint, reason, reported_on, source,
            import_id, recorded_at
        )
        select
            {PROBLEM_ID_SQL},
            customer_id,
            channel,
            fingerprint,
            coalesce(
                reason,
                case channel
                    when 'letter' then '{DEFAULT_PROBLEM_REASON["letter"]}'
                    else '{DEFAULT_PROBLEM_REASON["phone"]}'
                end
            ),
            reported_date,
            'file:' || $file,
            $import_id,
            $now
        from {CHECKED_TABLE}
        where len(codes) = 0
        order by _line
        returning channel
        """,
        {"file": file_name, "import_id": identifier, "now": now},
    ).fetchall()
    recorded: dict[str, int] = {}
    for (channel,) in rows:
        recorded[channel] = recorded.get(channel, 0) + 1
    return dict(sorted(recorded.items()))


# --- shared writing and counting -------------------------------------------------------------


def _quarantine(
    connection: duckdb.DuckDBPyConnection,
    identifier: str,
    file_kind: FileKind,
    file_name: str,
    reference: str,
    unreadable: tuple[Unreadable, ...],
    now: dt.datetime,
) -> int:
    """The bad lines into ops.skip_quarantine: line, reference, codes and messages, never the
    line's contact values (nor, for an unreadable line, its text)."""
    values = {"import_id": identifier, "kind": file_kind, "file": file_name, "now": now}
    inserted = scalar(
        connection,
        f"""
        insert into ops.skip_quarantine (
            import_id, file_kind, file_name, line_number, reference, reason_codes, reasons,
            quarantined_at
        )
        select
            $import_id,
            $kind,
            $file,
            _line,
            left({reference}, {MAX_VALUE_CHARS}),
            codes,
            array_to_string(messages, '; '),
            $now
        from {CHECKED_TABLE}
        where len(codes) > 0
        order by _line
        """,
        values,
    )
    if unreadable:
        connection.executemany(
            "insert into ops.skip_quarantine values (?, ?, ?, ?, NULL, ['unreadable_row'], ?, ?)",
            [
                [identifier, file_kind, file_name, bad.line, f"the line {bad.message}", now]
                for bad in unreadable
            ],
        )
    return inserted + len(unreadable)


def _record_file(
    connection: duckdb.DuckDBPyConnection,
    identifier: str,
    file_kind: FileKind,
    export: ExportFile,
    lines_read: int,
    loaded: int,
    quarantined: int,
    today: dt.date,
    now: dt.datetime,
) -> None:
    connection.execute(
        """
        insert into ops.skip_result_files (
            import_id, file_kind, file_name, content_hash, lines_read, lines_loaded,
            lines_quarantined, imported_on, imported_at
        ) values (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            identifier, file_kind, export.name, export.content_hash, lines_read, loaded,
            quarantined, today, now,
        ],
    )  # fmt: skip


def _reason_counts(connection: duckdb.DuckDBPyConnection, unreadable: int) -> dict[str, int]:
    rows = connection.execute(
        f"select code, count(*) from (select unnest(codes) as code from {CHECKED_TABLE}) "
        "group by code"
    ).fetchall()
    counts = {code: count for code, count in rows}
    if unreadable:
        counts["unreadable_row"] = unreadable
    return dict(sorted(counts.items()))


def _outcome_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    rows = connection.execute(
        f"select field_group, outcome, count(*) from {DECIDED_TABLE} group by all order by all"
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for group, outcome, count in rows:
        counts.setdefault(group, {})[outcome] = count
    return counts


def _request_counts(connection: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    found, not_found = connection.execute(
        f"""
        select
            count(*) filter (where accepted),
            count(*) filter (where not accepted)
        from (
            select request_id, bool_or(outcome = 'accepted') as accepted
            from {DECIDED_TABLE}
            group by request_id
        )
        """
    ).fetchall()[0]
    return int(found), int(not_found)
