"""The Metro 2 validator: a file recoup would send passes clean, and each way a record can break
is reported with its record number, segment and field."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest

from flows.lib.metro2_layout import (
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
    render,
)
from flows.lib.metro2_validate import (
    MAX_PROBLEMS,
    Metro2Invalid,
    Problem,
    check_file,
    trailer_counts,
    validate_file,
)

pytestmark = pytest.mark.unit

TODAY = dt.date(2026, 4, 5)
DOAI = dt.date(2026, 3, 31)

HEADER_VALUES: dict[str, object] = {
    "record_descriptor_word": 426,
    "record_identifier": "HEADER",
    "equifax_program_identifier": "EFX1234567",
    "experian_program_identifier": "EXP12",
    "transunion_program_identifier": "TU12345678",
    "activity_date": DOAI,
    "date_created": dt.date(2026, 4, 1),
    "program_date": dt.date(2026, 1, 2),
    "reporter_name": "RECOUP COLLECTIONS LLC",
    "reporter_address": "1 FINANCE WAY, AUSTIN, TX 78701",
    "reporter_telephone_number": 5125550199,
    "software_vendor_name": "RECOUP",
    "software_version_number": "0.1.0",
}

# A current installment account: status 11, nothing past due, no DOFD.
CURRENT: dict[str, object] = {
    "processing_indicator": 1,
    "time_stamp": dt.datetime(2026, 3, 31, 23, 59, 30),
    "correction_indicator": 0,
    "identification_number": "RECOUP01",
    "consumer_account_number": "A1",
    "portfolio_type": "I",
    "account_type": "01",
    "date_opened": dt.date(2024, 1, 15),
    "highest_credit": 1200,
    "terms_duration": "024",
    "terms_frequency": "M",
    "scheduled_monthly_payment_amount": 50,
    "actual_payment_amount": 50,
    "account_status": "11",
    "payment_history_profile": "000000000000000000BBBBBB",
    "current_balance": 600,
    "date_of_account_information": DOAI,
    "date_of_last_payment": dt.date(2026, 3, 10),
    "interest_type_indicator": "F",
    "surname": "DOE",
    "first_name": "JANE",
    "middle_name": "Q",
    "social_security_number": 123456789,
    "date_of_birth": dt.date(1980, 5, 17),
    "telephone_number": 5125550100,
    "ecoa_code": "2",
    "country_code": "US",
    "first_line_of_address": "100 MAIN ST",
    "second_line_of_address": "APT 4",
    "city": "AUSTIN",
    "state": "TX",
    "postal_zip_code": "787011234",
    "address_indicator": "Y",
    "residence_code": "R",
}
# The co-borrower at the same address: a date of birth, no SSN.
SPOUSE = {
    "surname": "DOE",
    "first_name": "JOHN",
    "date_of_birth": dt.date(1979, 2, 3),
    "ecoa_code": "2",
}

# 30-59 days late: amount past due and a DOFD.
LATE = CURRENT | {
    "consumer_account_number": "A2",
    "account_status": "71",
    "payment_history_profile": "000BBBBBBBBBBBBBBBBBBBBB",
    "amount_past_due": 120,
    "date_of_first_delinquency": dt.date(2026, 2, 28),
    "surname": "ROE",
    "first_name": "RICHARD",
    "ecoa_code": "1",
    "social_security_number": 234567890,
    "telephone_number": None,
}

# A third-party collection: account type 48, portfolio O, terms 001, status 93, with K1.
COLLECTION = CURRENT | {
    "consumer_account_number": "A3",
    "portfolio_type": "O",
    "account_type": "48",
    "date_opened": dt.date(2025, 9, 1),
    "highest_credit": 900,
    "terms_duration": "001",
    "terms_frequency": "P",
    "scheduled_monthly_payment_amount": 0,
    "actual_payment_amount": 0,
    "account_status": "93",
    "payment_history_profile": "GGGGGGBBBBBBBBBBBBBBBBBB",
    "current_balance": 900,
    "amount_past_due": 900,
    "date_of_first_delinquency": dt.date(2025, 6, 1),
    "date_of_last_payment": None,
    "interest_type_indicator": "",
    "surname": "SMITH-JONES",
    "first_name": "ANA",
    "middle_name": "",
    "ecoa_code": "1",
    "social_security_number": 345678901,
    "date_of_birth": None,
    "postal_zip_code": "78702",
}
CREDITOR = {"original_creditor_name": "ACME MEDICAL GROUP", "creditor_classification": 2}

# A paid charge-off whose account number changes, with a co-signer at another address.
PAID_CHARGE_OFF = CURRENT | {
    "consumer_account_number": "A4",
    "account_status": "64",
    "payment_history_profile": "LLLL65432100BBBBBBBBBBBB",
    "current_balance": 0,
    "original_charge_off_amount": 1100,
    "date_of_first_delinquency": dt.date(2025, 3, 1),
    "date_closed": dt.date(2026, 3, 20),
    "special_comment": "AU",
    "surname": "VAN DYKE",
    "first_name": "PAT",
    "generation_code": "J",
    "ecoa_code": "1",
    "consumer_information_indicator": "",
    "social_security_number": 999999999,
}
COSIGNER = {
    "surname": "VAN DYKE",
    "first_name": "LEE",
    "social_security_number": 456789012,
    "telephone_number": 5125550111,
    "ecoa_code": "5",
    "first_line_of_address": "9 OAK RD",
    "city": "DALLAS",
    "state": "TX",
    "postal_zip_code": "75201",
}
NEW_NUMBER = {"change_indicator": 1, "new_consumer_account_number": "A4-NEW"}

# A debt buyer's paid account: account type 0C, status 62, K1 and K2 (purchased from).
BOUGHT = COLLECTION | {
    "consumer_account_number": "A5",
    "account_type": "0C",
    "account_status": "62",
    "current_balance": 0,
    "amount_past_due": 0,
    "date_closed": dt.date(2026, 3, 30),
    "date_of_last_payment": dt.date(2026, 3, 30),
    "ecoa_code": "Z",
    "social_security_number": 0,
}
SELLER = {"purchased_sold_indicator": 1, "purchased_sold_name": "FIRST DEBT SALES"}


@dataclass
class Record:
    base: dict[str, object]
    appended: list[tuple[Segment, dict[str, object]]] = field(default_factory=list)

    def text(self) -> str:
        segments = "".join(
            render(segment, {"segment_identifier": segment.name, **values})
            for segment, values in self.appended
        )
        rdw = BASE.length + len(segments)
        return render(BASE, {**self.base, "record_descriptor_word": rdw}) + segments


def valid_records() -> list[Record]:
    """Records 2-6 of the valid file, fresh for each test to change."""
    return [
        Record(dict(CURRENT), [(J1, dict(SPOUSE))]),
        Record(dict(LATE)),
        Record(dict(COLLECTION), [(K1, dict(CREDITOR))]),
        Record(dict(PAID_CHARGE_OFF), [(J2, dict(COSIGNER)), (L1, dict(NEW_NUMBER))]),
        Record(dict(BOUGHT), [(K1, dict(CREDITOR)), (K2, dict(SELLER))]),
    ]


def expected_counts(records: list[Record]) -> dict[str, int]:
    """The trailer's non-zero counts, worked out from the values the records were made of."""
    counts: Counter[str] = Counter()

    def consumer(where: str, values: dict[str, object]) -> None:
        ssn = int(values.get("social_security_number") or 0)  # type: ignore[call-overload]
        if 0 < ssn < 999999999:
            counts[f"total_ssns_{where}_segments"] += 1
            counts["total_ssns_all_segments"] += 1
        if values.get("date_of_birth"):
            counts[f"total_dates_of_birth_{where}_segments"] += 1
            counts["total_dates_of_birth_all_segments"] += 1
        if values.get("telephone_number"):
            counts["total_telephone_numbers_all_segments"] += 1
        if values.get("ecoa_code") == "Z":
            counts["total_ecoa_code_z"] += 1

    for record in records:
        counts["total_base_records"] += 1
        status = str(record.base["account_status"])
        if status in TRAILER_STATUSES:
            counts[f"total_status_code_{status.lower()}"] += 1
        consumer("base", record.base)
        for segment, values in record.appended:
            if segment in (J1, J2):
                counts[f"total_{segment.name.lower()}_segments"] += 1
                consumer(segment.name.lower(), values)
            elif segment is K1:
                counts["total_original_creditor_segments"] += 1
            elif segment is K2 and values["purchased_sold_indicator"] in (1, 2):
                counts["total_purchased_sold_segments"] += 1
            elif segment is L1:
                counts["total_change_segments"] += 1
    counts["block_count"] = counts["total_base_records"] + 2
    return dict(counts)


