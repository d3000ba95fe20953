"""Validate a Metro 2 credit-bureau file (426-byte character format) before it leaves recoup.

moov-io/metro2's validator is structural only (reference §6.5: no DOFD, K1, future-date, state or
upper-case checks, and a CLI that always exits 0), so recoup judges its own files: the structure
and field types of §3 and §6, the code lists of §4, the collection rules of §5.1 and the
cross-field rules of §5.3, and the trailer totals recomputed from the records.

The file is read the way recoup writes it (`bureau_file`): records separated by `\\n`, no BDW,
each record led by its RDW (its own length including appended segments), header first, bases
(each followed by J1*, J2*, K1, K2, L1 in that order) and the trailer last.

Every problem names its record (line number, header = 1), segment and field. A field gets at most
one problem (the first found, type problems before rules), so one bad value does not bury the
file in echoes. Checking stops after `MAX_PROBLEMS`: a file that broken has one cause, and a
million-record file must still be judged in seconds. SSNs and dates of birth are never quoted.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from flows.lib.metro2_layout import (
    ALLOWED_TEXT,
    APPENDED,
    APPENDED_ORDER,
    BASE,
    HEADER,
    J1,
    J2,
    K1,
    K2,
    L1,
    TRAILER,
    TRAILER_STATUSES,
    Segment,
)

__all__ = [
    "MAX_PROBLEMS",
    "Metro2Invalid",
    "Problem",
    "check_file",
    "trailer_counts",
    "validate_file",
]

MAX_PROBLEMS = 1000
SHOWN_PROBLEMS = 5

_SEGMENTS: dict[str, Segment] = {"header": HEADER, "base": BASE, "trailer": TRAILER, **APPENDED}


@dataclass(frozen=True)
class Problem:
    record: int  # 1-based line number in the file (header = 1)
    segment: str  # "header", "base", "J1", "J2", "K1", "K2", "L1", "trailer" or "file"
    field: str | None  # a metro2_layout field name; None for whole-record and file problems
    message: str
    account: str | None = None  # the base's consumer account number, stripped

    def __str__(self) -> str:
        where = self.segment if self.account is None else f"{self.segment}, account {self.account}"
        if self.field is None:
            return f"record {self.record} ({where}): {self.message}"
        segment = _SEGMENTS.get(self.segment)
        names = () if segment is None else (field.name for field in segment.fields)
        span = f" ({segment.field(self.field).span})" if segment and self.field in names else ""
        return f"record {self.record} ({where}): {self.field}{span}: {self.message}"


class Metro2Invalid(ValueError):
    """The file breaks Metro 2 rules; `problems` lists each, and str() names the first ones (record
    and field), so a failed run's log says where to look without a second tool."""

    problems: list[Problem]

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(problem) for problem in self.problems[:SHOWN_PROBLEMS])
        more = len(self.problems) - SHOWN_PROBLEMS
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(
            f"the Metro 2 file is invalid ({len(self.problems)} problems): {shown}{tail}"
        )


# --- code lists (reference §4) ------------------------------------------------------------


def _codes(*codes: str, width: int = 2) -> frozenset[str]:
    """Codes as they stand in their field: one-letter codes of a 2-character field are padded."""
    return frozenset(code.ljust(width) for code in codes)


