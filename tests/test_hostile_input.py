"""Hostile and broken input (issue #12): one test per row of docs/hostile-input.md that no
other test file proves already. Each test feeds recoup one bad thing and checks what the
catalog says recoup does with it: refuse the file with a clear message and write nothing,
quarantine the row with its reason while the good rows load, or keep the value as text that
nothing interprets (SQL, HTML, Typst markup, spreadsheet formulas)."""

from __future__ import annotations

import ast
import csv
import dataclasses
import datetime as dt
import email
import io
import json
import os
import re
import zoneinfo
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from flows.lib.config import Settings, load_settings
from flows.lib.contract import ENTITIES, MAX_TEXT_CHARS
from flows.lib.email_events import import_spool, incoming_folder
from flows.lib.export_files import BatchError, batch_folders, inbox_batch_folders
from flows.lib.letters import letter_pdf
from flows.lib.loader import BatchOutcome, load_batch
from flows.lib.output_files import csv_bytes, safe_cell
from flows.lib.templates import ContactContext, render_email
from flows.lib.warehouse import open_warehouse, scalar
from flows.webhook import create_app
from tests.builders import DEFAULTS, csv_text, row, write_batch

unit = pytest.mark.unit
integration = pytest.mark.integration

SQL = "'); drop table raw.customers; --"
HTML_NAME = '<script>alert(1)</script> "Pepe" & Núñez'
FORMULA = '=HYPERLINK("http://evil.example","click")'
# Typst markup and code a letter must print as it is (sys.inputs is data, not markup)
TYPST = '#sys.exit() *bold* $x^2$ _u_ \\ "q" // @label'


def customer(**values: str) -> dict[str, str]:
    """A customer without an SSN or a date of birth: nothing here is about identity data."""
    return row("customers", ssn="", date_of_birth="", **values)


def a_batch(folder: Path, **extra: list[dict[str, str]] | str) -> Path:
    """One customer C1 with one USD account A1, plus the given files."""
    files: dict[str, list[dict[str, str]] | str] = {
        "customers": [customer()],
        "accounts": [row("accounts")],
    }
    return write_batch(folder, **{**files, **extra})


