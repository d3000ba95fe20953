"""The Metro 2 character format (426-byte records) as data: every segment's fields in order, and
the one place values become fixed-width text and fixed-width text becomes fields again.

Layouts follow shared/reference/metro2.md §3 (positions cross-checked between moov-io/metro2
and CFPB's parser). The writer (`bureau_file`) renders with `render`; the validator
(`metro2_validate`) reads with `split_fields`. Field names are the reference's names in
snake_case.

Formatting (reference §0, §2):
- `AN` alphanumeric: upper case, left-justified, blank-filled; accents folded to ASCII and any
  character outside Metro 2's set dropped; a value longer than the field is cut.
- `N` numeric: right-justified, zero-filled whole numbers (money in whole dollars, cents cut);
  None is zeros. A negative or too-long number is an error, never silently cut.
- `DATE` is `MMDDYYYY` and `TIMESTAMP` is `MMDDYYYYHHMMSS`; None is all zeros.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Literal

Kind = Literal["AN", "N", "DATE", "TIMESTAMP"]

# Characters moov-io/metro2 accepts in alphanumeric fields (reference §6.2), minus the lower case
ALLOWED_TEXT = re.compile(r"[^ 0-9A-Z_!\"#$%&'()*+,\-./\\:;<=>?@\[\]^{}|~]")


@dataclass(frozen=True)
class Field:
    name: str
    start: int  # 1-based, inclusive
    length: int
    kind: Kind

    @property
    def end(self) -> int:
        return self.start + self.length - 1

    @property
    def span(self) -> str:
        return f"{self.start}-{self.end}" if self.length > 1 else str(self.start)


@dataclass(frozen=True)
class Segment:
    name: str
    length: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for each in self.fields:
            if each.name == name:
                return each
        raise KeyError(f"{self.name} has no field {name!r}")


def _segment(name: str, length: int, spec: list[tuple[str, int, Kind]]) -> Segment:
    fields, start = [], 1
    for field_name, field_length, kind in spec:
        fields.append(Field(field_name, start, field_length, kind))
        start += field_length
    if start - 1 != length:
        raise AssertionError(f"{name}: fields add up to {start - 1}, not {length}")
    return Segment(name, length, tuple(fields))


HEADER = _segment("header", 426, [
    ("record_descriptor_word", 4, "N"),
    ("record_identifier", 6, "AN"),
    ("cycle_identifier", 2, "AN"),
    ("innovis_program_identifier", 10, "AN"),
    ("equifax_program_identifier", 10, "AN"),
    ("experian_program_identifier", 5, "AN"),
    ("transunion_program_identifier", 10, "AN"),
    ("activity_date", 8, "DATE"),
    ("date_created", 8, "DATE"),
    ("program_date", 8, "DATE"),
    ("program_revision_date", 8, "DATE"),
    ("reporter_name", 40, "AN"),
    ("reporter_address", 96, "AN"),
    ("reporter_telephone_number", 10, "N"),
    ("software_vendor_name", 40, "AN"),
    ("software_version_number", 5, "AN"),
    ("prbc_program_identifier", 10, "AN"),
    ("reserved", 146, "AN"),
])  # fmt: skip

BASE = _segment("base", 426, [
    ("record_descriptor_word", 4, "N"),
    ("processing_indicator", 1, "N"),
    ("time_stamp", 14, "TIMESTAMP"),
    ("correction_indicator", 1, "N"),
    ("identification_number", 20, "AN"),
    ("cycle_identifier", 2, "AN"),
    ("consumer_account_number", 30, "AN"),
    ("portfolio_type", 1, "AN"),
    ("account_type", 2, "AN"),
    ("date_opened", 8, "DATE"),
    ("credit_limit", 9, "N"),
    ("highest_credit", 9, "N"),
    ("terms_duration", 3, "AN"),
    ("terms_frequency", 1, "AN"),
    ("scheduled_monthly_payment_amount", 9, "N"),
    ("actual_payment_amount", 9, "N"),
    ("account_status", 2, "AN"),
    ("payment_rating", 1, "AN"),
    ("payment_history_profile", 24, "AN"),
    ("special_comment", 2, "AN"),
    ("compliance_condition_code", 2, "AN"),
    ("current_balance", 9, "N"),
    ("amount_past_due", 9, "N"),
    ("original_charge_off_amount", 9, "N"),
    ("date_of_account_information", 8, "DATE"),
    ("date_of_first_delinquency", 8, "DATE"),
    ("date_closed", 8, "DATE"),
    ("date_of_last_payment", 8, "DATE"),
    ("interest_type_indicator", 1, "AN"),
    ("reserved", 17, "AN"),
    ("surname", 25, "AN"),
    ("first_name", 20, "AN"),
    ("middle_name", 20, "AN"),
    ("generation_code", 1, "AN"),
    ("social_security_number", 9, "N"),
    ("date_of_birth", 8, "DATE"),
    ("telephone_number", 10, "N"),
    ("ecoa_code", 1, "AN"),
    ("consumer_information_indicator", 2, "AN"),
    ("country_code", 2, "AN"),
    ("first_line_of_address", 32, "AN"),
    ("second_line_of_address", 32, "AN"),
    ("city", 20, "AN"),
    ("state", 2, "AN"),
    ("postal_zip_code", 9, "AN"),
    ("address_indicator", 1, "AN"),
    ("residence_code", 1, "AN"),
])  # fmt: skip

J1 = _segment("J1", 100, [
    ("segment_identifier", 2, "AN"),
    ("reserved", 1, "AN"),
    ("surname", 25, "AN"),
    ("first_name", 20, "AN"),
    ("middle_name", 20, "AN"),
    ("generation_code", 1, "AN"),
    ("social_security_number", 9, "N"),
    ("date_of_birth", 8, "DATE"),
    ("telephone_number", 10, "N"),
    ("ecoa_code", 1, "AN"),
    ("consumer_information_indicator", 2, "AN"),
    ("reserved_2", 1, "AN"),
])  # fmt: skip

J2 = _segment("J2", 200, [
    ("segment_identifier", 2, "AN"),
    ("reserved", 1, "AN"),
    ("surname", 25, "AN"),
    ("first_name", 20, "AN"),
    ("middle_name", 20, "AN"),
    ("generation_code", 1, "AN"),
    ("social_security_number", 9, "N"),
    ("date_of_birth", 8, "DATE"),
    ("telephone_number", 10, "N"),
    ("ecoa_code", 1, "AN"),
    ("consumer_information_indicator", 2, "AN"),
    ("country_code", 2, "AN"),
    ("first_line_of_address", 32, "AN"),
    ("second_line_of_address", 32, "AN"),
    ("city", 20, "AN"),
    ("state", 2, "AN"),
    ("postal_zip_code", 9, "AN"),
    ("address_indicator", 1, "AN"),
    ("residence_code", 1, "AN"),
    ("reserved_2", 2, "AN"),
])  # fmt: skip

K1 = _segment("K1", 34, [
    ("segment_identifier", 2, "AN"),
    ("original_creditor_name", 30, "AN"),
    ("creditor_classification", 2, "N"),
])  # fmt: skip

K2 = _segment("K2", 34, [
    ("segment_identifier", 2, "AN"),
    ("purchased_sold_indicator", 1, "N"),
    ("purchased_sold_name", 30, "AN"),
    ("reserved", 1, "AN"),
])  # fmt: skip

L1 = _segment("L1", 54, [
    ("segment_identifier", 2, "AN"),
    ("change_indicator", 1, "N"),
    ("new_consumer_account_number", 30, "AN"),
    ("new_identification_number", 20, "AN"),
    ("reserved", 1, "AN"),
])  # fmt: skip

TRAILER_STATUSES = (
    "DF", "DA", "05", "11", "13", "61", "62", "63", "64", "65", "71", "78", "80", "82", "83",
    "84", "88", "89", "93", "94", "95", "96", "97",
)  # fmt: skip


def _trailer() -> Segment:
    def count(name: str) -> tuple[str, int, Kind]:
        return (name, 9, "N")

    def status(code: str) -> tuple[str, int, Kind]:
        return count(f"total_status_code_{code.lower()}")

    return _segment("trailer", 426, [
        ("record_descriptor_word", 4, "N"),
        ("record_identifier", 7, "AN"),
        count("total_base_records"),
        ("reserved", 9, "AN"),
        status("DF"),
        count("total_j1_segments"),
        count("total_j2_segments"),
        count("block_count"),
        *[status(code) for code in TRAILER_STATUSES[1:]],
        count("total_ecoa_code_z"),
        count("total_employment_segments"),
        count("total_original_creditor_segments"),
        count("total_purchased_sold_segments"),
        count("total_mortgage_information_segments"),
        count("total_specialized_payment_segments"),
        count("total_change_segments"),
        count("total_ssns_all_segments"),
        count("total_ssns_base_segments"),
        count("total_ssns_j1_segments"),
        count("total_ssns_j2_segments"),
        count("total_dates_of_birth_all_segments"),
        count("total_dates_of_birth_base_segments"),
        count("total_dates_of_birth_j1_segments"),
        count("total_dates_of_birth_j2_segments"),
        count("total_telephone_numbers_all_segments"),
        ("reserved_2", 19, "AN"),
    ])  # fmt: skip


TRAILER = _trailer()
APPENDED = {segment.name: segment for segment in (J1, J2, K1, K2, L1)}
# the order appended segments follow the base in (reference §2); N1, K3, K4 are not produced
APPENDED_ORDER = ("J1", "J2", "K1", "K2", "L1")


# --- values → text ------------------------------------------------------------------------


def fold_text(value: object) -> str:
    """Upper case ASCII in Metro 2's character set: accents folded, anything else dropped, and
    no braces (moov-io/metro2 reads a file with a `{` near its start as JSON)."""
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(char for char in text if not unicodedata.combining(char)).upper()
    return ALLOWED_TEXT.sub("", text).replace("{", "").replace("}", "")


def whole_dollars(amount: Decimal | int | None) -> int:
    """Money as Metro 2 wants it: whole dollars, cents cut; a credit (negative) balance is 0."""
    if amount is None:
        return 0
    value = int(Decimal(amount).quantize(Decimal(1), rounding=ROUND_DOWN))
    return max(value, 0)


def format_value(field: Field, value: object) -> str:
    """One field's fixed-width text."""
    if field.kind == "AN":
        return fold_text("" if value is None else value)[: field.length].ljust(field.length)
    if field.kind == "N":
        number = 0 if value in (None, "") else int(value)  # type: ignore[call-overload]
        text = str(number)
        if number < 0 or len(text) > field.length:
            raise ValueError(f"{field.name} ({field.span}): {number} does not fit the field")
        return text.zfill(field.length)
    if value is None:
        return "0" * field.length
    if field.kind == "DATE":
        if not isinstance(value, dt.date):
            raise ValueError(f"{field.name} ({field.span}): {value!r} is not a date")
        return f"{value:%m%d%Y}"
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{field.name} ({field.span}): {value!r} is not a date and time")
    return f"{value:%m%d%Y%H%M%S}"


def render(segment: Segment, values: Mapping[str, object]) -> str:
    """A segment's text from named values; fields not given are blanks (AN) or zeros."""
    unknown = set(values) - {field.name for field in segment.fields}
    if unknown:
        raise KeyError(f"{segment.name} has no field(s) {', '.join(sorted(unknown))}")
    text = "".join(format_value(field, values.get(field.name)) for field in segment.fields)
    if len(text) != segment.length:  # pragma: no cover - the layouts are checked at import
        raise AssertionError(f"{segment.name} rendered {len(text)} characters")
    return text


def split_fields(segment: Segment, text: str) -> dict[str, str]:
    """A segment's raw field texts, by name (no conversion: the validator judges them)."""
    return {field.name: text[field.start - 1 : field.end] for field in segment.fields}