ACCOUNT_STATUSES = frozenset(TRAILER_STATUSES)  # the trailer counts every status of §4.1
RATED_STATUSES = frozenset({"05", "13", "65", "88", "89", "94", "95"})
PAYMENT_RATINGS = frozenset("0123456GL")
DELINQUENT_RATINGS = frozenset("123456GL")
PAST_DUE_STATUSES = frozenset({"71", "78", "80", "82", "83", "84"})
ZERO_BALANCE_STATUSES = frozenset({"13", "61", "62", "63", "64", "65"})
CHARGE_OFF_STATUSES = frozenset({"64", "97"})
DOFD_STATUSES = frozenset(
    {"61", "62", "63", "64", "65", "88", "89", "93", "94", "95", "96", "97"} | PAST_DUE_STATUSES
)
PHP_CODES = frozenset("0123456BDEGHJKL")
PORTFOLIO_TYPES = frozenset("CIMOR")
ACCOUNT_TYPES = frozenset({
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "0A", "0C", "0F", "0G", "10", "11", "12",
    "13", "15", "17", "18", "19", "20", "25", "26", "29", "2A", "2C", "37", "3A", "43", "47", "48",
    "4D", "50", "5A", "5B", "65", "66", "67", "68", "69", "6A", "6B", "6D", "70", "71", "72", "73",
    "74", "75", "77", "7A", "7B", "89", "8A", "8B", "90", "91", "92", "93", "95", "9A", "9B",
})  # fmt: skip
COLLECTION_ACCOUNT_TYPES = frozenset({"48", "0C", "77"})
COLLECTION_STATUSES = frozenset({"93", "62", "DA", "DF"})
TERMS_FREQUENCIES = frozenset("DPWBEMLQTSY ")
SPECIAL_COMMENTS = _codes(
    "", "B", "C", "H", "I", "M", "O", "S", "V", "AB", "AC", "AH", "AI", "AM", "AN", "AO", "AP",
    "AS", "AT", "AU", "AV", "AW", "AX", "AZ", "BA", "BB", "BC", "BD", "BE", "BF", "BG", "BH", "BI",
    "BJ", "BK", "BL", "BN", "BO", "BP", "BS", "BT", "CH", "CI", "CJ", "CK", "CL", "CM", "CN", "CO",
    "CP", "CS", "DE",
)  # fmt: skip
COMPLIANCE_CONDITIONS = _codes("", "XA", "XB", "XC", "XD", "XE", "XF", "XG", "XH", "XJ", "XR")
CLOSED_AT_CONSUMERS_REQUEST = frozenset({"XA", "XD", "XE", "XJ"})
ECOA_CODES = frozenset("12357TWXZ")
NO_IDENTITY_ECOA = frozenset("WZ")  # a business, or a consumer being deleted
CONSUMER_INFORMATION = _codes("", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "1A", "2A")
BANKRUPTCY_INFORMATION = _codes(*"ABCDEFGHZVWXY", "1A")
GENERATION_CODES = frozenset("JS23456789 ")
INTEREST_TYPES = frozenset("FV ")
ADDRESS_INDICATORS = frozenset("CYNMSBUDP ")
RESIDENCE_CODES = frozenset("OR ")
STATES = frozenset({
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC",
    "AS", "GU", "MP", "PR", "VI",  # territories
    "AA", "AE", "AP",  # military
})  # fmt: skip
CREDITOR_CLASSIFICATIONS = frozenset(f"{number:02d}" for number in range(1, 16))
K2_INDICATORS = frozenset("129")
L1_INDICATORS = frozenset("123")

ZERO_DATE = "00000000"
NO_SSNS = frozenset({"000000000", "999999999"})
SENSITIVE = frozenset({"social_security_number", "date_of_birth"})

_POSTAL_CODE = re.compile(r"[0-9]{5}(?:[0-9]{4}| {4})")
_COUNTRY_CODE = re.compile(r"[A-Z]{2}| {2}")
_TERMS_DURATION = re.compile(r"LOC|REV|[0-9]+ *")
_PAYMENT_HISTORY = re.compile(r"[0-6DEGHJKL]*B*")
_EMBEDDED_B = re.compile(r"B+[^B]")
_DIGITS = re.compile(r"[0-9]*")
_TEXT_CLASS = "[" + ALLOWED_TEXT.pattern.removeprefix("[^")
_TYPE_PATTERNS = {"AN": _TEXT_CLASS, "N": "[0-9]", "DATE": "[0-9]", "TIMESTAMP": "[0-9]"}


class _Full(Exception):
    """Raised inside the checks when enough problems are collected to stop reading."""


# --- reading values -----------------------------------------------------------------------


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


@functools.lru_cache(maxsize=1 << 16)
def _date(text: str) -> dt.date | None:
    """A MMDDYYYY date; None for zeros or an impossible date. Cached: a file's dates repeat."""
    if len(text) != 8 or not _is_digits(text):
        return None
    try:
        return dt.date(int(text[4:]), int(text[:2]), int(text[2:4]))
    except ValueError:
        return None


def _time_stamp(text: str) -> dt.date | None:
    """The day of a MMDDYYYYHHMMSS time stamp, None if it is not a real moment."""
    day = _date(text[:8])
    if day is None or text[8:10] > "23" or text[10:12] > "59" or text[12:14] > "59":
        return None
    return day


def _shown(value: str) -> str:
    """A field's value as quoted in a message: trailing blanks cut, non-ASCII escaped."""
    text = value.rstrip(" ")
    return ascii(text) if text else "blank"


def _non_ascii(value: str) -> str:
    byte = next(char for char in value if ord(char) > 127)
    return f"non-ASCII byte 0x{ord(byte):02X} in {_shown(value)}"


def _type_problem(kind: str, value: str, sensitive: bool) -> str | None:
    """Why a value does not fit its field's kind (dates are checked as dates separately)."""
    if not value.isascii():
        return "has a non-ASCII byte" if sensitive else _non_ascii(value)
    if kind == "AN":
        found = set(ALLOWED_TEXT.findall(value))
        if not found:
            return None
        if any(char.islower() for char in found):
            return f"{_shown(value)} has lower case; Metro 2 text is upper case"
        return f"{_shown(value)} has characters Metro 2 does not allow: {''.join(sorted(found))!r}"
    if _DIGITS.fullmatch(value):
        return None
    shown = "the value" if sensitive else _shown(value)
    if kind == "N":
        return f"{shown} is not a number (digits only, zero-filled)"
    layout = "MMDDYYYY" if kind == "DATE" else "MMDDYYYYHHMMSS"
    return f"{shown} is not a date ({layout} digits, zeros when none)"


