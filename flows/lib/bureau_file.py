"""The monthly Metro 2 file: decide (bureau_data), render (metro2_layout), validate
(metro2_validate), then publish and record, or publish nothing.

One file per period, `out/credit_bureau/<YYYY-MM>/metro2_<YYYYMM>.txt`, owner-readable only:
a header, one base segment per reported account (K1 in third-party mode, L1 when the
identification number changed) and a trailer with the totals. Records are ordered by account
number and every date and time in the file comes from the date of account information, so
generating a period again from the same data writes the same bytes.

Exactly once per account per period: `ops.bureau_records` holds one row per reported account
per period (the DOFD, status, compliance code and profile the bureaus now hold: the next
period starts from it); regenerating a period replaces that period's rows, never an earlier
period's. `ops.bureau_not_reported` lists the accounts held back, with the reason.

SSNs and dates of birth are decrypted from the restricted raw table (`raw.customers_latest`,
flows/lib/pii.py) here only, kept in memory for the rendering and never logged, stored or
shown; the warehouse keeps them encrypted only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from nameparser import HumanName

from flows.lib.bureau_data import BUILD_DATES_SQL, bureau_rows, payment_history_rows
from flows.lib.bureau_records import (
    LATEST_DOFD_SQL,
    RECORD_COLUMNS,
    ensure_bureau_schema,
)
from flows.lib.config import Settings
from flows.lib.metro2_layout import (
    BASE,
    HEADER,
    K1,
    L1,
    TRAILER,
    TRAILER_STATUSES,
    fold_text,
    render,
    whole_dollars,
)
from flows.lib.metro2_validate import STATES, check_file, plausible_ssn
from flows.lib.monthly_report import parse_month
from flows.lib.output_files import csv_bytes, fsync_folder, owner_only_folder, write_atomically
from flows.lib.pii import RestrictedIdentity, keyring_for, restricted_identities

NOT_REPORTED_FILE = "not_reported.csv"
MAX_AMOUNT = 999_999_999  # nine digits: larger amounts are capped (reference §2)
GENERATIONS = {
    "JR": "J", "SR": "S", "II": "2", "III": "3", "IV": "4", "V": "5",
    "VI": "6", "VII": "7", "VIII": "8", "IX": "9",
}  # fmt: skip
NAME_CHARACTERS = re.compile(r"[^A-Z \-]")
TERMS = {"O": "001", "R": "REV", "C": "LOC"}


class BureauError(RuntimeError):
    """The period cannot be reported (not over, never built); nothing was written."""


@dataclass
class BureauOutcome:
    """What one generation of a period's file did."""

    period: str
    date_of_account_information: dt.date
    path: Path
    file_sha256: str
    by_status: dict[str, int] = field(default_factory=dict)
    not_reported: dict[str, int] = field(default_factory=dict)
    id_changes: int = 0
    replaced: bool = False  # the period had been generated before
    previous_sha256: str | None = None  # the file it replaced

    @property
    def records(self) -> int:
        return sum(self.by_status.values())

    def __str__(self) -> str:
        statuses = ", ".join(f"{code} {n:,}" for code, n in sorted(self.by_status.items()))
        held = ", ".join(f"{reason} {n:,}" for reason, n in sorted(self.not_reported.items()))
        again = ""
        if self.replaced:
            same = self.previous_sha256 == self.file_sha256
            again = " (generated again: " + (
                "the same bytes as before)" if same else "it replaces the earlier file)"
            )
        return (
            f"Metro 2 file for {self.period}{again}: {self.records:,} accounts as of "
            f"{self.date_of_account_information} ({statuses or 'none'}); not reported: "
            f"{held or 'none'}; written to {self.path} (sha256 {self.file_sha256[:12]})"
        )


