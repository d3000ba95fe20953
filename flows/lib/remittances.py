"""Import one remittance file from a collection agency: check every line, load the good ones.

A remittance file (layout v1, docs/remittance-files.md) lists what an agency collected from
placed customers. The file is read with the billing ingest's reader (text columns with a text
editor's line numbers), then checked in set-based SQL:

  1. per line: required fields, a real paid_date not after today, amounts with at most two
     decimals (collected above 0, commission 0 or more and not above collected);
  2. against the agency ledger: the account is placed with this agency on paid_date (and in
     the placement the line names, if any), in the placement's currency, the remittance_id is
     new for this agency and once in the file;
  3. in line order per placement: what the agency collected stays within the placed balance.

Good lines go to `ops.remittances`, bad ones to `ops.remittance_quarantine` with their line and
reasons, and the file to `ops.remittance_files`, all in one transaction. A wrong header, an
unknown agency or a file that is not CSV raises RemittanceFileError and writes nothing. A file
whose content was loaded before for the agency changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

import duckdb

from flows.lib.contract import Column, Entity
from flows.lib.export_files import BatchError, ExportFile, _csv_header
from flows.lib.file_reader import Unreadable, read_export_file, read_table_name
from flows.lib.row_checks import Problem, column_problems, typed_value
from flows.lib.warehouse import scalar

LAYOUT_VERSION = "1"
REMITTANCE_LAYOUT = Entity(
    name="remittances",
    columns=(
        Column("remittance_id"),
        Column("account_id"),
        Column("placement_id", required=False),
        Column("paid_date", "date"),
        Column("collected_amount", "amount"),
        Column("commission_amount", "amount", allow_zero=True),
        Column("currency"),
    ),
    key=("remittance_id",),
)
NEGATIVE_MESSAGE = "is negative; report what was collected and the commission as positive amounts"
REASON_CODES = (
    "missing_value",
    "bad_date",
    "future_date",
    "negative_amount",
    "bad_amount",
    "zero_amount",
    "commission_exceeds_collected",
    "unknown_account",
    "currency_mismatch",
    "duplicate_line",
    "exceeds_balance",
    "unreadable_row",
)


class RemittanceFileError(ValueError):
    """The remittance file cannot be loaded; nothing from it was written."""


@dataclass(frozen=True)
class RemittanceOutcome:
    """What one import did. `status` is `loaded`, or `unchanged` when the same content was
    loaded for this agency before (then every count is 0 and `loaded_at` is that earlier load)."""

    agency_id: str
    file_name: str
    content_hash: str
    status: Literal["loaded", "unchanged"]
    loaded_at: dt.datetime
    lines_read: int = 0
    lines_loaded: int = 0
    lines_quarantined: int = 0
    # lines per reason code; a line with two problems counts under both
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)
    # loaded lines only, per currency (never summed across currencies)
    collected_by_currency: Mapping[str, Decimal] = field(default_factory=dict)
    commission_by_currency: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.status == "loaded"

    def __str__(self) -> str:
        if not self.changed:
            return (
                f"{self.file_name}: already loaded for {self.agency_id} on "
                f"{self.loaded_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; nothing changed."
            )
        parts = [
            f"{self.file_name} ({self.agency_id}): {self.lines_read} lines read, "
            f"{self.lines_loaded} loaded, {self.lines_quarantined} quarantined"
        ]
        if self.quarantined_by_reason:
            reasons = ", ".join(
                f"{code} {count}" for code, count in sorted(self.quarantined_by_reason.items())
            )
            parts.append(f"(reasons: {reasons}; see ops.remittance_quarantine)")
        for currency in sorted(self.collected_by_currency):
            parts.append(
                f"; {currency}: collected {self.collected_by_currency[currency]:,.2f}, "
                f"commission {self.commission_by_currency[currency]:,.2f}"
            )
        return " ".join(parts).replace(" ;", ";")


def import_remittance_file(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    agency_id: str,
    *,
    today: dt.date,
    agency_ids: Collection[str] | None = None,
    now: dt.datetime | None = None,
) -> RemittanceOutcome:
    """Load the remittance file at `path`, sent by `agency_id`. `agency_ids` are the configured
    agencies (default: read from recoup.yaml). Raises RemittanceFileError when the file cannot
    be loaded at all; then nothing is written."""
    known = _configured_agency_ids() if agency_ids is None else set(agency_ids)
    if agency_id not in known:
        listed = ", ".join(sorted(known)) or "none are configured"
        raise RemittanceFileError(
            f"{path.name}: '{agency_id}' is not a configured agency ({listed}); pass the id of "
            "the agency that sent the file, as in recoup.yaml placement.agencies. Nothing from "
            "this file was loaded."
        )
    export = _check_file(path)
    loaded_at = now or dt.datetime.now(dt.UTC)
    earlier = connection.execute(
        "select loaded_at from ops.remittance_files where agency_id = ? and content_hash = ?",
        [agency_id, export.content_hash],
    ).fetchall()
    if earlier:
        return RemittanceOutcome(
            agency_id, path.name, export.content_hash, "unchanged", earlier[0][0]
        )
    try:
        read = read_export_file(connection, export)  # outside the transaction (rowids)
    except BatchError as error:
        raise RemittanceFileError(_file_message(error)) from None
    try:
        _collect_lines(connection, export)
        _check_lines(connection, agency_id, today)
        connection.execute("begin transaction")
        try:
            loaded = _insert_good_lines(connection, agency_id, path.name, loaded_at)
            quarantined = _quarantine_bad_lines(
                connection, agency_id, path.name, read.unreadable, loaded_at
            )
            lines_read = read.rows + len(read.unreadable)
            connection.execute(
                "insert into ops.remittance_files values (?, ?, ?, ?, ?, ?, ?)",
                [
                    agency_id,
                    path.name,
                    export.content_hash,
                    lines_read,
                    loaded,
                    quarantined,
                    loaded_at,
                ],
            )
            by_reason = _reason_counts(connection, len(read.unreadable))
            collected, commission = _totals_by_currency(connection)
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        for table in (read_table_name(export), "_remit_in", "_remit_checked"):
            connection.execute(f"drop table if exists {table}")
    return RemittanceOutcome(
        agency_id=agency_id,
        file_name=path.name,
        content_hash=export.content_hash,
        status="loaded",
        loaded_at=loaded_at,
        lines_read=lines_read,
        lines_loaded=loaded,
        lines_quarantined=quarantined,
        quarantined_by_reason=by_reason,
        collected_by_currency=collected,
        commission_by_currency=commission,
    )


def _configured_agency_ids() -> set[str]:
    from flows.lib.config import load_settings

    return {agency.id for agency in load_settings().placement.agencies}


# --- the file as a whole -------------------------------------------------------------------


def _check_file(path: Path) -> ExportFile:
    """Header and format checks, before anything is read into the warehouse."""
    if not path.is_file():
        raise RemittanceFileError(f"{path}: no such file. Pass the remittance file (CSV) itself.")
    if path.suffix.lower() != ".csv":
        raise RemittanceFileError(
            f"{path.name}: remittance files are CSV (layout v{LAYOUT_VERSION}, named *.csv); "
            "ask the agency for a CSV export. Nothing from this file was loaded."
        )
    try:
        columns = _csv_header(path, path.stat().st_size)
    except BatchError as error:
        raise RemittanceFileError(_file_message(error)) from None
    _check_header(path.name, columns)
    with path.open("rb") as handle:
        content_hash = hashlib.file_digest(handle, "sha256").hexdigest()
    return ExportFile(
        entity=REMITTANCE_LAYOUT,
        path=path,
        file_format="csv",
        columns=columns,
        content_hash=content_hash,
        size_bytes=path.stat().st_size,
    )


def _check_header(file_name: str, columns: tuple[str, ...]) -> None:
    expected = REMITTANCE_LAYOUT.column_names
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    missing = [name for name in REMITTANCE_LAYOUT.required_names if name not in columns]
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
    raise RemittanceFileError(
        f"{file_name}: wrong header for a remittance file (layout v{LAYOUT_VERSION}): "
        f"{'; '.join(parts)}. The header must name these columns: {', '.join(expected)} "
        "(placement_id may be left out). Nothing from this file was loaded."
    )


def _file_message(error: BatchError) -> str:
    return str(error).replace("this batch", "this file").replace("the batch", "the file")


# --- the lines -----------------------------------------------------------------------------


def _collect_lines(connection: duckdb.DuckDBPyConnection, export: ExportFile) -> None:
    """`_remit_in`: every readable line as trimmed text, NULL for an empty field."""
    present = set(export.columns)
    values = ", ".join(
        f"nullif(trim({name}), '') as {name}" if name in present else f"NULL::VARCHAR as {name}"
        for name in REMITTANCE_LAYOUT.column_names
    )
    connection.execute(
        f"create or replace temp table _remit_in as "
        f"select _line, {values} from {read_table_name(export)}"
    )


def _row_problems() -> tuple[str, str]:
    """SQL for the per-line problem codes and messages (the billing export's column rules)."""
    codes, messages = [], []
    for column in REMITTANCE_LAYOUT.columns:
        problems = [
            dataclasses.replace(problem, message=_negative_message(column))
            if problem.code == "negative_amount"
            else problem
            for problem in column_problems(column)
        ]
        if problems:
            codes.append(_first_match(problems, "code_sql"))
            messages.append(_first_match(problems, "message"))
    return ", ".join(codes), ", ".join(messages)


def _negative_message(column: Column) -> str:
    return f"'{column.name} ''' || left({column.name}, 40) || ''' {NEGATIVE_MESSAGE}'"


def _first_match(problems: list[Problem], attribute: str) -> str:
    branches = " ".join(
        f"when {problem.condition} then {getattr(problem, attribute)}" for problem in problems
    )
    return f"case {branches} end"


def _check_lines(connection: duckdb.DuckDBPyConnection, agency_id: str, today: dt.date) -> None:
    """`_remit_checked`: one row per line, typed, with its placement and its problems."""
    codes, messages = _row_problems()
    typed = ", ".join(
        f"{typed_value(column)} as {column.name}" for column in REMITTANCE_LAYOUT.columns
    )
    connection.execute(
        f"""
        create or replace temp table _remit_checked as
        with

        typed as (
            select _line, {typed}, [{codes}] as row_codes, [{messages}] as row_messages
            from _remit_in
        ),

        -- the placement the line is for: this agency's latest placement of the account made on
        -- or before paid_date (the one the line names, when it names one)
        placed as (
            select
                typed._line,
                arg_max(placements.placement_id, placements.placed_date) as found_placement_id
            from typed
            inner join ops.placements as placements
                on placements.agency_id = $agency
                and placements.account_id = typed.account_id
                and placements.placed_date <= typed.paid_date
                and (typed.placement_id is null or placements.placement_id = typed.placement_id)
            group by typed._line
        ),

        loaded_before as (
            select remittance_id, any_value(file_name) as file_name,
                any_value(line_number) as line_number
            from ops.remittances
            where agency_id = $agency
            group by remittance_id
        ),

        located as (
            select
                typed.*,
                placements.placement_id as found_placement_id,
                placements.currency as placement_currency,
                placements.placed_balance,
                first_value(typed._line) over (
                    partition by typed.remittance_id order by typed._line
                ) as first_line_of_id,
                loaded_before.file_name as loaded_in_file,
                loaded_before.line_number as loaded_on_line
            from typed
            left join placed on typed._line = placed._line
            left join ops.placements as placements
                on placed.found_placement_id = placements.placement_id
            left join loaded_before on typed.remittance_id = loaded_before.remittance_id
        ),

        problems as (
            select
                located.* exclude (row_codes, row_messages),
                [
                    case when paid_date > $today then 'future_date' end,
                    case when collected_amount < commission_amount
                        then 'commission_exceeds_collected' end,
                    case when account_id is not null and paid_date is not null
                        and found_placement_id is null then 'unknown_account' end,
                    case when currency <> placement_currency then 'currency_mismatch' end,
                    case when loaded_in_file is not null
                        or (remittance_id is not null and _line > first_line_of_id)
                        then 'duplicate_line' end
                ] as more_codes,
                [
                    case when paid_date > $today then
                        'paid_date ' || strftime(paid_date, '%Y-%m-%d') || ' is after today ('
                        || strftime($today, '%Y-%m-%d') || '); report money already collected'
                    end,
                    case when collected_amount < commission_amount then
                        'commission_amount ' || commission_amount || ' is more than '
                        || 'collected_amount ' || collected_amount || '; the commission is a '
                        || 'share of what was collected'
                    end,
                    case when account_id is not null and paid_date is not null
                        and found_placement_id is null then
                        case when placement_id is null then
                            'account_id ''' || left(account_id, 40) || ''' has no placement with '
                            || $agency || ' made on or before paid_date '
                            || strftime(paid_date, '%Y-%m-%d')
                            || '; check the account id against your placement files'
                        else
                            'placement_id ''' || left(placement_id, 40) || ''' is not a '
                            || 'placement of account ''' || left(account_id, 40) || ''' with '
                            || $agency || ' made on or before paid_date '
                            || strftime(paid_date, '%Y-%m-%d')
                            || '; check both ids against your placement files'
                        end
                    end,
                    case when currency <> placement_currency then
                        'currency ''' || left(currency, 40) || ''' differs from the currency '
                        || placement_currency || ' the account was placed in; report every '
                        || 'amount in the placement''s currency'
                    end,
                    case
                        when loaded_in_file is not null then
                            'remittance_id ''' || left(remittance_id, 40) || ''' was loaded '
                            || 'before (' || loaded_in_file || ', line ' || loaded_on_line
                            || '); each remittance is loaded once: send new lines only'
                        when remittance_id is not null and _line > first_line_of_id then
                            'remittance_id ''' || left(remittance_id, 40) || ''' already '
                            || 'appears on line ' || first_line_of_id || ' of this file; only '
                            || 'the first copy is considered'
                    end
                ] as more_messages,
                row_codes,
                row_messages
            from located
        ),

        listed as (
            select
                * exclude (row_codes, row_messages, more_codes, more_messages),
                list_filter(row_codes || more_codes, lambda x: x is not null) as codes,
                list_filter(row_messages || more_messages, lambda x: x is not null) as messages
            from problems
        )

        select * from listed
        """,
        {"agency": agency_id, "today": today},
    )
    _check_balances(connection)


def _check_balances(connection: duckdb.DuckDBPyConnection) -> None:
    """Add `exceeds_balance`: per placement, in line order, each otherwise good line is added
    to what was collected before (earlier loads and the good lines above it) and set aside
    when the sum would pass the placed balance; a line set aside does not count for the next.
    A recursive walk, one step per line of the placement with the most lines."""
    connection.execute(
        """
        create or replace temp table _remit_over_balance as
        with recursive

        candidates as (
            select
                _line,
                found_placement_id,
                collected_amount,
                placed_balance,
                row_number() over (partition by found_placement_id order by _line) as step
            from _remit_checked
            where len(codes) = 0
        ),

        collected_before as (
            select placement_id, sum(collected_amount) as collected
            from ops.remittances
            where placement_id in (select found_placement_id from candidates)
            group by placement_id
        ),

        walk as (
            select
                candidates.found_placement_id,
                candidates.step,
                candidates._line,
                candidates.placed_balance,
                coalesce(collected_before.collected, 0) as before_line,
                coalesce(collected_before.collected, 0) + candidates.collected_amount
                    > candidates.placed_balance as is_over,
                coalesce(collected_before.collected, 0) + case
                    when coalesce(collected_before.collected, 0) + candidates.collected_amount
                        > candidates.placed_balance then 0
                    else candidates.collected_amount
                end as after_line,
                candidates.collected_amount
            from candidates
            left join collected_before
                on candidates.found_placement_id = collected_before.placement_id
            where candidates.step = 1

            union all

            select
                candidates.found_placement_id,
                candidates.step,
                candidates._line,
                candidates.placed_balance,
                walk.after_line as before_line,
                walk.after_line + candidates.collected_amount > candidates.placed_balance,
                walk.after_line + case
                    when walk.after_line + candidates.collected_amount > candidates.placed_balance
                        then 0
                    else candidates.collected_amount
                end,
                candidates.collected_amount
            from walk
            inner join candidates
                on candidates.found_placement_id = walk.found_placement_id
                and candidates.step = walk.step + 1
        )

        select
            _line,
            'collected_amount ' || collected_amount || ' would bring what was collected on '
            || 'placement ' || found_placement_id || ' to ' || (before_line + collected_amount)
            || ', above its placed balance ' || placed_balance || ' (collected so far: '
            || before_line || '); check the amount, or whether this payment was reported '
            || 'before' as message
        from walk
        where is_over
        """
    )
    connection.execute(
        """
        update _remit_checked as checked
        set codes = ['exceeds_balance'], messages = [over.message]
        from _remit_over_balance as over
        where checked._line = over._line
        """
    )
    connection.execute("drop table _remit_over_balance")


# --- writing -------------------------------------------------------------------------------


def _insert_good_lines(
    connection: duckdb.DuckDBPyConnection, agency_id: str, file_name: str, loaded_at: dt.datetime
) -> int:
    return scalar(
        connection,
        """
        insert into ops.remittances
        select
            $agency || ':' || remittance_id,
            $agency,
            remittance_id,
            found_placement_id,
            account_id,
            paid_date,
            collected_amount,
            commission_amount,
            currency,
            $file,
            _line,
            $loaded_at
        from _remit_checked
        where len(codes) = 0
        order by _line
        """,
        {"agency": agency_id, "file": file_name, "loaded_at": loaded_at},
    )


def _quarantine_bad_lines(
    connection: duckdb.DuckDBPyConnection,
    agency_id: str,
    file_name: str,
    unreadable: tuple[Unreadable, ...],
    quarantined_at: dt.datetime,
) -> int:
    fields = ", ".join(f"{name} := lines.{name}" for name in REMITTANCE_LAYOUT.column_names)
    inserted = scalar(
        connection,
        f"""
        insert into ops.remittance_quarantine
        select
            $agency,
            $file,
            checked._line,
            checked.remittance_id,
            checked.codes,
            array_to_string(checked.messages, '; '),
            to_json(struct_pack({fields})),
            $at
        from _remit_checked as checked
        inner join _remit_in as lines on checked._line = lines._line
        where len(checked.codes) > 0
        order by checked._line
        """,
        {"agency": agency_id, "file": file_name, "at": quarantined_at},
    )
    for bad in unreadable:
        connection.execute(
            "insert into ops.remittance_quarantine values "
            "(?, ?, ?, NULL, ['unreadable_row'], ?, to_json({'raw_line': ?}), ?)",
            [agency_id, file_name, bad.line, bad.message, bad.raw_line, quarantined_at],
        )
    return inserted + len(unreadable)


def _reason_counts(connection: duckdb.DuckDBPyConnection, unreadable: int) -> dict[str, int]:
    rows = connection.execute(
        """
        select code, count(*)
        from (select unnest(codes) as code from _remit_checked)
        group by code
        """
    ).fetchall()
    counts = {code: count for code, count in rows}
    if unreadable:
        counts["unreadable_row"] = unreadable
    return dict(sorted(counts.items()))


def _totals_by_currency(
    connection: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    rows = connection.execute(
        """
        select currency, sum(collected_amount), sum(commission_amount)
        from _remit_checked
        where len(codes) = 0
        group by currency
        order by currency
        """
    ).fetchall()
    collected = {currency: Decimal(total).quantize(Decimal("0.01")) for currency, total, _ in rows}
    commission = {currency: Decimal(total).quantize(Decimal("0.01")) for currency, _, total in rows}
    return collected, commission