def quarantined(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    return connection.execute(
        "select entity, line_number, status, reason_codes, reasons "
        "from raw.quarantine order by entity, line_number"
    ).fetchall()


def nothing_written(connection: duckdb.DuckDBPyConnection) -> bool:
    tables = ("raw.customers", "raw.accounts", "raw.invoices", "raw.load_batches",
              "raw.load_files", "raw.quarantine")  # fmt: skip
    return all(scalar(connection, f"select count(*) from {table}") == 0 for table in tables)


def nothing_lost(outcome: BatchOutcome) -> bool:
    """Every row read is either loaded or quarantined."""
    return all(
        file.rows_read == file.rows_loaded + file.rows_quarantined
        for file in outcome.files
        if file.status == "loaded"
    )


# --- file names and links in an inbox ------------------------------------------------------


@integration
@pytest.mark.parametrize(
    "target",
    [
        pytest.param(lambda outside: outside, id="absolute link"),
        pytest.param(lambda outside: Path("..", "..", "elsewhere", outside.name), id="../ link"),
    ],
)
def test_an_export_file_linked_to_a_file_outside_its_batch_is_refused(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, target: Callable[[Path], Path]
) -> None:
    outside = write_batch(tmp_path / "elsewhere", customers=[customer(full_name="Not Yours")])
    folder = a_batch(tmp_path / "inbox" / "2026-11-03")
    (folder / "customers.csv").unlink()
    (folder / "customers.csv").symlink_to(target(outside / "customers.csv"))
    assert (folder / "customers.csv").read_text(encoding="utf-8")  # the link does resolve

    with pytest.raises(BatchError, match=r"customers\.csv in .*2026-11-03 is a symbolic link to a "
                       r"file outside that folder.*Nothing from this batch was loaded"):  # fmt: skip
        load_batch(warehouse, folder)
    assert nothing_written(warehouse)


@integration
def test_a_link_that_stays_inside_the_batch_folder_is_read(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "exports").mkdir()
    (folder / "customers.csv").rename(folder / "exports" / "customers-2026-11-03.csv")
    (folder / "customers.csv").symlink_to(Path("exports", "customers-2026-11-03.csv"))
    assert load_batch(warehouse, folder).rows_loaded == 2


@integration
def test_a_batch_folder_linked_from_outside_the_inbox_is_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    a_batch(inbox / "2026-11-02")
    outside = a_batch(tmp_path / "elsewhere" / "secret-batch")
    (inbox / "2026-11-03").symlink_to(outside, target_is_directory=True)
    for list_batches in (inbox_batch_folders, batch_folders):  # the daily run; `recoup ingest`
        with pytest.raises(BatchError, match=r"2026-11-03 in .*inbox is a symbolic link to a "
                           r"folder outside it.*Nothing was loaded"):  # fmt: skip
            list_batches(inbox)


ODD_NAMES = [
    pytest.param("customers\n.csv", "'customers\\\\n' is not an entity", id="a line break"),
    pytest.param("customers.csv\r", "only CSV", id="a carriage return after the suffix"),
    pytest.param("customers .csv", "'customers ' is not an entity", id="a space before the dot"),
    pytest.param("ｃｕｓｔｏｍｅｒｓ.csv", "'ｃｕｓｔｏｍｅｒｓ' is not", id="full-width letters"),  # noqa: RUF001
    pytest.param("customers.csv.exe", "only CSV", id="a second suffix"),
    pytest.param("-customers.csv", "'-customers' is not an entity", id="a leading dash"),
]


@integration
@pytest.mark.parametrize(("name", "message"), ODD_NAMES)
def test_an_export_file_with_an_odd_name_fails_the_batch_with_a_one_line_message(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, message: str
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "customers.csv").rename(folder / name)
    with pytest.raises(BatchError, match=message) as refused:
        load_batch(warehouse, folder)
    assert str(refused.value).isprintable()  # no line break to forge a log line with
    assert nothing_written(warehouse)


@integration
def test_other_odd_names_are_ignored_and_listed_printably(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "README\n2026-11-03 12:00 INFO everything loaded.txt").write_text("x")
    (folder / ".customers.csv").write_text(csv_text("customers", [customer(customer_id="C9")]))
    (folder / "Icon\r").write_bytes(b"")  # what macOS leaves in a folder with a custom icon
    outcome = load_batch(warehouse, folder)
    assert outcome.rows_loaded == 2  # the hidden copy of customers.csv is not read
    assert set(outcome.ignored) == {
        ".customers.csv", "'Icon\\r'", "'README\\n2026-11-03 12:00 INFO everything loaded.txt'",
    }  # fmt: skip
    assert all(name.isprintable() for name in outcome.ignored)


# --- broken and huge content ---------------------------------------------------------------


@integration
@pytest.mark.parametrize(
    ("field", "code", "reason"),
    [
        pytest.param("x" * 10_000_000, "unreadable_row",
                     "the row is 10,000,1\\d\\d bytes; a row may be at most 2,000,000 bytes",
                     id="a 10 MB cell"),
        pytest.param("x" * 100_000, "too_long",
                     "full_name is 100,000 characters long; at most 1,000 are accepted",
                     id="a 100,000-character name"),
        pytest.param("x" * (MAX_TEXT_CHARS + 1), "too_long", "is 1,001 characters long",
                     id="one character over the limit"),
    ],
)  # fmt: skip
def test_a_huge_field_quarantines_its_row_and_the_others_load(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, field: str, code: str, reason: str
) -> None:
    customers = [
        customer(),
        customer(customer_id="C2", full_name=field),
        customer(customer_id="C3"),
    ]
    outcome = load_batch(warehouse, a_batch(tmp_path / "b1", customers=customers))
    assert nothing_lost(outcome)
    assert warehouse.execute("select customer_id from raw.customers order by 1").fetchall() == [
        ("C1",), ("C3",),
    ]  # fmt: skip
    [(entity, line, status, codes, reasons)] = quarantined(warehouse)
    assert (entity, line, status, codes) == ("customers", 3, "rejected", [code])
    assert re.search(reason, reasons)


@integration
def test_a_name_at_the_limit_loads(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    name = "x" * MAX_TEXT_CHARS
    load_batch(warehouse, a_batch(tmp_path / "b1", customers=[customer(full_name=name)]))
    assert warehouse.execute("select full_name from raw.customers").fetchall() == [(name,)]


@integration
@pytest.mark.parametrize(
    ("values", "column"),
    [
        pytest.param({"full_name": "Ann\nBcc: someone@evil.example"}, "full_name",
                     id="a line break in a name (an extra envelope line, a broken email header)"),
        pytest.param({"address_line1": "1 Main St\x1b[2J"}, "address_line1",
                     id="a terminal escape in an address"),
        pytest.param({"email": "ann\t@example.com"}, "email", id="a tab in an email address"),
    ],
)  # fmt: skip
def test_a_control_character_in_one_line_text_quarantines_the_row(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, values: dict[str, str], column: str
) -> None:
    customers = [customer(customer_id="C2", **values), customer()]
    outcome = load_batch(warehouse, a_batch(tmp_path / "b1", customers=customers))
    assert nothing_lost(outcome)
    assert warehouse.execute("select customer_id from raw.customers").fetchall() == [("C1",)]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes) == (2, ["control_character"])
    assert reasons.startswith(f"{column} holds a line break, a tab or another control character")


@integration
def test_a_nul_byte_quarantines_its_row_and_line_breaks_stay_in_a_description(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A NUL byte in the first 64 KiB marks the file as binary (refused, like a PNG: see
    tests/test_ingest_contract.py); further down, or in Parquet, it quarantines its row."""
    padding = [row("invoices", invoice_id=f"I{n}", description="y" * 100) for n in range(700)]
    invoices = [
        *padding,
        row("invoices", invoice_id="NUL", description="meter\x00reading"),
        row("invoices", invoice_id="MULTI", description="Service period:\n\tOctober 2026"),
    ]
    folder = a_batch(tmp_path / "b1", invoices=invoices)
    assert (folder / "invoices.csv").read_bytes().index(b"\x00") > 1 << 16
    outcome = load_batch(warehouse, folder)
    assert nothing_lost(outcome)
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes) == (702, ["control_character"])
    assert reasons.startswith("description holds a NUL byte")
    assert warehouse.execute(
        "select description from raw.invoices where invoice_id = 'MULTI'"
    ).fetchall() == [("Service period:\n\tOctober 2026",)]


@integration
def test_a_header_that_is_not_utf8_fails_the_batch(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = a_batch(tmp_path / "b1")
    path = folder / "accounts.csv"
    path.write_bytes(path.read_bytes().replace(b"segment", b"s\xe9gment", 1))  # Latin-1 e-acute
    with pytest.raises(BatchError, match=r"accounts\.csv: the header row is not UTF-8 text"):
        load_batch(warehouse, folder)
    assert nothing_written(warehouse)


@integration
def test_a_latin1_export_loads_its_ascii_rows_and_quarantines_the_others(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    customers = [customer(full_name="José Núñez"), customer(customer_id="C2", full_name="Ann Lee")]
    folder = a_batch(
        tmp_path / "b1", customers=customers, accounts=[row("accounts", customer_id="C2")]
    )
    path = folder / "customers.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    outcome = load_batch(warehouse, folder)
    assert nothing_lost(outcome)
    assert warehouse.execute("select full_name from raw.customers").fetchall() == [("Ann Lee",)]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes, reasons) == (2, ["unreadable_row"], "holds bytes that are not UTF-8 text")


def parquet_of(rows: list[dict[str, str]], path: Path) -> Path:
    columns = {name: [each[name] for each in rows] for name in rows[0]}
    pq.write_table(pa.table(columns), path, row_group_size=500)
    return path


@integration
def test_a_binary_parquet_column_is_read_as_utf8_and_other_bytes_quarantine_their_row(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "customers.csv").unlink()
    values = {name: [value, value] for name, value in customer().items()}
    values["customer_id"] = ["C1", "C2"]
    names = ["Zoë Brontë".encode(), "Café".encode("latin-1")]  # the second is not UTF-8
    table = pa.table({name: pa.array([v.encode() for v in column], pa.binary())
                      for name, column in values.items()} | {"full_name": pa.array(names)})  # fmt: skip
    pq.write_table(table, folder / "customers.parquet")
    outcome = load_batch(warehouse, folder)
    assert nothing_lost(outcome)
    # a plain cast would have loaded the ten characters 'Zo\xC3\xAB Bront\xC3\xAB'
    assert warehouse.execute("select full_name from raw.customers").fetchall() == [("Zoë Brontë",)]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes, reasons) == (2, ["unreadable_row"], "holds bytes that are not UTF-8 text")


@integration
def test_a_parquet_string_that_is_not_utf8_fails_the_batch(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "customers.csv").unlink()
    names = pa.array([b"Ann Lee", b"Caf\xe9"], pa.binary()).view(pa.string())  # unchecked
    values = {name: [value, value] for name, value in customer().items()}
    pq.write_table(pa.table({**values, "full_name": names}), folder / "customers.parquet")
    with pytest.raises(BatchError, match="customers.parquet: cannot read this Parquet file "
                       r"\(.*not valid UTF8"):  # fmt: skip
        load_batch(warehouse, folder)
    assert nothing_written(warehouse)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupted_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 200] = bytes(byte ^ 0xFF for byte in data[middle : middle + 200])
    path.write_bytes(bytes(data))


@integration
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_truncated, "customers.parquet is not a readable Parquet file",
                     id="cut in half (no footer)"),
        pytest.param(_corrupted_in_the_middle, "customers.parquet: cannot read this Parquet file",
                     id="footer intact, data pages damaged"),
        pytest.param(lambda path: path.write_bytes(b""),
                     "customers.parquet is not a readable Parquet file", id="0 bytes"),
    ],
)  # fmt: skip
def test_a_damaged_parquet_file_fails_the_batch_and_writes_nothing(
    warehouse: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    damage: Callable[[Path], object],
    message: str,
) -> None:
    folder = a_batch(tmp_path / "b1")
    (folder / "customers.csv").unlink()
    rows = [customer(customer_id=f"C{n}", full_name=f"Customer {n}") for n in range(2_000)]
    damage(parquet_of(rows, folder / "customers.parquet"))
    with pytest.raises(BatchError, match=message):
        load_batch(warehouse, folder)
    assert nothing_written(warehouse)


@integration
def test_a_csv_cut_inside_a_quoted_field_fails_the_batch(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    text = csv_text("invoices", [row("invoices"), row("invoices", invoice_id="I2",
                                                     description='a "quoted" note')])  # fmt: skip
    folder = a_batch(tmp_path / "b1", invoices=text[: text.index('""quoted') + 3])
    with pytest.raises(BatchError, match=r"invoices\.csv: line 3 opens a quoted field that "
                       r"never closes.*Nothing from this batch was loaded"):  # fmt: skip
        load_batch(warehouse, folder)
    assert nothing_written(warehouse)


@integration
def test_a_csv_cut_inside_a_row_quarantines_that_row(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    text = csv_text("invoices", [row("invoices"), row("invoices", invoice_id="I2")])
    folder = a_batch(tmp_path / "b1", invoices=text[: text.index("I2") + 20])
    outcome = load_batch(warehouse, folder)
    assert nothing_lost(outcome)
    assert warehouse.execute("select invoice_id from raw.invoices").fetchall() == [("I1",)]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes, reasons) == (3, ["unreadable_row"], "has 4 fields; the header has 8")


# --- SQL-looking strings --------------------------------------------------------------------

KEYS = {"C1", "A1", "I1", "P1", "ADJ1", "D1", "PL1"}  # the builders' default ids
LINKS = {"invoice_id": "I1", "account_id": "A1"}  # optional links the defaults leave empty


def sql_everywhere() -> dict[str, list[dict[str, str]]]:
    """One row per entity with SQL in every text column: appended to ids (so the links
    between the rows still hold), the whole value elsewhere."""
    files = {}
    for entity in ENTITIES:
        values = dict(DEFAULTS[entity.name])
        if entity.name == "customers":
            values |= {"ssn": "", "date_of_birth": ""}
        for column in entity.columns:
            if column.kind != "text":
                continue
            value = values[column.name] or LINKS.get(column.name, "")
            if column.name == "reverses_payment_id":
                continue  # a reversal must undo a payment of the same amount: not this row
            values[column.name] = value + SQL if value in KEYS else SQL
        files[entity.name] = [values]
    return files


@integration
def test_sql_in_every_text_column_of_every_entity_loads_as_text(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    tables = "select count(*) from duckdb_tables() where not temporary"
    before = scalar(warehouse, tables)
    files = sql_everywhere()
    outcome = load_batch(warehouse, write_batch(tmp_path / "b1", **files))
    assert (outcome.rows_loaded, outcome.rows_quarantined) == (len(ENTITIES), 0)
    for entity in ENTITIES:
        text = [column.name for column in entity.columns if column.kind == "text"]
        stored = warehouse.execute(f"select {', '.join(text)} from raw.{entity.name}").fetchall()
        assert stored == [tuple(files[entity.name][0][name] or None for name in text)], entity
    assert scalar(warehouse, tables) == before  # no table dropped, none added
    assert scalar(warehouse, "select count(*) from raw.customers") == 1


@integration
def test_sql_in_a_typed_column_is_quarantined_and_quoted_in_the_reason(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    invoices = [row("invoices"), row("invoices", invoice_id="I2", amount="1" + SQL,
                                     due_date="2026-01-31" + SQL, currency=SQL)]  # fmt: skip
    outcome = load_batch(warehouse, a_batch(tmp_path / "b1", invoices=invoices))
    assert nothing_lost(outcome)
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes) == (3, ["bad_date", "bad_amount", "unknown_currency", "currency_mismatch"])
    assert f"amount '1{SQL}'" in reasons  # shown as text, not run
    assert scalar(warehouse, "select count(*) from raw.customers") == 1


# --- markup in names, addresses and invoice numbers: emails and letters -----------------------


def hostile_context(template: str) -> ContactContext:
    from tests.test_templates import a_context

    context = a_context(template, "en")
    return dataclasses.replace(
        context,
        customer_name=HTML_NAME,
        mailing_address=(TYPST, "<img src=x onerror=alert(1)>", "Austin, TX 78701"),
        account_id="=A1" + SQL,
        items=tuple(
            dataclasses.replace(item, reference=f'#panic("{n}") <b>N-{n}</b>')
            for n, item in enumerate(context.items)
        ),
    )


@unit
@pytest.mark.parametrize("template", ["reminder_1", "reminder_2"])
def test_markup_in_a_name_and_an_invoice_number_is_text_in_both_parts_of_an_email(
    template: str,
) -> None:
    context = hostile_context(template)
    rendered = render_email(context)
    assert "<script" not in rendered.html and "<img" not in rendered.html
    for value in (context.customer_name, *(item.reference for item in context.items)):
        assert value not in rendered.html
        assert str(escape(value)) in rendered.html
        assert value in rendered.text  # the plain-text part is not HTML: as it is


@unit
@pytest.mark.parametrize("template", ["final_notice", "pre_placement_notice"])
def test_markup_in_a_name_an_address_and_an_invoice_number_prints_as_text_in_a_letter(
    template: str,
) -> None:
    from tests.test_templates import CREATED, a_context, pdf_pages

    plain = pdf_pages(letter_pdf(a_context(template, "en"), title="x", created=CREATED))
    context = hostile_context(template)
    pages = pdf_pages(letter_pdf(context, title="x", created=CREATED))
    assert len(pages) == len(plain)  # no markup changed the layout
    lines = "\n".join(pages).splitlines()
    for value in (context.customer_name, *context.mailing_address):
        assert value in lines  # the address block, exactly as given
    text = " ".join("\n".join(pages).split())
    assert all(item.reference in text for item in context.items)
    assert "Account: =A1" in text


# --- spreadsheet formulas in every CSV recoup writes -------------------------------------------

CSV_WRITERS = {  # module → the CSV files it writes (all through output_files.csv_bytes)
    "flows/daily_dunning.py": ("dry_run_<run>_plan.csv",),
    "flows/lib/printing.py": ("print_manifest_<run>.csv",),
    "flows/lib/work_queue.py": ("work_queue_<run>.csv",),
    "flows/lib/servicing.py": ("refund_queue.csv", "discrepancies.csv"),
    "flows/lib/skip_tracing.py": ("skip_requests.csv",),
    "flows/lib/agency_placement.py": ("placements.csv", "recalls.csv"),
    "flows/lib/bureau_file.py": ("not_reported.csv",),
    "flows/lib/settlements.py": ("write_off_recommendations.csv",),
    "flows/lib/legal_referral.py": (
        "referrals.csv",
        "referral_items.csv",
        "referral_history.csv",
        "withdrawals.csv",
    ),
    "flows/lib/credit_holds.py": (
        "credit_holds.csv",
        "credit_hold_releases.csv",
        "open_credit_holds.csv",
    ),
}
REPOSITORY = Path(__file__).resolve().parents[1]


@unit
def test_every_csv_recoup_writes_goes_through_csv_bytes_and_is_in_the_catalog() -> None:
    writers, other_writers = set(), []
    for path in sorted((REPOSITORY / "flows").rglob("*.py")):
        name = str(path.relative_to(REPOSITORY))
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "csv_bytes":
                writers.add(name)
            if isinstance(node, ast.Attribute) and node.attr in {"writer", "DictWriter",
                                                                 "to_csv", "write_csv"}:  # fmt: skip
                other_writers.append(name)
        if re.search(r"\bcopy\s*\(", source, re.IGNORECASE):
            other_writers.append(name)
    # output_files holds csv_bytes itself; demo_data writes the demo billing export (input)
    assert sorted(set(other_writers)) == ["flows/lib/demo_data.py", "flows/lib/output_files.py"]
    assert writers == set(CSV_WRITERS), "a new CSV writer: add it here, to the catalog and a test"
    catalog = (REPOSITORY / "docs" / "hostile-input.md").read_text(encoding="utf-8")
    for files in CSV_WRITERS.values():
        for file in files:
            assert f"`{file}`" in catalog, file


@unit
def test_every_test_the_catalog_cites_exists() -> None:
    catalog = (REPOSITORY / "docs" / "hostile-input.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(hostile|test_\w+\.py)::((?:\w+::)?test_\w+)(?:\[[^`]*\])?`", catalog)
    assert len(cited) > 50
    for file, name in cited:
        path = Path(__file__) if file == "hostile" else Path(__file__).with_name(file)
        source = path.read_text(encoding="utf-8")
        *classes, function = name.split("::")
        assert all(f"class {each}" in source for each in classes), (file, name)
        assert f"def {function}(" in source, (file, name)


@unit
@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1+cmd|' /C calc'!A0", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1+1", "=A1" + SQL],
)
def test_a_cell_that_starts_like_a_formula_starts_with_a_quote(value: str) -> None:
    assert safe_cell(value) == "'" + value


@unit
def test_a_carriage_return_in_a_cell_cannot_end_the_row() -> None:
    """Python's csv module quotes a cell holding a line feed, not one holding only a carriage
    return; a spreadsheet would end the row there and read "=1+1" as the next row's formula."""
    data = csv_bytes(("name", "city"), [("Ann\r=1+1", "\r=2+2"), ("Bo\r\nLee", "Austin")])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows == [["name", "city"], ["Ann\n=1+1", "'\n=2+2"], ["Bo\nLee", "Austin"]]
    assert b"\r" not in data


NUMBER_LIKE = re.compile(r"[+\-]?[\d\s().+\-]*\d[\d\s().]*")


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@integration
def test_placement_and_recall_files_defuse_formulas_in_every_field(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from flows.lib.agency_placement import agency_file, place_and_recall
    from tests.agency_fixtures import (
        AS_OF,
        a_customer,
        an_account,
        an_agency,
        held,
        make_agency_marts,
        settings_with,
    )

    hostile = {
        "full_name": FORMULA, "address_line1": "+cmd|' /C calc'!A0", "address_line2": "-2+3+cmd|x",
        "city": "@SUM(A1:A9)", "state": "\t=1+1", "postal_code": "\r=1+1", "phone": "=1+1",
        "email": "=x@evil.example",
    }  # fmt: skip
    account, customer_id = "=A1" + SQL, "@C1" + SQL
    settings = settings_with(tmp_path, an_agency("alpha"))
    make_agency_marts(warehouse, [an_account(account, customer_id=customer_id)],
                      customers=[a_customer(customer_id, **hostile)])  # fmt: skip
    now = dt.datetime(2026, 3, 31, 7, tzinfo=dt.UTC)
    place_and_recall(warehouse, settings, as_of=AS_OF, run_id="run-1", now=now)
    root = tmp_path / "out" / "agencies"
    [placed] = csv_rows(agency_file(root, "alpha", AS_OF, "placements"))
    for column, value in {**hostile, "account_id": account, "customer_id": customer_id}.items():
        assert placed[column] == "'" + value.replace("\r", "\n"), column

    later = AS_OF + dt.timedelta(days=3)
    make_agency_marts(warehouse, [held("bankruptcy", account, customer_id=customer_id)], as_of=later,
                      customers=[a_customer(customer_id, **hostile)])  # fmt: skip
    place_and_recall(warehouse, settings, as_of=later, run_id="run-2", now=now)
    [recalled] = csv_rows(agency_file(root, "alpha", later, "recalls"))
    assert recalled["account_id"] == "'" + account


@integration
def test_the_bureau_s_not_reported_file_defuses_a_formula_in_an_account_id(tmp_path: Path) -> None:
    from flows.lib.bureau_file import generate_bureau_file
    from tests.bureau_fixtures import World, bureau_settings

    october = dt.date(2026, 10, 31)
    world = World()
    world.account("L71")
    world.owes("L71", october, "250.75", 45)
    world.account(FORMULA)
    world.owes(FORMULA, october, "100.00", 45)
    world.flagged(FORMULA, "fraud", dt.date(2026, 10, 1))
    connection = duckdb.connect(":memory:")
    world.write(connection)
    outcome = generate_bureau_file(
        connection, bureau_settings(tmp_path), "2026-10", today=dt.date(2026, 12, 1),
        now=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC),
    )  # fmt: skip
    connection.close()
    rows = csv_rows(outcome.path.parent / "not_reported.csv")
    assert rows == [{"account_id": "'" + FORMULA, "reason": "fraud"}]


@unit
def test_the_write_off_file_defuses_a_formula_in_an_approver_and_an_account_id() -> None:
    from flows.lib.settlements import WRITE_OFF_COLUMNS, ensure_write_off_schema, file_rows

    connection = duckdb.connect(":memory:")
    connection.execute("create schema ops")
    ensure_write_off_schema(connection)
    connection.execute(
        "insert into ops.write_off_recommendations values ('r1', ?, 'AG1', '2026-10-01', ?, "
        "'USD', 80.00, 80.00, 20.00, 'settled_for_less', '2026-11-03', 'run', 'f', now())",
        [FORMULA, '=HYPERLINK("http://x.example")'],
    )
    text = csv_bytes(WRITE_OFF_COLUMNS, file_rows(connection, D)).decode("utf-8")
    [line] = list(csv.DictReader(io.StringIO(text)))
    assert line["account_id"] == "'" + FORMULA
    assert line["approved_by"] == '\'=HYPERLINK("http://x.example")'


# --- one hostile batch through ingest, dbt and every contact step -----------------------------

D = dt.date(2026, 11, 3)  # a Tuesday
NOON = dt.datetime(2026, 11, 3, 12, tzinfo=zoneinfo.ZoneInfo("America/Chicago"))
MAIL, LETTER, CREDIT = "A-MAIL" + SQL, "=A-LETTER" + SQL, "+A-CREDIT" + SQL
LETTER_ADDRESS = (TYPST, "<img src=x onerror=alert(1)>")
LETTER_CITY = "@SUM(A1:A9)"


def day(offset: int) -> str:
    return (D + dt.timedelta(days=offset)).isoformat()


def hostile_batch(folder: Path) -> Path:
    """Three accounts, SQL appended to every id and in the free text: one gets a reminder
    email (an HTML name), one a final-notice letter (a formula name, Typst markup in the
    address), one overpaid an invoice (a refund due, a payment discrepancy)."""
    customers = [
        customer(
            customer_id="C-MAIL" + SQL,
            full_name=HTML_NAME,
            email="mail@example.com",
            address_line1="<img src=x onerror=alert(1)>",
            address_line2=SQL,
        ),
        customer(
            customer_id="C-LETTER" + SQL,
            full_name=FORMULA,
            email="letter@example.com",
            address_line1=LETTER_ADDRESS[0],
            address_line2=LETTER_ADDRESS[1],
            city=LETTER_CITY,
            phone="-2+3+cmd|' /C calc'!A0",
        ),
    ]
    accounts = [
        row("accounts", account_id=MAIL, customer_id="C-MAIL" + SQL, segment=SQL),
        row("accounts", account_id=LETTER, customer_id="C-LETTER" + SQL),
        row("accounts", account_id=CREDIT, customer_id="C-MAIL" + SQL),
    ]
    invoices = [
        row(
            "invoices",
            invoice_id="I-MAIL" + SQL,
            account_id=MAIL,
            invoice_number="<b>N-1</b><script>x</script>",
            issue_date=day(-33),
            due_date=day(-3),
            description=SQL,
        ),
        row(
            "invoices",
            invoice_id="I-LETTER" + SQL,
            account_id=LETTER,
            invoice_number='#panic("inv") $x$ \\ "q"',
            issue_date=day(-70),
            due_date=day(-40),
            amount="200.00",
        ),
        row(
            "invoices",
            invoice_id="I-CREDIT" + SQL,
            account_id=CREDIT,
            invoice_number=SQL,
            issue_date=day(-70),
            due_date=day(-60),
            amount="100.00",
        ),
    ]
    payments = [
        row(
            "payments",
            payment_id="P-FRESH" + SQL,
            account_id=MAIL,
            amount="20.00",
            received_date=day(-1),
        ),  # gate 1 wants a recent payment
        row(
            "payments",
            payment_id="P-OVER" + SQL,
            account_id=CREDIT,
            invoice_id="I-CREDIT" + SQL,
            amount="150.00",
            received_date=day(-45),
        ),
    ]
    adjustments = [
        row(
            "adjustments",
            adjustment_id="ADJ" + SQL,
            account_id=LETTER,
            amount="15.00",
            effective_date=day(-20),
            reason=SQL,
        ),
    ]
    return write_batch(folder, customers=customers, accounts=accounts, invoices=invoices,
                       payments=payments, adjustments=adjustments)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HostileRun:
    settings: Settings
    files: dict[str, Path]  # the run's CSV files by catalog name

    def connect(self) -> duckdb.DuckDBPyConnection:
        return open_warehouse(self.settings.warehouse_path, read_only=True)


@pytest.fixture(scope="module")
def hostile_run(prefect_api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileRun]:
    """The batch loaded and built (dbt) for D; the dry run's plan through the daily-dunning
    flow; then the contact and servicing steps of a real run, and one call queued."""
    from flows.daily_dunning import daily_dunning
    from flows.lib.dbt_build import build_warehouse
    from flows.lib.emailing import send_planned_emails
    from flows.lib.gates import record_build
    from flows.lib.planner import build_plan, commit_plan
    from flows.lib.printing import print_planned_letters
    from flows.lib.senders import OutboxSender
    from flows.lib.servicing import write_servicing_queues
    from flows.lib.work_queue import queue_planned_work
    from tests.contact_fixtures import contacted

    home = tmp_path_factory.mktemp("hostile-home")
    settings = load_settings({"RECOUP_HOME": str(home)})
    connection = open_warehouse(settings.warehouse_path)
    outcome = load_batch(connection, hostile_batch(home / "batch"))
    assert outcome.rows_quarantined == 0
    connection.close()
    build_warehouse(settings.warehouse_path, settings.path("state"), D,
                    variables=settings.dbt_vars())  # fmt: skip
    connection = open_warehouse(settings.warehouse_path)
    record_build(connection, D)
    connection.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECOUP_HOME", str(home))
        for name in list(os.environ):
            if name.startswith("RECOUP_") and name != "RECOUP_HOME":
                patch.delenv(name)
        dry = daily_dunning(as_of=D, dry_run=True, only=["gates", "contact"])
    connection = open_warehouse(settings.warehouse_path)
    try:
        commit_plan(connection, build_plan(connection, settings.contact, D, "run-1"))
        sender = OutboxSender.from_settings(settings, settings.path("outbox") / D.isoformat())
        send_planned_emails(
            connection, settings, sender, as_of=D, run_id="run-1", now=NOON.astimezone(dt.UTC)
        )
        letters = print_planned_letters(connection, settings, as_of=D, run_id="run-1", now=NOON)
        servicing = write_servicing_queues(connection, settings.path("out"), D)
        # a call comes a week after the letter; plan it for today to queue it now
        contacted(connection, account_id=LETTER, customer_id="C-LETTER" + SQL,
                  stage="manager_review", day=D, status="planned")  # fmt: skip
        queue = queue_planned_work(connection, settings, as_of=D, run_id="run-1", now=NOON)
    finally:
        connection.close()
    refunds, discrepancies = (Path(file) for file in servicing.files)
    files = {
        "dry_run_<run>_plan.csv": Path(dry.files[0]),
        "print_manifest_<run>.csv": Path(letters.files[0]),
        "work_queue_<run>.csv": Path(queue.files[0]),
        "refund_queue.csv": refunds,
        "discrepancies.csv": discrepancies,
    }
    yield HostileRun(settings, files)


@integration
@pytest.mark.slow
def test_sql_strings_pass_through_ingest_dbt_and_the_contact_steps_as_text(
    hostile_run: HostileRun,
) -> None:
    connection = hostile_run.connect()
    try:
        stored = connection.execute(
            "select customer_id, address_line2 from marts.dim_customers order by 1"
        ).fetchall()
        contacts = connection.execute(
            "select account_id, channel, status from ops.action_ledger order by 1, 2"
        ).fetchall()
        segments = connection.execute(
            "select distinct segment from marts.dim_accounts order by 1"
        ).fetchall()
    finally:
        connection.close()
    assert stored == [("C-LETTER" + SQL, LETTER_ADDRESS[1]), ("C-MAIL" + SQL, SQL)]
    assert segments == [(SQL,), ("residential",)]
    assert contacts == [
        (LETTER, "letter", "sent"), (LETTER, "phone", "sent"), (MAIL, "email", "sent"),
    ]  # fmt: skip


@integration
@pytest.mark.slow
def test_the_reminder_email_escapes_the_name_in_html_and_keeps_it_plain_in_text(
    hostile_run: HostileRun,
) -> None:
    [path] = (hostile_run.settings.path("outbox") / D.isoformat()).glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script" not in html and "<b>N-1</b>" not in html
    assert str(escape(HTML_NAME)) in html and str(escape("<b>N-1</b><script>x</script>")) in html
    assert HTML_NAME in text and "<b>N-1</b><script>x</script>" in text
    assert message["To"].addresses[0].display_name == HTML_NAME
    assert "A-MAIL%27%29%3B%20drop%20table%20raw.customers%3B%20--" in text  # the pay link


@integration
@pytest.mark.slow
def test_the_letter_prints_markup_in_the_name_and_address_as_text(hostile_run: HostileRun) -> None:
    from tests.test_templates import pdf_pages

    manifest = hostile_run.files["print_manifest_<run>.csv"]
    [entry] = csv_rows(manifest)
    pages = pdf_pages((manifest.parent / entry["file"]).read_bytes())
    lines = "\n".join(pages).splitlines()
    assert FORMULA in lines and all(line in lines for line in LETTER_ADDRESS)
    assert f"{LETTER_CITY}, TX 78701" in lines
    assert '#panic("inv") $x$ \\ "q"' in " ".join("\n".join(pages).split())


@integration
@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "columns"),
    [
        pytest.param("dry_run_<run>_plan.csv", {"account_id"}, id="dry-run plan"),
        pytest.param("print_manifest_<run>.csv",
                     {"account_id", "recipient_name", "address_line3"}, id="print manifest"),
        pytest.param("work_queue_<run>.csv", {"account_id", "customer_name", "phone"},
                     id="work queue"),
        pytest.param("refund_queue.csv", {"account_id"}, id="refund queue"),
        pytest.param("discrepancies.csv", {"account_id"}, id="discrepancies"),
    ],
)  # fmt: skip
def test_every_csv_of_the_run_starts_a_formula_looking_cell_with_a_quote(
    hostile_run: HostileRun, file: str, columns: set[str]
) -> None:
    rows = csv_rows(hostile_run.files[file])
    assert rows, f"{file} is empty: the test would prove nothing"
    risky = [  # a phone number or a negative amount (digits, spaces, +-.()) may stay as it is
        (column, value)
        for each in rows
        for column, value in each.items()
        if value[:1] in {"=", "+", "-", "@", "\t", "\r"} and not NUMBER_LIKE.fullmatch(value)
    ]
    assert risky == []
    defused = {column for each in rows for column, value in each.items() if value[:2] in
               {"'=", "'+", "'-", "'@"}}  # fmt: skip
    assert columns <= defused