def plausible_ssn(ssn: str) -> bool:
    """Nine digits the SSA could have issued: no 000, 666 or 9xx (ITIN) area, no 00 group,
    no 0000 serial. The writer sends only these as SSNs; the validator rejects any other."""
    area = ssn[:3]
    return area not in ("000", "666") and area < "900" and ssn[3:5] != "00" and ssn[5:] != "0000"


def _counts_as_ssn(ssn: str) -> bool:
    return ssn not in NO_SSNS and _is_digits(ssn)


def _counts_as_date(text: str) -> bool:
    return text != ZERO_DATE and _is_digits(text)


# --- compiled layouts ---------------------------------------------------------------------


Codes = tuple[tuple[str, frozenset[str], str], ...]  # field, its codes, what they are


class _Layout:
    """One segment compiled for speed: every field sliced in one call, one regex that passes a
    well-typed segment at once (field-by-field type checks run only on a broken segment), and
    its required fields and code lists as index tables."""

    def __init__(self, segment: Segment, required: tuple[str, ...] = (), codes: Codes = ()) -> None:
        self.segment = segment
        self.name = segment.name
        self.row = namedtuple(f"{segment.name}_fields", [f.name for f in segment.fields])  # type: ignore[misc]
        self.slices = itemgetter(*(slice(f.start - 1, f.end) for f in segment.fields))
        index = {field.name: number for number, field in enumerate(segment.fields)}
        empty = {f.name: (" " if f.kind == "AN" else "0") * f.length for f in segment.fields}
        self.required = tuple((index[name], name, empty[name]) for name in required)
        self.codes = tuple((index[name], name, values, what) for name, values, what in codes)
        self.typed: list[tuple[int, str, str]] = []
        self.dates: list[tuple[int, str, bool]] = []
        parts = []
        for number, field in enumerate(segment.fields):
            if field.name in _FIXED:
                parts.append(f".{{{field.length}}}")
                continue
            parts.append(f"{_TYPE_PATTERNS[field.kind]}{{{field.length}}}")
            self.typed.append((number, field.name, field.kind))
            if field.kind in ("DATE", "TIMESTAMP"):
                self.dates.append((number, field.name, field.kind == "TIMESTAMP"))
        self.well_typed = re.compile("".join(parts), re.DOTALL)

    def split(self, text: str) -> Any:
        return self.row._make(self.slices(text))


# checked by the structure, not as values
_FIXED = frozenset({"record_descriptor_word", "record_identifier", "segment_identifier"})
_CONSUMER_CODES: Codes = (
    ("ecoa_code", ECOA_CODES, "an ECOA code (1, 2, 3, 5, 7, T, W, X, Z)"),
    ("generation_code", GENERATION_CODES, "J, S, 2-9 or blank"),
    ("consumer_information_indicator", CONSUMER_INFORMATION, "a consumer information indicator"),
)
_ADDRESS = ("first_line_of_address", "city", "state", "postal_zip_code")
_ADDRESS_CODES: Codes = (
    ("state", STATES, "a USPS state code"),
    ("address_indicator", ADDRESS_INDICATORS, "an address indicator"),
    ("residence_code", RESIDENCE_CODES, "O, R or blank"),
)
_HEADER = _Layout(
    HEADER, required=("activity_date", "date_created", "reporter_name", "reporter_address")
)
_BASE = _Layout(
    BASE,
    required=(
        "date_opened", "date_of_account_information", "surname", "first_name", "ecoa_code",
        *_ADDRESS,
    ),
    codes=(
        ("processing_indicator", frozenset("1"), "1"),
        ("correction_indicator", frozenset("01"), "0 or 1"),
        ("portfolio_type", PORTFOLIO_TYPES, "a portfolio type (C, I, M, O, R)"),
        ("account_type", ACCOUNT_TYPES, "an account type"),
        ("terms_frequency", TERMS_FREQUENCIES, "a terms frequency"),
        ("account_status", ACCOUNT_STATUSES, "an account status"),
        ("special_comment", SPECIAL_COMMENTS, "a special comment"),
        ("compliance_condition_code", COMPLIANCE_CONDITIONS, "a compliance condition code"),
        ("interest_type_indicator", INTEREST_TYPES, "F, V or blank"),
        *_CONSUMER_CODES,
        *_ADDRESS_CODES,
    ),
)  # fmt: skip
_TRAILER = _Layout(TRAILER)
_K1_CODES: Codes = (
    ("creditor_classification", CREDITOR_CLASSIFICATIONS, "a creditor classification (01-15)"),
)
_K2_CODES: Codes = (
    ("purchased_sold_indicator", K2_INDICATORS, "a purchased/sold indicator (1, 2, 9)"),
)
_L1_CODES: Codes = (("change_indicator", L1_INDICATORS, "a change indicator (1, 2, 3)"),)
_APPENDED = {
    "J1": _Layout(J1, required=("surname", "first_name", "ecoa_code"), codes=_CONSUMER_CODES),
    "J2": _Layout(
        J2, required=("surname", "ecoa_code", *_ADDRESS), codes=_CONSUMER_CODES + _ADDRESS_CODES
    ),
    "K1": _Layout(K1, required=("original_creditor_name",), codes=_K1_CODES),
    "K2": _Layout(K2, codes=_K2_CODES),
    "L1": _Layout(L1, codes=_L1_CODES),
}
_RANK = {name: rank for rank, name in enumerate(APPENDED_ORDER)}
_REPEATABLE = frozenset({"J1", "J2"})
_ALWAYS_ZERO = (
    "total_employment_segments",
    "total_mortgage_information_segments",
    "total_specialized_payment_segments",
)