def generate_bureau_file(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    period: str,
    *,
    today: dt.date,
    now: dt.datetime | None = None,
) -> BureauOutcome:
    """Write and record the Metro 2 file of `period` (YYYY-MM), or raise and write nothing:
    BureauError when the period cannot be reported, Metro2Invalid when the file breaks a
    Metro 2 rule (the message names record and field)."""
    period_start, period_end = parse_month(period)
    period = f"{period_start:%Y-%m}"  # " 2026-11" and "2026-11" are one period
    if period_end >= today:
        raise BureauError(
            f"{period} is not over yet (it ends {period_end}); report a period after its last "
            "day. Nothing was written."
        )
    ensure_bureau_schema(connection)
    from flows.lib.contact_data import refuse_unfinished_build

    refuse_unfinished_build(
        connection,
        would=f"the Metro 2 file for {period} could report what a half-finished build left",
        nothing="no file was written",
    )
    doai = _date_of_account_information(connection, period_start, period_end)
    third_party = settings.collector_type == "third_party"
    rows = bureau_rows(
        connection,
        period=period,
        period_start=period_start,
        doai=doai,
        third_party=third_party,
        wait_days=settings.bureau.furnish_wait_days,
        timezone=settings.company.timezone,
    )
    identities = restricted_identities(
        connection,
        keyring_for(settings),
        sorted({row["customer_id"] for row in rows}),
        needed_for=f"the Metro 2 file for {period}",
    )
    not_reported: dict[str, str] = {}
    reported: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for row in rows:
        reason = row["held_reason"]
        identity = None if reason else _identity(row, identities.get(row["customer_id"]))
        if isinstance(identity, str):
            reason = identity
        if reason:
            not_reported[row["account_id"]] = reason
        else:
            reported.append((row, identity or {}))
    accounts = [row["account_id"] for row, _ in reported]
    profiles = payment_history_rows(connection, period_start=period_start, account_ids=accounts)
    lines, stored, counts = _render_records(settings, reported, profiles, doai, third_party)
    if not reported:
        raise BureauError(
            f"{period}: no account has anything to report as of {doai}; no file was written."
        )
    header = _header(settings, doai)
    data = "\n".join([header, *lines, _trailer(counts, len(reported))]).encode("ascii") + b"\n"
    check_file(data, today=today, previous_dofd=_previous_dofd(connection, period))
    digest = hashlib.sha256(data).hexdigest()
    folder = settings.path("out") / "credit_bureau" / period
    path = folder / f"metro2_{period_start:%Y%m}.txt"
    generated_at = now or dt.datetime.now(dt.UTC)
    # the files are written under pending names, the records committed, then the files
    # renamed into place: a failure before the commit publishes nothing and records nothing
    pending = _stage(folder, {path.name: data, NOT_REPORTED_FILE: _not_reported_csv(not_reported)})
    try:
        previous_sha256 = _store(
            connection, period, doai, path, digest, stored, not_reported, generated_at
        )
    except BaseException:
        for staged in pending.values():
            staged.unlink(missing_ok=True)
        raise
    for name, staged in pending.items():
        os.replace(staged, folder / name)
    fsync_folder(folder)
    return BureauOutcome(
        period=period,
        date_of_account_information=doai,
        path=path,
        file_sha256=digest,
        by_status=dict(Counter(record["account_status"] for record in stored)),
        not_reported=dict(Counter(not_reported.values())),
        id_changes=counts["total_change_segments"],
        replaced=previous_sha256 is not None,
        previous_sha256=previous_sha256,
    )


# --- inputs ---------------------------------------------------------------------------------


def _date_of_account_information(
    connection: duckdb.DuckDBPyConnection, period_start: dt.date, period_end: dt.date
) -> dt.date:
    """The last date in the period the marts were built for: the file's as-of date."""
    try:
        [(doai,)] = connection.execute(
            f"select max(as_of_date) from ({BUILD_DATES_SQL}) where as_of_date between ? and ?",
            [period_start, period_end],
        ).fetchall()
    except duckdb.CatalogException:
        doai = None
    if doai is None:
        raise BureauError(
            f"the marts were never built for a date in {period_start:%Y-%m}; run the daily run "
            f"for its last day first (`recoup run --as-of {period_end}`). Nothing was written."
        )
    return doai


def _previous_dofd(connection: duckdb.DuckDBPyConnection, period: str) -> dict[str, dt.date]:
    """The DOFD the bureaus hold per account: the latest earlier record's, when it had one."""
    rows = connection.execute(LATEST_DOFD_SQL, {"period": period}).fetchall()
    return {account: dofd for account, dofd in rows if dofd is not None}


def _valid_ssn(ssn: str) -> bool:
    """An SSN as stored (dashes allowed) that Metro 2 may carry (metro2_validate's rule)."""
    digits = re.sub(r"\D", "", ssn or "")
    return len(digits) == 9 and plausible_ssn(digits)


def _identity(
    row: Mapping[str, Any], restricted: RestrictedIdentity | None
) -> dict[str, Any] | str:
    """The consumer fields of the base segment, or why the account cannot be reported."""
    ssn = restricted.ssn if restricted and _valid_ssn(restricted.ssn or "") else None
    born = restricted.date_of_birth if restricted else None
    if born is not None and not (dt.date(1900, 1, 1) <= born <= row["opened_date"]):
        born = None  # a date of birth after the account was opened is not one to report
    if ssn is None and born is None:
        return "no_ssn_or_date_of_birth"
    name = HumanName(str(row["full_name"] or ""))
    surname = _name_part(name.last)
    first = _name_part(name.first)
    postal = re.sub(r"\D", "", str(row["postal_code"] or ""))
    state = str(row["state"] or "").strip().upper()
    line1 = fold_text(row["address_line1"] or "").strip()
    city = fold_text(row["city"] or "").strip()
    if not (surname and first and line1 and city) or state not in STATES:
        return "incomplete_name_or_address"
    if len(postal) not in (5, 9):
        return "incomplete_name_or_address"
    phone = re.sub(r"\D", "", str(row["phone"] or ""))
    if len(phone) == 11 and phone.startswith("1"):
        phone = phone[1:]
    suffix = fold_text(name.suffix).replace(".", "").strip()
    return {
        "surname": surname,
        "first_name": first,
        "middle_name": _name_part(name.middle),
        "generation_code": GENERATIONS.get(suffix.split(" ")[0] if suffix else ""),
        "social_security_number": int(re.sub(r"\D", "", ssn)) if ssn else None,
        "date_of_birth": born,
        "telephone_number": int(phone) if len(phone) == 10 else None,
        "country_code": "US",
        "first_line_of_address": line1,
        "second_line_of_address": fold_text(row["address_line2"] or "").strip(),
        "city": city,
        "state": state,
        "postal_zip_code": postal,
    }