def metro2_lines(
    records: list[Record] | None = None,
    header: dict[str, object] | None = None,
    trailer: dict[str, object] | None = None,
) -> list[str]:
    records = valid_records() if records is None else records
    counts = expected_counts(records)
    trailer_values = {"record_descriptor_word": 426, "record_identifier": "TRAILER", **counts}
    return [
        render(HEADER, HEADER_VALUES | (header or {})),
        *(record.text() for record in records),
        render(TRAILER, trailer_values | (trailer or {})),
    ]


def joined(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("ascii")


def metro2_file(
    records: list[Record] | None = None,
    header: dict[str, object] | None = None,
    trailer: dict[str, object] | None = None,
) -> bytes:
    return joined(metro2_lines(records, header, trailer))


def changed(index: int, base: dict[str, object] | None = None, **appended: dict) -> list[Record]:
    """The valid records with record `index` (0 = file record 2) changed: base values, or an
    appended segment's values by its name (None drops the segment)."""
    records = valid_records()
    record = records[index]
    record.base.update(base or {})
    for name, values in appended.items():
        kept = [(s, v) for s, v in record.appended if s.name != name]
        original = next((v for s, v in record.appended if s.name == name), {})
        if values is not None:
            segment = {"J1": J1, "J2": J2, "K1": K1, "K2": K2, "L1": L1}[name]
            kept.append((segment, original | values))
            kept.sort(key=lambda pair: "J1 J2 K1 K2 L1".index(pair[0].name))
        record.appended = kept
    return records


def put(line: str, segment: Segment, name: str, text: str, offset: int = 0) -> str:
    """The line with one field's text replaced in place (for what `render` refuses to write)."""
    spec = segment.field(name)
    start = offset + spec.start - 1
    assert len(text) == spec.length
    return line[:start] + text + line[start + spec.length :]


def problems_of(data: bytes, **kwargs) -> list[Problem]:
    return validate_file(data, today=TODAY, **kwargs)


def the_problem(data: bytes, **kwargs) -> Problem:
    problems = problems_of(data, **kwargs)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def assert_problem(
    problem: Problem, record: int, segment: str, field_name: str | None, fragment: str
) -> None:
    assert (problem.record, problem.segment, problem.field) == (record, segment, field_name), (
        problem
    )
    assert fragment in problem.message, problem


# --- the valid file ----------------------------------------------------------------------


def test_a_valid_file_has_no_problems() -> None:
    data = metro2_file()
    assert problems_of(data) == []
    check_file(data, today=TODAY)
    assert [len(line) for line in data.split(b"\n")] == [426, 526, 426, 460, 680, 494, 426, 0]


def test_the_valid_file_passes_with_its_own_dofds_as_previous() -> None:
    previous = {
        "A2": LATE["date_of_first_delinquency"],
        "A3": COLLECTION["date_of_first_delinquency"],
    }
    assert problems_of(metro2_file(), previous_dofd=previous) == []  # type: ignore[arg-type]


def test_trailer_counts_match_the_records() -> None:
    records = valid_records()
    counts = trailer_counts(record.text() for record in records)
    assert {name: n for name, n in counts.items() if n} == expected_counts(records)
    count_fields = {f.name for f in TRAILER.fields if f.kind == "N"} - {"record_descriptor_word"}
    assert set(counts) == count_fields


def test_repeated_j1_segments_are_allowed() -> None:
    records = valid_records()
    records[0].appended.insert(0, (J1, SPOUSE | {"first_name": "JUNE"}))
    assert problems_of(metro2_file(records)) == []


def test_a_dofd_with_status_11_is_fine_with_a_bankruptcy_indicator() -> None:
    records = changed(
        0, {"date_of_first_delinquency": dt.date(2026, 1, 5), "consumer_information_indicator": "A"}
    )
    assert problems_of(metro2_file(records)) == []


# --- base records, one broken value at a time -------------------------------------------------

# fmt: off
BASE_CASES = [
    # (id, record index, base changes, field, message fragment)
    ("unknown status", 0, {"account_status": "XX"}, "account_status", "'XX' is not an account status"),
    ("payment rating with status 11", 0, {"payment_rating": "1"}, "payment_rating", "must be blank with status '11'"),
    ("status 13 without a payment rating", 0, {"account_status": "13", "current_balance": 0}, "payment_rating", "needs a payment rating"),
    ("PHP with an embedded B", 0, {"payment_history_profile": "00B000000000000000BBBBBB"}, "payment_history_profile", "B before another value at position 4"),
    ("PHP with 23 characters", 0, {"payment_history_profile": "00000000000000000BBBBBB"}, "payment_history_profile", "has 23 characters, not 24"),
    ("PHP with an unknown code", 0, {"payment_history_profile": "0000X0000000000000BBBBBB"}, "payment_history_profile", "'X', not payment history codes"),
    ("status 11 with an amount past due", 0, {"amount_past_due": 50}, "amount_past_due", "is 50 with status 11"),
    ("status 11 with a DOFD", 0, {"date_of_first_delinquency": dt.date(2026, 1, 5)}, "date_of_first_delinquency", "must be zeros with status 11"),
    ("71 without an amount past due", 1, {"amount_past_due": 0}, "amount_past_due", "must be more than 0"),
    ("71 without a DOFD", 1, {"date_of_first_delinquency": None}, "date_of_first_delinquency", "status 71 needs the date of first delinquency"),
    ("93 without a DOFD", 2, {"date_of_first_delinquency": None}, "date_of_first_delinquency", "status 93 needs the date of first delinquency"),
    ("13 with rating 2 without a DOFD", 0, {"account_status": "13", "payment_rating": "2", "current_balance": 0}, "date_of_first_delinquency", "status 13 with payment rating 2 needs"),
    ("DOFD after the date of account information", 1, {"date_of_first_delinquency": dt.date(2026, 4, 2)}, "date_of_first_delinquency", "04022026 is after the date of account information 03312026"),
    ("date opened after the date of account information", 0, {"date_opened": dt.date(2026, 4, 1)}, "date_opened", "is after the date of account information"),
    ("date opened in the future", 0, {"date_opened": dt.date(2026, 5, 1)}, "date_opened", "05012026 is after today (04052026)"),
    ("date of last payment in the future", 0, {"date_of_last_payment": dt.date(2027, 1, 1)}, "date_of_last_payment", "is after today"),
    ("time stamp in the future", 0, {"time_stamp": dt.datetime(2026, 4, 6, 1, 0, 0)}, "time_stamp", "is after today"),
    ("date of birth in the future, not shown", 0, {"date_of_birth": dt.date(2030, 1, 1)}, "date_of_birth", "the date is after today"),
    ("no date of account information", 0, {"date_of_account_information": None}, "date_of_account_information", "is zeros (required)"),
    ("no date opened", 0, {"date_opened": None}, "date_opened", "is zeros (required)"),
    ("13 with a balance", 0, {"account_status": "13", "payment_rating": "0"}, "current_balance", "is 600 with status 13"),
    ("62 with a balance", 4, {"current_balance": 10}, "current_balance", "is 10 with status 62"),
    ("97 without a charge-off amount", 3, {"account_status": "97", "original_charge_off_amount": 0}, "original_charge_off_amount", "is 0 with status 97"),
    ("a charge-off amount with status 11", 0, {"original_charge_off_amount": 5}, "original_charge_off_amount", "only 64 and 97 report it"),
    ("collection with portfolio I", 2, {"portfolio_type": "I"}, "portfolio_type", "'I' must be O with account type 48"),
    ("collection with terms 012", 2, {"terms_duration": "012"}, "terms_duration", "'012' must be 001 with account type 48"),
    ("collection with status 71", 2, {"account_status": "71"}, "account_status", "'71' is not 93, 62, DA or DF"),
    ("missing SSN and DOB", 1, {"social_security_number": None, "date_of_birth": None}, "social_security_number", "no SSN and no date of birth"),
    ("nine-filled SSN and no DOB", 1, {"social_security_number": 999999999, "date_of_birth": None}, "social_security_number", "no SSN and no date of birth"),
    ("SSN with area 666", 0, {"social_security_number": 666123456}, "social_security_number", "not a plausible SSN"),
    ("SSN with group 00", 0, {"social_security_number": 123006789}, "social_security_number", "not a plausible SSN"),
    ("bad ECOA code", 0, {"ecoa_code": "4"}, "ecoa_code", "'4' is not an ECOA code"),
    ("bad consumer information indicator", 0, {"consumer_information_indicator": "3B"}, "consumer_information_indicator", "'3B' is not a consumer information indicator"),
    ("bad generation code", 0, {"generation_code": "X"}, "generation_code", "'X' is not J, S, 2-9 or blank"),
    ("bad state", 0, {"state": "ZZ"}, "state", "'ZZ' is not a USPS state code"),
    ("bad zip", 0, {"postal_zip_code": "7870"}, "postal_zip_code", "'7870' is not 5 or 9 digits"),
    ("zip with a dash", 0, {"postal_zip_code": "78701-123"}, "postal_zip_code", "is not 5 or 9 digits"),
    ("no city", 0, {"city": ""}, "city", "is blank (required)"),
    ("no surname", 0, {"surname": ""}, "surname", "is blank (required)"),
    ("no first name", 0, {"first_name": ""}, "first_name", "is blank (required)"),
    ("one-letter country code", 0, {"country_code": "U"}, "country_code", "'U' is not blank or 2 letters"),
    ("bad address indicator", 0, {"address_indicator": "X"}, "address_indicator", "'X' is not an address indicator"),
    ("bad residence code", 0, {"residence_code": "X"}, "residence_code", "'X' is not O, R or blank"),
    ("bad interest type", 0, {"interest_type_indicator": "X"}, "interest_type_indicator", "'X' is not F, V or blank"),
    ("bad portfolio type", 0, {"portfolio_type": "L"}, "portfolio_type", "'L' is not a portfolio type"),
    ("bad account type", 0, {"account_type": "ZZ"}, "account_type", "'ZZ' is not an account type"),
    ("bad terms duration", 0, {"terms_duration": "ABC"}, "terms_duration", "'ABC' is not LOC, REV or a number"),
    ("bad terms frequency", 0, {"terms_frequency": "X"}, "terms_frequency", "'X' is not a terms frequency"),
    ("bad special comment", 0, {"special_comment": "ZZ"}, "special_comment", "'ZZ' is not a special comment"),
    ("bad compliance condition code", 0, {"compliance_condition_code": "XZ"}, "compliance_condition_code", "'XZ' is not a compliance condition code"),
    ("closed by consumer and by grantor", 0, {"compliance_condition_code": "XA", "special_comment": "M"}, "compliance_condition_code", "contradicts special comment M"),
    ("processing indicator 2", 0, {"processing_indicator": 2}, "processing_indicator", "'2' is not 1"),
    ("correction indicator 2", 0, {"correction_indicator": 2}, "correction_indicator", "'2' is not 0 or 1"),
    ("identification number all nines", 0, {"identification_number": "99999"}, "identification_number", "must not be all zeros or all nines"),
    ("identification number with a blank", 0, {"identification_number": "RECOUP 01"}, "identification_number", "embedded blanks"),
    ("account number with a blank", 0, {"consumer_account_number": "A 1"}, "consumer_account_number", "embedded blanks"),
]
# fmt: on


@pytest.mark.parametrize(
    ("index", "changes", "field_name", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BASE_CASES],
)
def test_a_broken_base_value(index: int, changes: dict, field_name: str, fragment: str) -> None:
    problem = the_problem(metro2_file(changed(index, changes)))
    assert_problem(problem, index + 2, "base", field_name, fragment)
    expected_account = changes.get(
        "consumer_account_number", valid_records()[index].base["consumer_account_number"]
    )
    assert problem.account == expected_account


def test_sensitive_values_are_not_quoted() -> None:
    problems = problems_of(
        metro2_file(
            changed(0, {"social_security_number": 666123456, "date_of_birth": dt.date(2030, 1, 1)})
        )
    )
    assert sorted(p.field for p in problems) == ["date_of_birth", "social_security_number"]
    assert not any("666123456" in str(p) or "01012030" in str(p) for p in problems)


def test_a_duplicate_account_number_names_the_first_record() -> None:
    problem = the_problem(metro2_file(changed(1, {"consumer_account_number": "A1"})))
    assert_problem(
        problem, 3, "base", "consumer_account_number", "'A1' is also the account number of record 2"
    )


def test_account_type_48_without_k1() -> None:
    problem = the_problem(metro2_file(changed(2, K1=None)))
    assert_problem(problem, 4, "base", "account_type", "48 (collection) needs a K1 segment")
    assert problem.account == "A3"


def test_a_changed_dofd_is_re_aging() -> None:
    previous = {"A3": dt.date(2025, 5, 1), "A2": LATE["date_of_first_delinquency"]}
    problem = the_problem(metro2_file(), previous_dofd=previous)
    assert_problem(problem, 4, "base", "date_of_first_delinquency", "differs from 05012025")
    assert "re-aging" in problem.message


def test_a_dofd_reported_as_zeros_after_a_previous_one_is_not_re_aging() -> None:
    previous = {"A1": dt.date(2025, 5, 1)}
    assert problems_of(metro2_file(), previous_dofd=previous) == []


# --- values render cannot write: raw text ----------------------------------------------------

# fmt: off
TEXT_CASES = [
    # (id, field, raw text, message fragment)
    ("impossible date", "date_of_last_payment", "02302026", "02302026 is not a real date"),
    ("month 13", "date_opened", "13012024", "13012024 is not a real date"),
    ("date with letters", "date_closed", "0101YYYY", "is not a date (MMDDYYYY"),
    ("time stamp at hour 24", "time_stamp", "03312026240000", "is not a real date"),
    ("lower case", "city", "Austin".ljust(20), "'Austin' has lower case"),
    ("back-tick", "second_line_of_address", "APT `4".ljust(32), "characters Metro 2 does not allow: '`'"),
    ("blank-filled amount", "current_balance", " " * 9, "blank is not a number"),
    ("letters in an amount", "credit_limit", "00000001X", "'00000001X' is not a number"),
    ("non-ASCII in the surname", "surname", "DO\xc9".ljust(25), "non-ASCII byte 0xC9"),
]
# fmt: on


@pytest.mark.parametrize(
    ("field_name", "text", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in TEXT_CASES]
)
def test_a_value_of_the_wrong_kind(field_name: str, text: str, fragment: str) -> None:
    lines = metro2_lines()
    lines[1] = put(lines[1], BASE, field_name, text)
    problem = the_problem("".join(line + "\n" for line in lines).encode("latin-1"))
    assert_problem(problem, 2, "base", field_name, fragment)


def test_a_utf8_name_is_a_non_ascii_problem() -> None:
    lines = metro2_lines()
    data = joined(lines).replace(b"JANE  ", "JOSÉ ".encode(), 1)  # É is two bytes in UTF-8
    problem = the_problem(data)
    assert_problem(problem, 2, "base", "first_name", "non-ASCII byte 0xC3")


def test_a_wrong_rdw() -> None:
    lines = metro2_lines()
    lines[2] = "0427" + lines[2][4:]
    problem = the_problem(joined(lines))
    assert_problem(
        problem, 3, "base", "record_descriptor_word", "says 0427 but the record is 426 bytes"
    )


def test_an_rdw_that_is_not_digits() -> None:
    lines = metro2_lines()
    lines[0] = " 426" + lines[0][4:]
    assert_problem(
        the_problem(joined(lines)), 1, "header", "record_descriptor_word", "' 426' is not 4 digits"
    )


def test_unknown_segment_bytes() -> None:
    lines = metro2_lines()
    lines[3] = "0470" + lines[3][4:] + "N1EMPLOYER"  # K1 then 10 bytes recoup never writes
    problem = the_problem(joined(lines))
    assert_problem(
        problem,
        4,
        "base",
        None,
        "unknown bytes at positions 461-470 after the appended segments: 'N1EMPLOYER'",
    )
    assert problem.account == "A3"


def test_a_cut_off_segment() -> None:
    lines = metro2_lines()
    lines[2] = "0436" + lines[2][4:] + "K1ACME MED"
    assert_problem(
        the_problem(joined(lines)),
        3,
        "base",
        None,
        "K1 segment at position 427 is cut short: 10 of 34 bytes",
    )


def test_segments_out_of_order() -> None:
    records = valid_records()
    records[0].appended = [(K1, dict(CREDITOR)), (J1, dict(SPOUSE))]
    problems = problems_of(metro2_file(records))
    assert [(p.record, p.segment, p.field) for p in problems] == [(2, "J1", "segment_identifier")]
    assert "out of order" in problems[0].message


def test_a_second_k1() -> None:
    records = valid_records()
    records[2].appended.append((K1, dict(CREDITOR)))
    problem = the_problem(metro2_file(records))
    assert_problem(problem, 4, "K1", "segment_identifier", "K1 at position 461 is out of order")


def test_carriage_returns() -> None:
    data = metro2_file().replace(b"\n", b"\r\n")
    problems = problems_of(data)
    assert [(p.record, p.segment, p.message) for p in problems] == [
        (n, "file", "the record ends with a carriage return (CRLF)") for n in range(1, 8)
    ]


def test_an_empty_line() -> None:
    lines = metro2_lines()
    lines.insert(3, "")
    assert_problem(the_problem(joined(lines)), 4, "file", None, "empty line")


def test_no_final_line_break() -> None:
    assert_problem(
        the_problem(metro2_file()[:-1]), 7, "file", None, "does not end with a line break"
    )


# --- appended segments ------------------------------------------------------------------------

# fmt: off
APPENDED_CASES = [
    # (id, record index, segment, changes, field, fragment)
    ("K1 classification 16", 2, "K1", {"creditor_classification": 16}, "creditor_classification", "'16' is not a creditor classification (01-15)"),
    ("K1 without a creditor name", 2, "K1", {"original_creditor_name": ""}, "original_creditor_name", "is blank (required)"),
    ("K2 indicator 3", 4, "K2", {"purchased_sold_indicator": 3}, "purchased_sold_indicator", "'3' is not a purchased/sold indicator"),
    ("K2 indicator 9 with a name", 4, "K2", {"purchased_sold_indicator": 9}, "purchased_sold_name", "must be blank with indicator 9"),
    ("K2 indicator 1 without a name", 4, "K2", {"purchased_sold_name": ""}, "purchased_sold_name", "is blank (required with indicator 1)"),
    ("L1 indicator 1 with a new identification number", 3, "L1", {"new_identification_number": "RECOUP02"}, "new_identification_number", "'RECOUP02' must be blank with change indicator 1"),
    ("L1 indicator 2 with a new account number", 3, "L1", {"change_indicator": 2, "new_identification_number": "RECOUP02"}, "new_consumer_account_number", "'A4-NEW' must be blank with change indicator 2"),
    ("L1 indicator 3 without a new identification number", 3, "L1", {"change_indicator": 3}, "new_identification_number", "is blank (required)"),
    ("L1 indicator 4", 3, "L1", {"change_indicator": 4}, "change_indicator", "'4' is not a change indicator"),
    ("J1 without a surname", 0, "J1", {"surname": ""}, "surname", "is blank (required)"),
    ("J1 without a first name", 0, "J1", {"first_name": ""}, "first_name", "is blank (required)"),
    ("J1 without SSN or DOB", 0, "J1", {"date_of_birth": None}, "social_security_number", "no SSN and no date of birth"),
    ("J1 without ECOA", 0, "J1", {"ecoa_code": ""}, "ecoa_code", "is blank (required)"),
    ("J2 without a city", 3, "J2", {"city": ""}, "city", "is blank (required)"),
    ("J2 with a bad state", 3, "J2", {"state": "XX"}, "state", "'XX' is not a USPS state code"),
    ("J2 with a future date of birth", 3, "J2", {"date_of_birth": dt.date(2027, 1, 1)}, "date_of_birth", "after today"),
]
# fmt: on


@pytest.mark.parametrize(
    ("index", "segment", "changes", "field_name", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in APPENDED_CASES],
)
def test_a_broken_appended_segment(
    index: int, segment: str, changes: dict, field_name: str, fragment: str
) -> None:
    problem = the_problem(metro2_file(changed(index, **{segment: changes})))
    assert_problem(problem, index + 2, segment, field_name, fragment)
    assert problem.account == valid_records()[index].base["consumer_account_number"]


def test_a_j2_business_consumer_needs_no_ssn_or_dob() -> None:
    records = changed(3, J2={"ecoa_code": "W", "social_security_number": None})
    assert problems_of(metro2_file(records)) == []


# --- header and trailer -----------------------------------------------------------------------


def test_header_activity_date_before_a_date_of_account_information() -> None:
    problem = the_problem(metro2_file(header={"activity_date": dt.date(2026, 3, 30)}))
    assert_problem(
        problem,
        1,
        "header",
        "activity_date",
        "03302026 is before the date of account information of 5 base record(s), the latest 03312026 in record 2",
    )


@pytest.mark.parametrize(
    ("changes", "field_name", "fragment"),
    [
        pytest.param({"date_created": dt.date(2026, 4, 6)}, "date_created", "04062026 is after today", id="created tomorrow"),
        pytest.param({"reporter_name": ""}, "reporter_name", "is blank (required)", id="no reporter name"),
        pytest.param({"reporter_address": ""}, "reporter_address", "is blank (required)", id="no reporter address"),
        pytest.param({"date_created": None}, "date_created", "is zeros (required)", id="no date created"),
    ],
)  # fmt: skip
def test_a_broken_header(changes: dict, field_name: str, fragment: str) -> None:
    assert_problem(the_problem(metro2_file(header=changes)), 1, "header", field_name, fragment)


@pytest.mark.parametrize(
    ("changes", "field_name", "fragment"),
    [
        pytest.param({"total_status_code_11": 2}, "total_status_code_11", "is 000000002 but the file has 1 (recomputed", id="status count"),
        pytest.param({"block_count": 6}, "block_count", "is 000000006 but the file has 7", id="block count"),
        pytest.param({"total_ssns_all_segments": 3}, "total_ssns_all_segments", "is 000000003 but the file has 4", id="SSN count"),
        pytest.param({"total_base_records": 4}, "total_base_records", "but the file has 5", id="base count"),
        pytest.param({"total_original_creditor_segments": 0}, "total_original_creditor_segments", "but the file has 2", id="K1 count"),
        pytest.param({"total_ecoa_code_z": 0}, "total_ecoa_code_z", "but the file has 1", id="ECOA Z count"),
        pytest.param({"total_employment_segments": 1}, "total_employment_segments", "but the file has 0", id="N1 count"),
    ],
)  # fmt: skip
def test_a_trailer_count_mismatch(changes: dict, field_name: str, fragment: str) -> None:
    assert_problem(the_problem(metro2_file(trailer=changes)), 7, "trailer", field_name, fragment)


def test_a_missing_trailer() -> None:
    problem = the_problem(joined(metro2_lines()[:-1]))
    assert_problem(problem, 6, "file", None, "no trailer: the file must end with a TRAILER record")


def test_a_missing_header() -> None:
    problem = the_problem(joined(metro2_lines()[1:]))
    assert_problem(problem, 1, "header", "record_identifier", "must start with a HEADER record")


def test_a_record_after_the_trailer() -> None:
    lines = metro2_lines()
    lines.append(lines[1])
    problems = problems_of(joined(lines))
    assert [(p.record, p.segment, p.field) for p in problems] == [
        (7, "trailer", "record_identifier"),
        (8, "base", "consumer_account_number"),
        (8, "file", None),
    ]
    assert "record 8 follows it" in problems[0].message


def test_no_base_records() -> None:
    problems = problems_of(metro2_file(records=[]))
    assert [(p.record, p.segment, p.field) for p in problems] == [(2, "file", None)]
    assert problems[0].message == "the file has no base records"


def test_an_empty_file() -> None:
    assert_problem(the_problem(b""), 1, "file", None, "the file is empty")


def test_a_short_header() -> None:
    lines = metro2_lines()
    lines[0] = "0400" + lines[0][4:400]
    assert_problem(
        the_problem(joined(lines)),
        1,
        "header",
        None,
        "the record is 400 bytes; a header is 426 bytes",
    )


# --- reporting ------------------------------------------------------------------------------


def test_check_file_raises_naming_record_and_field() -> None:
    with pytest.raises(Metro2Invalid) as raised:
        check_file(metro2_file(changed(0, {"account_status": "XX"})), today=TODAY)
    assert (
        str(raised.value.problems[0])
        == "record 2 (base, account A1): account_status (124-125): 'XX' is not an account status"
    )
    assert "record 2 (base, account A1): account_status (124-125)" in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_problem_str_without_a_field_or_account() -> None:
    assert str(Problem(7, "file", None, "empty line")) == "record 7 (file): empty line"
    assert (
        str(Problem(4, "K1", "creditor_classification", "x", "A3"))
        == "record 4 (K1, account A3): creditor_classification (33-34): x"
    )


def test_many_broken_records_stop_at_the_cap() -> None:
    broken = Record(CURRENT | {"account_status": "XX", "state": "ZZ"})
    records = [
        replace(broken, base=broken.base | {"consumer_account_number": f"B{n}"}) for n in range(600)
    ]
    problems = problems_of(metro2_file(records))
    assert len(problems) == MAX_PROBLEMS
    assert problems[-1].segment == "file"
    assert problems[-1].message.startswith(f"stopped after {MAX_PROBLEMS - 1} problems")
    assert [p.record for p in problems[:-1]] == sorted(p.record for p in problems[:-1])
    with pytest.raises(Metro2Invalid, match=r"and 995 more"):
        check_file(metro2_file(records), today=TODAY)