def _split_appended(line: str) -> tuple[list[tuple[str, int, str]], int]:
    """The appended segments after a base as (identifier, offset, text), and where they end:
    short of the line's end when unknown or cut-off bytes follow."""
    found = []
    position, end = BASE.length, len(line)
    while position < end:
        name = line[position : position + 2]
        layout = _APPENDED.get(name)
        if layout is None or position + layout.segment.length > end:
            break
        stop = position + layout.segment.length
        found.append((name, position, line[position:stop]))
        position = stop
    return found, position


# --- trailer totals -----------------------------------------------------------------------


class _Tally:
    """The trailer's totals, counted as bases and their segments go by (reference §3.11, §6.4)."""

    def __init__(self) -> None:
        self.bases = 0
        self.statuses = dict.fromkeys(TRAILER_STATUSES, 0)
        self.segments = dict.fromkeys(APPENDED_ORDER, 0)
        self.ecoa_z = 0
        self.ssns = {"base": 0, "J1": 0, "J2": 0}
        self.births = {"base": 0, "J1": 0, "J2": 0}
        self.phones = 0

    def consumer(self, segment: str, ecoa: str, ssn: str, birth: str, phone: str) -> None:
        if ecoa == "Z":
            self.ecoa_z += 1
        if _counts_as_ssn(ssn):
            self.ssns[segment] += 1
        if _counts_as_date(birth):
            self.births[segment] += 1
        if _number(phone):
            self.phones += 1

    def base(self, fields: Any) -> None:
        self.bases += 1
        if fields.account_status in self.statuses:
            self.statuses[fields.account_status] += 1
        self.consumer(
            "base",
            fields.ecoa_code,
            fields.social_security_number,
            fields.date_of_birth,
            fields.telephone_number,
        )

    def appended(self, name: str, fields: Any) -> None:
        if name == "K2":
            if fields.purchased_sold_indicator in ("1", "2"):
                self.segments["K2"] += 1
            return
        self.segments[name] += 1
        if name in _REPEATABLE:
            self.consumer(
                name,
                fields.ecoa_code,
                fields.social_security_number,
                fields.date_of_birth,
                fields.telephone_number,
            )

    def counts(self) -> dict[str, int]:
        counts = {
            "total_base_records": self.bases,
            "block_count": self.bases + 2,  # header + trailer, as moov-io/metro2 requires
            **{f"total_status_code_{code.lower()}": n for code, n in self.statuses.items()},
            "total_j1_segments": self.segments["J1"],
            "total_j2_segments": self.segments["J2"],
            "total_ecoa_code_z": self.ecoa_z,
            "total_original_creditor_segments": self.segments["K1"],
            "total_purchased_sold_segments": self.segments["K2"],
            "total_change_segments": self.segments["L1"],
            "total_ssns_all_segments": sum(self.ssns.values()),
            "total_ssns_base_segments": self.ssns["base"],
            "total_ssns_j1_segments": self.ssns["J1"],
            "total_ssns_j2_segments": self.ssns["J2"],
            "total_dates_of_birth_all_segments": sum(self.births.values()),
            "total_dates_of_birth_base_segments": self.births["base"],
            "total_dates_of_birth_j1_segments": self.births["J1"],
            "total_dates_of_birth_j2_segments": self.births["J2"],
            "total_telephone_numbers_all_segments": self.phones,
            **dict.fromkeys(_ALWAYS_ZERO, 0),
        }
        return {field.name: counts[field.name] for field in TRAILER.fields if field.name in counts}


def trailer_counts(data_records: Iterable[str]) -> dict[str, int]:
    """The trailer's count fields for these data records (each a base with its appended segments,
    RDW first, no line break), named as in `metro2_layout.TRAILER`: what `render(TRAILER, ...)`
    needs besides the RDW and the record identifier, counted exactly as `validate_file` checks."""
    tally = _Tally()
    for record in data_records:
        tally.base(_BASE.split(record[: BASE.length].ljust(BASE.length)))
        for name, _offset, text in _split_appended(record)[0]:
            tally.appended(name, _APPENDED[name].split(text))
    return tally.counts()


# --- the checks ---------------------------------------------------------------------------