def _name_part(text: str) -> str:
    """Upper case letters, spaces and hyphens only (reference §2: names)."""
    return " ".join(NAME_CHARACTERS.sub("", fold_text(text)).split())


# --- rendering ------------------------------------------------------------------------------


def _header(settings: Settings, doai: dt.date) -> str:
    company, bureau = settings.company, settings.bureau
    address = bureau.reporter_address or " ".join(
        part
        for part in (
            company.address_line1,
            company.address_line2,
            company.city,
            company.state,
            company.postal_code,
        )
        if part
    )
    phone = re.sub(r"\D", "", bureau.reporter_telephone or company.phone)[-10:]
    return render(HEADER, {
        "record_descriptor_word": HEADER.length,
        "record_identifier": "HEADER",
        "innovis_program_identifier": bureau.innovis_program_identifier,
        "equifax_program_identifier": bureau.equifax_program_identifier,
        "experian_program_identifier": bureau.experian_program_identifier,
        "transunion_program_identifier": bureau.transunion_program_identifier,
        "activity_date": doai,
        "date_created": doai,
        "program_date": bureau.program_date,
        "program_revision_date": bureau.program_revision_date,
        "reporter_name": bureau.reporter_name or company.name,
        "reporter_address": address,
        "reporter_telephone_number": int(phone) if len(phone) == 10 else None,
        "software_vendor_name": "RECOUP",
        "software_version_number": "1",
    })  # fmt: skip


def _render_records(
    settings: Settings,
    reported: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    profiles: Mapping[str, str],
    doai: dt.date,
    third_party: bool,
) -> tuple[list[str], list[dict[str, Any]], Counter[str]]:
    """One line per account (base plus K1/L1), the rows to store, and the trailer counts."""
    bureau = settings.bureau
    time_stamp = dt.datetime.combine(doai, dt.time(23, 59, 59))

    def reporting(segment: str) -> tuple[str, str]:
        """Portfolio and account type: an agency's 48; else the segment's, or the default."""
        if third_party:
            return "O", "48"
        chosen = bureau.segments.get(segment)
        if chosen is None:
            return bureau.portfolio_type, bureau.account_type
        return chosen.portfolio_type, chosen.account_type

    creditor = settings.company.creditor_name or settings.company.name
    counts: Counter[str] = Counter()
    lines, stored = [], []
    for row, identity in reported:
        status = row["account_status"]
        portfolio, account_type = reporting(row["segment"])
        previous_id = row["previous_identification_number"]
        reported_id = previous_id or bureau.identification_number
        balance = _money(row["balance"]) if status not in ("13", "62", "64", "DF") else 0
        values = {
            **identity,
            "record_descriptor_word": 0,
            "processing_indicator": 1,
            "time_stamp": time_stamp,
            "correction_indicator": 0,
            "identification_number": reported_id,
            "consumer_account_number": row["account_id"],
            "portfolio_type": portfolio,
            "account_type": account_type,
            "date_opened": row["opened_date"],
            "credit_limit": 0 if third_party else _money(row["credit_limit"]),
            "highest_credit": _money(row["highest_balance"]),
            "terms_duration": TERMS[portfolio],
            "actual_payment_amount": _money(row["paid_this_period"]),
            "account_status": status,
            "payment_rating": row["payment_rating"],
            "payment_history_profile": profiles[row["account_id"]],
            "special_comment": row["special_comment"],
            "compliance_condition_code": row["compliance_condition_code"],
            "current_balance": balance,
            "amount_past_due": _money(row["amount_past_due"]),
            "original_charge_off_amount": _money(row["charge_off_amount"]),
            "date_of_account_information": doai,
            "date_of_first_delinquency": row["date_of_first_delinquency"],
            "date_closed": row["date_closed"],
            "date_of_last_payment": row["last_payment_date"],
            "ecoa_code": row["ecoa_code"],
            "consumer_information_indicator": row["consumer_information_indicator"],
        }
        segments = []
        if third_party:
            segments.append(render(K1, {
                "segment_identifier": "K1",
                "original_creditor_name": creditor,
                "creditor_classification": bureau.creditor_classification,
            }))  # fmt: skip
            counts["total_original_creditor_segments"] += 1
        if previous_id and previous_id != bureau.identification_number:
            segments.append(render(L1, {
                "segment_identifier": "L1",
                "change_indicator": 2,
                "new_identification_number": bureau.identification_number,
            }))  # fmt: skip
            counts["total_change_segments"] += 1
        length = BASE.length + sum(len(segment) for segment in segments)
        values["record_descriptor_word"] = length
        lines.append(render(BASE, values) + "".join(segments))
        counts[f"total_status_code_{status.lower()}"] += 1
        if identity.get("social_security_number"):
            counts["total_ssns_base_segments"] += 1
        if identity.get("date_of_birth"):
            counts["total_dates_of_birth_base_segments"] += 1
        if identity.get("telephone_number"):
            counts["total_telephone_numbers_all_segments"] += 1
        stored.append({
            "account_id": row["account_id"],
            "customer_id": row["customer_id"],
            "identification_number": bureau.identification_number,
            "account_status": status,
            "payment_rating": row["payment_rating"],
            "payment_history_profile": profiles[row["account_id"]],
            "special_comment": row["special_comment"],
            "compliance_condition_code": row["compliance_condition_code"],
            "consumer_information_indicator": row["consumer_information_indicator"],
            "ecoa_code": row["ecoa_code"],
            "current_balance": balance,
            "amount_past_due": values["amount_past_due"],
            "highest_credit": values["highest_credit"],
            "original_charge_off_amount": values["original_charge_off_amount"],
            "date_of_first_delinquency": row["date_of_first_delinquency"],
            "date_of_account_information": doai,
            "date_closed": row["date_closed"],
            "date_of_last_payment": row["last_payment_date"],
        })  # fmt: skip
    return lines, stored, counts