# --- the SendGrid Event Webhook ----------------------------------------------------------------


@integration
def test_a_replayed_post_inside_the_window_is_spooled_again_but_imported_once(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """SendGrid retries a post it thinks failed, with the same body, signature and timestamp;
    so does an attacker who captured one. Either way the events count once."""
    from tests.test_email_events import PUBLIC_KEY, an_event, post_events, settings_for, sign

    settings = settings_for(tmp_path)
    client = TestClient(create_app(settings))
    body = json.dumps([
        an_event("bounce", type="bounce", email=f"x{SQL}@example.com", reason="<script>x</script>"),
        an_event("delivered"),
    ])  # fmt: skip
    stamp = str(int(dt.datetime.now(dt.UTC).timestamp()))
    signature = sign(body, stamp)
    first = post_events(client, body, timestamp=stamp, signature=signature)
    replayed = post_events(client, body, timestamp=stamp, signature=signature)
    assert (first.status_code, replayed.status_code) == (200, 200)
    assert len(list(incoming_folder(settings).glob("*.json"))) == 2
    outcome = import_spool(warehouse, incoming_folder(settings), public_key=PUBLIC_KEY)
    assert (outcome.events_new, outcome.duplicates) == (2, 2)
    assert warehouse.execute(
        "select email, reason from ops.email_events where event = 'bounce'"
    ).fetchall() == [(f"x{SQL}@example.com".lower(), "<script>x</script>")]
    assert scalar(warehouse, "select count(*) from ops.email_suppressions") == 1


@integration
def test_a_post_that_is_not_utf8_is_refused_and_nothing_is_spooled(tmp_path: Path) -> None:
    from flows.lib.email_events import SIGNATURE_HEADER, TIMESTAMP_HEADER
    from tests.test_email_events import settings_for

    settings = settings_for(tmp_path)
    stamp = str(int(dt.datetime.now(dt.UTC).timestamp()))
    response = TestClient(create_app(settings)).post(
        "/sendgrid/events",
        content=b'[{"email": "caf\xe9@example.com"}]',
        headers={SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: stamp},
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "the body is not UTF-8 text"},
    )
    assert list(incoming_folder(settings).glob("*")) == []