class _Validator:
    """One pass over the file, record by record, keeping only what later records need. `number`
    and `account` are the record being read, so each check says only what is wrong where."""

    def __init__(self, today: dt.date, previous_dofd: Mapping[str, dt.date] | None) -> None:
        self.today = today
        self.previous_dofd = previous_dofd or {}
        self.problems: list[Problem] = []
        self.flagged: set[tuple[int, str, int, str]] = set()
        self.number = 0
        self.account: str | None = None
        self.accounts: dict[str, int] = {}
        self.tally = _Tally()
        self.activity_date: dt.date | None = None
        self.late_bases = 0
        self.latest_doai: tuple[dt.date, int] | None = None

    def add(
        self,
        record: int,
        segment: str,
        field: str | None,
        message: str,
        account: str | None = None,
        offset: int = 0,
    ) -> None:
        if field is not None:
            key = (record, segment, offset, field)
            if key in self.flagged:
                return
            self.flagged.add(key)
        self.problems.append(Problem(record, segment, field, message, account))
        if len(self.problems) >= MAX_PROBLEMS - 1:
            raise _Full

    def flag(self, segment: str, field: str | None, message: str, offset: int = 0) -> None:
        """A problem in the record being read."""
        self.add(self.number, segment, field, message, self.account, offset)

    # file structure

    def run(self, data: bytes) -> None:
        if not data:
            self.add(1, "file", None, "the file is empty")
            return
        position, size = 0, len(data)
        last_kind, last_number = "", 0
        trailer_at: int | None = None
        trailer: Any = None
        while position < size:
            end = data.find(b"\n", position)
            self.number += 1
            self.account = None
            if end < 0:
                end = size
                self.flag("file", None, "the file does not end with a line break")
            line = data[position:end].decode("latin-1")
            position = end + 1
            if line.endswith("\r"):
                self.flag("file", None, "the record ends with a carriage return (CRLF)")
                line = line[:-1]
            if not line:
                self.flag("file", None, "empty line")
                continue
            if trailer_at is not None:
                message = f"the trailer must be the last record; record {self.number} follows it"
                self.add(trailer_at, "trailer", "record_identifier", message)
                trailer_at, trailer = None, None
            first = last_number == 0
            if line[4:10] == "HEADER":
                kind = "header"
                if first:
                    self.header(line)
                else:
                    self.flag("header", "record_identifier", "a header must be the first record")
            elif line[4:11] == "TRAILER":
                kind = "trailer"
                trailer_at, trailer = self.number, self.read_trailer(line)
            else:
                kind = "base"
                self.base(line)
            if first and kind != "header":
                message = (
                    f"the file must start with a HEADER record (5-10); this is a {kind} record"
                )
                self.add(self.number, "header", "record_identifier", message)
            last_kind, last_number = kind, self.number
        self.end_of_file(last_kind, last_number, trailer)

    def end_of_file(self, last_kind: str, last_number: int, trailer: Any) -> None:
        if last_number == 0:
            self.add(1, "file", None, "the file has no records")
            return
        if last_kind != "trailer":
            message = (
                "no trailer: the file must end with a TRAILER record (5-11); the last record is a "
                f"{last_kind} record"
            )
            self.add(last_number, "file", None, message)
        elif trailer is not None:
            self.trailer_totals(last_number, trailer)
        if self.tally.bases == 0:
            self.add(last_number, "file", None, "the file has no base records")
        if self.late_bases and self.latest_doai is not None and self.activity_date is not None:
            latest, record = self.latest_doai
            message = (
                f"{self.activity_date:%m%d%Y} is before the date of account information of "
                f"{self.late_bases} base record(s), the latest {latest:%m%d%Y} in record {record}; "
                "it must be on or after every one"
            )
            self.add(1, "header", "activity_date", message)

    def descriptor(self, segment: str, line: str) -> None:
        rdw = line[:4]
        if len(rdw) < 4 or not _is_digits(rdw):
            self.flag(segment, "record_descriptor_word", f"{_shown(rdw)} is not 4 digits")
        elif int(rdw) != len(line):
            message = f"says {rdw} but the record is {len(line)} bytes long"
            self.flag(segment, "record_descriptor_word", message)

    def wrong_length(self, segment: str, line: str, expected: str) -> None:
        message = f"the record is {len(line)} bytes; {expected}"
        if not line.isascii():
            message += f"; {_non_ascii(line)}"
        self.flag(segment, None, message)

    def judged(self, layout: _Layout, text: str, offset: int = 0) -> Any:
        """The segment's fields, after reporting every value that does not fit its kind, every
        date that is impossible or after today, every missing required value and every value
        not in its code list."""
        segment, flag = layout.name, self.flag
        well_typed = layout.well_typed.fullmatch(text) is not None
        if not well_typed:
            values = layout.slices(text)
            for index, name, kind in layout.typed:
                message = _type_problem(kind, values[index], name in SENSITIVE)
                if message is not None:
                    flag(segment, name, message, offset)
        fields = layout.split(text)
        for index, name, empty in layout.required:
            if fields[index] == empty:
                missing = "is blank (required)" if empty[0] == " " else "is zeros (required)"
                flag(segment, name, missing, offset)
        for index, name, codes, what in layout.codes:
            value = fields[index]
            if value not in codes:
                flag(segment, name, f"{_shown(value)} is not {what}", offset)
        today = self.today
        for index, name, stamp in layout.dates:
            value = fields[index]
            if not value.strip("0") or not (well_typed or _is_digits(value)):
                continue
            day = _time_stamp(value) if stamp else _date(value)
            if day is None or day > today:
                shown = "the date" if name in SENSITIVE else value
                wrong = "is not a real date" if day is None else f"is after today ({today:%m%d%Y})"
                flag(segment, name, f"{shown} {wrong}", offset)
        return fields

    def identifier(self, segment: str, name: str, value: str, offset: int = 0) -> str:
        """An identifying number: present, left-justified, without embedded blanks."""
        text = value.rstrip(" ")
        if not text:
            self.flag(segment, name, "is blank (required)", offset)
        elif " " in text:
            self.flag(segment, name, f"{_shown(value)} has leading or embedded blanks", offset)
        return text

    # header and trailer

    def header(self, line: str) -> None:
        self.descriptor("header", line)
        if len(line) != HEADER.length:
            self.wrong_length("header", line, f"a header is {HEADER.length} bytes")
            if len(line) < HEADER.length:
                return
        fields = self.judged(_HEADER, line[: HEADER.length])
        self.activity_date = _date(fields.activity_date)

    def read_trailer(self, line: str) -> Any:
        self.descriptor("trailer", line)
        if len(line) != TRAILER.length:
            self.wrong_length("trailer", line, f"a trailer is {TRAILER.length} bytes")
            if len(line) < TRAILER.length:
                return None
        return self.judged(_TRAILER, line[: TRAILER.length])

    def trailer_totals(self, number: int, fields: Any) -> None:
        for name, expected in self.tally.counts().items():
            value = getattr(fields, name)
            found = _number(value)
            if found is not None and found != expected:
                message = f"is {value} but the file has {expected} (recomputed from the records)"
                self.add(number, "trailer", name, message)

    # data records

    def base(self, line: str) -> None:
        self.account = line[42:72].strip(" ") or None
        self.descriptor("base", line)
        if len(line) < BASE.length:
            expected = f"a base segment is {BASE.length} bytes, then any appended segments"
            self.wrong_length("base", line, expected)
            self.tally.bases += 1
            return
        fields = self.judged(_BASE, line[: BASE.length])
        appended = self.appended(line)
        self.base_fields(fields)
        self.base_rules(fields, appended)
        self.base_dates(fields)
        self.base_amounts(fields)
        self.tally.base(fields)
        for name, segment in appended:
            self.tally.appended(name, segment)

    def appended(self, line: str) -> list[tuple[str, Any]]:
        found, end = _split_appended(line)
        last_rank = -1
        segments = []
        for name, offset, text in found:
            rank = _RANK[name]
            if rank < last_rank or (rank == last_rank and name not in _REPEATABLE):
                message = (
                    f"{name} at position {offset + 1} is out of order: appended segments go J1, "
                    "J2, K1, K2, L1, with at most one each of K1, K2 and L1"
                )
                self.flag(name, "segment_identifier", message, offset)
            last_rank = max(last_rank, rank)
            fields = self.judged(_APPENDED[name], text, offset)
            self.check_appended(name, fields, offset)
            segments.append((name, fields))
        if end < len(line):
            rest = line[end:]
            layout = _APPENDED.get(rest[:2])
            if layout is not None:
                message = (
                    f"{rest[:2]} segment at position {end + 1} is cut short: {len(rest)} of "
                    f"{layout.segment.length} bytes"
                )
            else:
                after = "appended segments" if found else "base segment"
                message = (
                    f"unknown bytes at positions {end + 1}-{len(line)} after the {after}: "
                    f"{_shown(rest[:20])}" + ("" if rest.isascii() else " (non-ASCII)")
                )
            self.flag("base", None, message)
        return segments

    def base_fields(self, fields: Any) -> None:
        """The base fields a code list cannot judge: identifiers, terms, payment history,
        identity and address formats (reference §2, §3.2, §4.3, §6.3)."""
        flag = self.flag
        identification = self.identifier(
            "base", "identification_number", fields.identification_number
        )
        if identification and (not identification.strip("0") or not identification.strip("9")):
            message = f"{_shown(identification)} must not be all zeros or all nines"
            flag("base", "identification_number", message)
        self.identifier("base", "consumer_account_number", fields.consumer_account_number)
        if self.account is not None:
            first = self.accounts.setdefault(self.account, self.number)
            if first != self.number:
                message = f"{self.account!r} is also the account number of record {first}"
                flag("base", "consumer_account_number", message)
        if not _TERMS_DURATION.fullmatch(fields.terms_duration):
            message = f"{_shown(fields.terms_duration)} is not LOC, REV or a number"
            flag("base", "terms_duration", message)
        if not _PAYMENT_HISTORY.fullmatch(fields.payment_history_profile):
            self.payment_history(fields.payment_history_profile)
        self.identity("base", fields)
        self.address("base", fields)

    def payment_history(self, profile: str) -> None:
        kept = profile.rstrip(" ")
        unknown = set(kept) - PHP_CODES
        embedded = _EMBEDDED_B.search(kept)
        if len(kept) < len(profile):
            message = f"{_shown(profile)} has {len(kept)} characters, not 24 (B-fill the end)"
        elif unknown:
            message = (
                f"{_shown(profile)} has {''.join(sorted(unknown))!r}, not payment history codes "
                "(0-6, B, D, E, G, H, J, K, L)"
            )
        elif embedded:
            message = (
                f"{_shown(profile)} has B before another value at position {embedded.end()}; B "
                "may only fill the ending positions"
            )
        else:  # pragma: no cover - the caller's regex lets everything else through
            return
        self.flag("base", "payment_history_profile", message)

    def identity(self, segment: str, fields: Any, offset: int = 0) -> None:
        """A consumer of base, J1 or J2 is known by a plausible SSN or a date of birth."""
        ecoa, ssn = fields.ecoa_code, fields.social_security_number
        has_ssn = _counts_as_ssn(ssn)
        if has_ssn and not plausible_ssn(ssn):
            message = "is not a plausible SSN (area 000, 666 or 900-999, group 00 or serial 0000)"
            self.flag(segment, "social_security_number", message, offset)
        if not has_ssn and fields.date_of_birth == ZERO_DATE and ecoa not in NO_IDENTITY_ECOA:
            message = (
                "no SSN and no date of birth: one is required unless the ECOA code is W or Z "
                f"(it is {_shown(ecoa)})"
            )
            self.flag(segment, "social_security_number", message, offset)

    def address(self, segment: str, fields: Any, offset: int = 0) -> None:
        """The address formats of base and J2 (their presence and codes are in the layout)."""
        postal, country = fields.postal_zip_code, fields.country_code
        if not _POSTAL_CODE.fullmatch(postal) and postal.strip(" "):
            message = f"{_shown(postal)} is not 5 or 9 digits, left-justified"
            self.flag(segment, "postal_zip_code", message, offset)
        if not _COUNTRY_CODE.fullmatch(country):
            message = f"{_shown(country)} is not blank or 2 letters"
            self.flag(segment, "country_code", message, offset)

    def base_rules(self, fields: Any, appended: list[tuple[str, Any]]) -> None:
        """Rules across base codes and segments (reference §4.2, §4.5, §5.1)."""
        flag = self.flag
        status, rating = fields.account_status, fields.payment_rating
        if status in RATED_STATUSES:
            if rating not in PAYMENT_RATINGS:
                message = f"{_shown(rating)}: status {status} needs a payment rating (0-6, G, L)"
                flag("base", "payment_rating", message)
        elif rating != " ":
            message = (
                f"{_shown(rating)} must be blank with status {_shown(status)}; a rating goes "
                "only with 05, 13, 65, 88, 89, 94, 95"
            )
            flag("base", "payment_rating", message)
        condition = fields.compliance_condition_code
        if condition in CLOSED_AT_CONSUMERS_REQUEST and fields.special_comment == "M ":
            message = (
                f"{condition} (closed at the consumer's request) contradicts special comment M "
                "(closed at the credit grantor's request)"
            )
            flag("base", "compliance_condition_code", message)
        kind = fields.account_type
        if kind not in COLLECTION_ACCOUNT_TYPES:
            return
        if fields.portfolio_type != "O":
            message = f"{_shown(fields.portfolio_type)} must be O with account type {kind}"
            flag("base", "portfolio_type", message)
        if fields.terms_duration != "001":
            message = f"{_shown(fields.terms_duration)} must be 001 with account type {kind}"
            flag("base", "terms_duration", message)
        if status not in COLLECTION_STATUSES:
            message = (
                f"{_shown(status)} is not 93, 62, DA or DF, the statuses of account type {kind}"
            )
            flag("base", "account_status", message)
        if all(name != "K1" for name, _fields in appended):
            message = f"{kind} (collection) needs a K1 segment naming the original creditor"
            flag("base", "account_type", message)

    def base_dates(self, fields: Any) -> None:
        """Dates in order, the DOFD where the status needs one, and never re-aged (§5.2, §5.3)."""
        flag = self.flag
        status, rating = fields.account_status, fields.payment_rating
        doai_text, dofd_text = fields.date_of_account_information, fields.date_of_first_delinquency
        doai, dofd, opened = _date(doai_text), _date(dofd_text), _date(fields.date_opened)
        if doai is not None:
            if opened is not None and opened > doai:
                message = (
                    f"{fields.date_opened} is after the date of account information {doai_text}"
                )
                flag("base", "date_opened", message)
            if dofd is not None and dofd > doai:
                message = f"{dofd_text} is after the date of account information {doai_text}"
                flag("base", "date_of_first_delinquency", message)
            if self.activity_date is not None and doai > self.activity_date:
                self.late_bases += 1
                if self.latest_doai is None or doai > self.latest_doai[0]:
                    self.latest_doai = (doai, self.number)
        if dofd_text == ZERO_DATE:
            rated = status in ("05", "13") and rating in DELINQUENT_RATINGS
            if status in DOFD_STATUSES or rated:
                with_rating = f" with payment rating {rating}" if rated else ""
                message = (
                    f"is zeros; status {status}{with_rating} needs the date of first delinquency"
                )
                flag("base", "date_of_first_delinquency", message)
        elif status == "11" and fields.consumer_information_indicator not in BANKRUPTCY_INFORMATION:
            message = (
                f"{dofd_text} must be zeros with status 11 (current) unless the consumer "
                "information indicator is a bankruptcy code"
            )
            flag("base", "date_of_first_delinquency", message)
        previous = None if self.account is None else self.previous_dofd.get(self.account)
        # status 11 carries a bankruptcy petition date there, not a delinquency
        if status != "11" and dofd is not None and previous is not None and previous != dofd:
            message = (
                f"{dofd_text} differs from {previous:%m%d%Y}, the DOFD last reported for this "
                "account: it must never change (re-aging)"
            )
            flag("base", "date_of_first_delinquency", message)

    def base_amounts(self, fields: Any) -> None:
        """Amounts the status implies (§4.1, §5.3)."""
        flag = self.flag
        status = fields.account_status
        past_due = _number(fields.amount_past_due)
        if status == "11" and past_due:
            message = f"is {past_due} with status 11 (current); it must be 0"
            flag("base", "amount_past_due", message)
        elif status in PAST_DUE_STATUSES and past_due == 0:
            message = f"is 0 with status {status} (past due); it must be more than 0"
            flag("base", "amount_past_due", message)
        balance = _number(fields.current_balance)
        if status in ZERO_BALANCE_STATUSES and balance:
            message = f"is {balance} with status {status} (paid or closed); it must be 0"
            flag("base", "current_balance", message)
        charge_off = _number(fields.original_charge_off_amount)
        if status in CHARGE_OFF_STATUSES:
            if charge_off == 0:
                message = f"is 0 with status {status} (charge-off); report the amount charged off"
                flag("base", "original_charge_off_amount", message)
        elif charge_off:
            message = f"is {charge_off} with status {_shown(status)}; only 64 and 97 report it"
            flag("base", "original_charge_off_amount", message)

    def check_appended(self, name: str, fields: Any, offset: int) -> None:
        """The rules of one appended segment beyond its layout's (reference §3.3-§3.9, §6.3)."""
        if name in _REPEATABLE:
            self.identity(name, fields, offset)
            if name == "J2":
                self.address(name, fields, offset)
        elif name == "K2":
            indicator, named = fields.purchased_sold_indicator, fields.purchased_sold_name.strip()
            if indicator == "9" and named:
                self.flag(name, "purchased_sold_name", "must be blank with indicator 9", offset)
            elif indicator in ("1", "2") and not named:
                message = f"is blank (required with indicator {indicator})"
                self.flag(name, "purchased_sold_name", message, offset)
        elif name == "L1":
            self.change(fields.change_indicator, fields, offset)

    def change(self, indicator: str, fields: Any, offset: int) -> None:
        """Indicator 1 changes the account number, 2 the identification number, 3 both."""
        for name, needed_by in (
            ("new_consumer_account_number", ("1", "3")),
            ("new_identification_number", ("2", "3")),
        ):
            value = getattr(fields, name)
            if indicator in needed_by:
                self.identifier("L1", name, value, offset)
            elif indicator in L1_INDICATORS and value.strip(" "):
                message = f"{_shown(value)} must be blank with change indicator {indicator}"
                self.flag("L1", name, message, offset)


def validate_file(
    data: bytes, *, today: dt.date, previous_dofd: Mapping[str, dt.date] | None = None
) -> list[Problem]:
    """Every problem found (empty list = valid), in record order; at most `MAX_PROBLEMS`, the last
    then saying the check stopped. `today` bounds dates (nothing after it). `previous_dofd`: the
    date of first delinquency last reported per consumer account number, for the accounts whose
    delinquency goes on; a delinquent record reporting a different DOFD for that account is a
    problem (DOFD must never change: re-aging)."""
    validator = _Validator(today, previous_dofd)
    try:
        validator.run(data)
    except _Full:
        problems = sorted(validator.problems, key=lambda problem: problem.record)
        message = f"stopped after {len(problems)} problems; the rest of the file was not checked"
        return [*problems, Problem(validator.number, "file", None, message)]
    return sorted(validator.problems, key=lambda problem: problem.record)


def check_file(
    data: bytes, *, today: dt.date, previous_dofd: Mapping[str, dt.date] | None = None
) -> None:
    """Raise Metro2Invalid when validate_file finds anything."""
    problems = validate_file(data, today=today, previous_dofd=previous_dofd)
    if problems:
        raise Metro2Invalid(problems)