def _trailer(counts: Mapping[str, int], bases: int) -> str:
    values: dict[str, object] = {
        "record_descriptor_word": TRAILER.length,
        "record_identifier": "TRAILER",
        "total_base_records": bases,
        "block_count": bases + 2,
        **{f"total_status_code_{code.lower()}": 0 for code in TRAILER_STATUSES},
        **counts,
    }
    values["total_ssns_all_segments"] = counts.get("total_ssns_base_segments", 0)
    values["total_dates_of_birth_all_segments"] = counts.get(
        "total_dates_of_birth_base_segments", 0
    )
    return render(TRAILER, values)


def _money(amount: object) -> int:
    return min(whole_dollars(amount), MAX_AMOUNT)  # type: ignore[arg-type]


# --- publishing -----------------------------------------------------------------------------


def _stage(folder: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Each file written in full (owner-only) under a pending name in `folder`."""
    owner_only_folder(folder)
    return {
        name: write_atomically(folder / f".{name}.pending", data) for name, data in files.items()
    }


def _not_reported_csv(not_reported: Mapping[str, str]) -> bytes:
    return csv_bytes(("account_id", "reason"), sorted(not_reported.items()))


def _store(
    connection: duckdb.DuckDBPyConnection,
    period: str,
    doai: dt.date,
    path: Path,
    digest: str,
    stored: Sequence[Mapping[str, Any]],
    not_reported: Mapping[str, str],
    generated_at: dt.datetime,
) -> str | None:
    """Replace the period's records in one transaction; the sha256 of the file it replaces."""
    connection.execute("begin transaction")
    try:
        before = connection.execute(
            "select file_sha256 from ops.bureau_files where period = ?", [period]
        ).fetchall()
        for table in ("bureau_records", "bureau_not_reported", "bureau_files"):
            connection.execute(f"delete from ops.{table} where period = ?", [period])
        if stored:
            extra = {"period": period, "file_sha256": digest, "generated_at": generated_at}
            table = pa.table({
                column: [extra[column]] * len(stored) if column in extra
                else [record[column] for record in stored]
                for column in RECORD_COLUMNS
            })  # fmt: skip
            connection.register("_bureau_records", table)
            connection.execute(
                f"insert into ops.bureau_records ({', '.join(RECORD_COLUMNS)}) "
                f"select {', '.join(RECORD_COLUMNS)} from _bureau_records"
            )
            connection.unregister("_bureau_records")
        if not_reported:
            connection.executemany(
                "insert into ops.bureau_not_reported values (?, ?, ?)",
                [[period, account, reason] for account, reason in sorted(not_reported.items())],
            )
        connection.execute(
            "insert into ops.bureau_files values (?, ?, ?, ?, ?, ?)",
            [period, doai, str(path), digest, len(stored), generated_at],
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return before[0][0] if before else None
