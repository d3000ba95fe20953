"""The billing export contract (SPEC §2) at the loader: every bad input of issue #3 gives a
clear reason and loses nothing; good rows load."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from flows.lib.export_files import BatchError
from flows.lib.loader import BatchOutcome, load_batch
from flows.lib.warehouse import scalar
from tests.builders import base_batch, csv_text, row, write_batch

pytestmark = pytest.mark.integration


def quarantined(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    return connection.execute(
        "select file_name, line_number, status, reason_codes, reasons "
        "from raw.quarantine order by file_name, line_number"
    ).fetchall()


def count(connection: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(connection, f"select count(*) from {table}")


def records_in(path: Path) -> int:
    """Data records of a CSV file, counted by Python's csv module (independent of the loader)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        return sum(1 for record in csv.reader(handle) if record) - 1


def assert_nothing_lost(outcome: BatchOutcome) -> None:
    for file in outcome.files:
        if file.status == "loaded":
            assert file.rows_read == file.rows_loaded + file.rows_quarantined, file
            path = outcome.folder / file.file_name
            if path.suffix == ".csv":
                assert file.rows_read == records_in(path), file


def assert_warehouse_empty(connection: duckdb.DuckDBPyConnection) -> None:
    for table in (
        "raw.customers",
        "raw.accounts",
        "raw.invoices",
        "raw.load_batches",
        "raw.load_files",
        "raw.quarantine",
    ):
        assert count(connection, table) == 0, table


# --- good input ----------------------------------------------------------------------------


def test_a_clean_batch_loads_typed_values(warehouse, tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1",
        invoices=[
            row("invoices", invoice_id="I1", amount="100"),  # whole amount: valid
            row("invoices", invoice_id="I2", amount="99.5"),  # one decimal: valid
        ],
    )
    outcome = load_batch(warehouse, folder)
    assert outcome.batch_id == 1
    assert_nothing_lost(outcome)
    assert outcome.rows_quarantined == 0
    amounts = warehouse.execute("select invoice_id, amount from raw.invoices order by 1").fetchall()
    assert amounts == [("I1", Decimal("100.00")), ("I2", Decimal("99.50"))]
    assert warehouse.execute(
        "select typeof(amount), typeof(due_date) from raw.invoices limit 1"
    ).fetchall() == [("DECIMAL(18,2)", "DATE")]
    # an empty language takes the contract default; an empty optional field is NULL
    assert warehouse.execute("select language, phone from raw.customers").fetchall() == [
        ("en", None)
    ]


def test_bom_and_crlf_files_are_accepted_with_editor_line_numbers(
    warehouse, tmp_path: Path
) -> None:
    text = csv_text(
        "invoices",
        [
            row("invoices", invoice_id="I1", description="two\r\nlines"),  # spans lines 2-3
            row("invoices", invoice_id="I2", amount="-1"),  # line 4
        ],
        newline="\r\n",
    )
    folder = base_batch(tmp_path / "b1", invoices="\ufeff" + text)
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert warehouse.execute(
        "select invoice_id, _line_number, description from raw.invoices"
    ).fetchall() == [("I1", 2, "two\r\nlines")]
    assert [(r[0], r[1], r[3]) for r in quarantined(warehouse)] == [
        ("invoices.csv", 4, ["negative_amount"])
    ]


# --- rows that break the contract ----------------------------------------------------------------

BAD_ROWS = [
    pytest.param(
        row("invoices", issue_date="2026-13-45"),
        "bad_date",
        "issue_date '2026-13-45' is not a real date",
        id="month 13",
    ),
    pytest.param(
        row("invoices", due_date="2026-02-30"),
        "bad_date",
        "due_date '2026-02-30'",
        id="february 30",
    ),
    pytest.param(
        row("invoices", due_date="31/01/2026"), "bad_date", "write YYYY-MM-DD", id="day-first date"
    ),
    pytest.param(
        row("invoices", amount="10.005"), "bad_amount", "more than 2 decimals", id="3 decimals"
    ),
    pytest.param(
        row("invoices", amount="1e3"), "bad_amount", "'1e3' is not a decimal amount", id="exponent"
    ),
    pytest.param(
        row("invoices", amount="1,000.00"),
        "bad_amount",
        "thousands separator",
        id="thousands separator",
    ),
    pytest.param(row("invoices", amount="-5.00"), "negative_amount", "is negative", id="negative"),
    pytest.param(
        row("invoices", amount="0.00"), "zero_amount", "must be greater than 0", id="zero"
    ),
    pytest.param(
        row("invoices", amount=""),
        "missing_value",
        "amount is empty; it is required",
        id="missing amount",
    ),
    pytest.param(
        row("invoices", invoice_id=""), "missing_value", "invoice_id is empty", id="missing key"
    ),
    pytest.param(
        row("invoices", currency="USX"),
        "unknown_currency",
        "not an ISO 4217",
        id="unknown currency",
    ),
    pytest.param(
        row("invoices", currency="EUR"),
        "currency_mismatch",
        "differs from the currency 'USD' of account 'A1'",
        id="currency differs from account",
    ),
]


@pytest.mark.parametrize(("bad", "code", "message"), BAD_ROWS)
def test_a_bad_invoice_row_is_quarantined_with_line_and_reason(
    warehouse, tmp_path: Path, bad: dict[str, str], code: str, message: str
) -> None:
    good = row("invoices", invoice_id="I-good")
    folder = base_batch(tmp_path / "b1", invoices=[good, bad])
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert warehouse.execute("select invoice_id from raw.invoices").fetchall() == [("I-good",)]
    [(file_name, line, status, codes, reasons)] = quarantined(warehouse)
    assert (file_name, line, status) == ("invoices.csv", 3, "rejected")
    assert codes[0] == code  # the row's own problem first; a cross-row one may follow
    assert message in reasons


@pytest.mark.parametrize(
    ("entity", "bad", "message"),
    [
        pytest.param(
            "payments",
            row("payments", method="bitcoin"),
            "method 'bitcoin' is not one of: card, ach",
            id="payment method",
        ),
        pytest.param(
            "adjustments",
            row("adjustments", kind="discount"),
            "kind 'discount' is not one of",
            id="adjustment kind",
        ),
        pytest.param(
            "disputes",
            row("disputes", resolution="won"),
            "resolution 'won' is not one of: upheld, rejected",
            id="dispute resolution",
        ),
        pytest.param(
            "account_flags", row("account_flags", flag="vip"), "flag 'vip' is not one of", id="flag"
        ),
        pytest.param(
            "payment_plans",
            row("payment_plans", installment_no="0"),
            "installment_no '0' is not a whole number",
            id="installment 0",
        ),
    ],
)
def test_unknown_enum_values_are_quarantined(
    warehouse, tmp_path: Path, entity: str, bad: dict, message: str
) -> None:
    folder = base_batch(tmp_path / "b1", invoices=[row("invoices")], **{entity: [bad]})
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    [(_, line, status, _, reasons)] = quarantined(warehouse)
    assert (line, status) == (2, "rejected")
    assert message in reasons


def test_customer_errors_never_echo_the_ssn(warehouse, tmp_path: Path) -> None:
    folder = write_batch(
        tmp_path / "b1", customers=[row("customers", ssn="12-345-678", customer_type="robot")]
    )
    load_batch(warehouse, folder)
    [(reasons, row_json)] = warehouse.execute(
        "select reasons, row_json::VARCHAR from raw.quarantine"
    ).fetchall()
    assert "ssn is not 9 digits" in reasons and "customer_type 'robot'" in reasons
    assert "12-345-678" not in reasons and "12-345-678" not in row_json
    assert "1980-01-02" not in row_json  # date of birth redacted too


def test_duplicate_keys_within_one_file_quarantine_every_copy(warehouse, tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1",
        invoices=[
            row("invoices", invoice_id="I1", amount="10"),
            row("invoices", invoice_id="I2"),
            row("invoices", invoice_id="I1", amount="11"),
        ],
    )
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert warehouse.execute("select invoice_id from raw.invoices").fetchall() == [("I2",)]
    rows = quarantined(warehouse)
    assert [(r[1], r[3]) for r in rows] == [(2, ["duplicate_key"]), (4, ["duplicate_key"])]
    assert "invoice_id 'I1' appears 2 times in this file (lines 2, 4)" in rows[0][4]


def test_a_duplicate_composite_key_with_a_null_part_is_caught(warehouse, tmp_path: Path) -> None:
    flag = row("account_flags", account_id="")  # NULL account: the whole customer
    folder = base_batch(tmp_path / "b1", account_flags=[flag, flag])
    load_batch(warehouse, folder)
    assert [r[3] for r in quarantined(warehouse)] == [["duplicate_key"], ["duplicate_key"]]


def test_a_row_with_the_wrong_number_of_fields_is_quarantined_not_dropped(
    warehouse, tmp_path: Path
) -> None:
    text = (
        csv_text("invoices", [row("invoices", invoice_id="I1")])
        + "I2,A1,N-2\n"
        + csv_text("invoices", [row("invoices", invoice_id="I3")]).split("\n", 1)[1]
    )
    folder = base_batch(tmp_path / "b1", invoices=text)
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert outcome.files[-1].rows_read == 3
    assert [
        r[0] for r in warehouse.execute("select invoice_id from raw.invoices order by 1").fetchall()
    ] == ["I1", "I3"]
    [(_, line, status, codes, reasons)] = quarantined(warehouse)
    assert (line, status, codes) == (3, "rejected", ["unreadable_row"])
    assert "has 3 fields; the header has 8" in reasons


def test_bytes_that_are_not_utf8_quarantine_their_row(warehouse, tmp_path: Path) -> None:
    folder = base_batch(tmp_path / "b1")
    text = csv_text(
        "invoices",
        [row("invoices", invoice_id="I1"), row("invoices", invoice_id="I2", description="CAFE")],
    )
    raw = text.encode().replace(b"CAFE", b"CAF\xe9")  # Latin-1 e-acute
    (folder / "invoices.csv").write_bytes(raw)
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert warehouse.execute("select invoice_id from raw.invoices").fetchall() == [("I1",)]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert line == 3 and codes == ["unreadable_row"]
    assert "UTF-8" in reasons


def test_reversal_must_match_the_payment_it_reverses(warehouse, tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1",
        payments=[
            row("payments", payment_id="P1", amount="60.00"),
            row("payments", payment_id="P2", amount="70.00"),
            row(
                "payments", payment_id="R1", amount="60.00", reverses_payment_id="P1"
            ),  # good, same file
            row(
                "payments", payment_id="R2", amount="50.00", reverses_payment_id="P2"
            ),  # wrong amount
        ],
    )
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert [
        r[0] for r in warehouse.execute("select payment_id from raw.payments order by 1").fetchall()
    ] == ["P1", "P2", "R1"]
    [(_, line, _, codes, reasons)] = quarantined(warehouse)
    assert (line, codes) == (5, ["reversal_amount_mismatch"])
    assert "reversal amount 50.00 differs from the 70.00 of payment 'P2'" in reasons


def test_a_payment_is_reversed_only_once(warehouse, tmp_path: Path) -> None:
    load_batch(
        warehouse,
        base_batch(
            tmp_path / "b1",
            payments=[
                row("payments", payment_id="P1", amount="60.00"),
                row("payments", payment_id="R1", amount="60.00", reverses_payment_id="P1"),
                row(
                    "payments", payment_id="R2", amount="60.00", reverses_payment_id="P1"
                ),  # same file, later
            ],
        ),
    )
    load_batch(
        warehouse,
        write_batch(
            tmp_path / "b2",
            payments=[
                row(
                    "payments", payment_id="R3", amount="60.00", reverses_payment_id="P1"
                ),  # a later batch
            ],
        ),
    )
    assert [
        r[0] for r in warehouse.execute("select payment_id from raw.payments order by 1").fetchall()
    ] == ["P1", "R1"]
    rows = quarantined(warehouse)
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("payments.csv", 2, ["duplicate_reversal"]),
        ("payments.csv", 4, ["duplicate_reversal"]),
    ]
    assert all("is already reversed by payment 'R1'" in r[4] for r in rows)


@pytest.mark.parametrize(
    "bad_payment",
    [
        pytest.param(
            row("payments", payment_id="P1", invoice_id="I9"),
            id="payment held for a missing invoice",
        ),
        pytest.param(
            row("payments", payment_id="P1", currency="EUR"), id="payment rejected for its currency"
        ),
    ],
)
def test_a_reversal_waits_for_its_payment_to_load(
    warehouse, tmp_path: Path, bad_payment: dict
) -> None:
    reversal = row("payments", payment_id="R1", amount="50.00", reverses_payment_id="P1")
    outcome = load_batch(warehouse, base_batch(tmp_path / "b1", payments=[bad_payment, reversal]))
    assert_nothing_lost(outcome)
    assert count(warehouse, "raw.payments") == 0  # never a reversal without its payment
    statuses = {r[1]: (r[2], r[3]) for r in quarantined(warehouse)}
    assert statuses[3] == ("held", ["orphan_foreign_key"])
    # across batches too: a reversal of a payment that is still held is held
    outcome = load_batch(
        warehouse,
        write_batch(
            tmp_path / "b2",
            payments=[row("payments", payment_id="R2", amount="50.00", reverses_payment_id="P1")],
        ),
    )
    assert count(warehouse, "raw.payments") == 0


def test_a_payment_linked_to_another_accounts_invoice_is_quarantined(
    warehouse, tmp_path: Path
) -> None:
    folder = write_batch(
        tmp_path / "b1",
        customers=[row("customers")],
        accounts=[row("accounts", account_id="A1"), row("accounts", account_id="A2")],
        invoices=[row("invoices", invoice_id="I1", account_id="A1")],
        payments=[row("payments", account_id="A2", invoice_id="I1")],
    )
    load_batch(warehouse, folder)
    [(_, _, _, codes, reasons)] = quarantined(warehouse)
    assert codes == ["invoice_of_other_account"]
    assert "invoice_id 'I1' belongs to account 'A1', not to 'A2'" in reasons


# --- orphans: held, then released ----------------------------------------------------------------


def test_an_orphan_is_held_and_loads_when_a_later_batch_brings_its_parent(
    warehouse, tmp_path: Path
) -> None:
    first = base_batch(
        tmp_path / "b1",
        invoices=[
            row("invoices", invoice_id="I1"),
            row("invoices", invoice_id="I9", account_id="A9"),
        ],
        payments=[row("payments", payment_id="P9", account_id="A9", invoice_id="I9")],
    )
    outcome = load_batch(warehouse, first)
    assert_nothing_lost(outcome)
    assert outcome.rows_held == 2
    held = quarantined(warehouse)
    assert [(r[0], r[1], r[2], r[3]) for r in held] == [
        ("invoices.csv", 3, "held", ["orphan_foreign_key"]),
        (
            "payments.csv",
            2,
            "held",
            ["orphan_foreign_key", "orphan_foreign_key"],
        ),  # account, invoice
    ]
    assert "loads by itself when a later batch brings that account" in held[0][4]

    # the account (and its customer) arrive in the next batch
    second = write_batch(
        tmp_path / "b2", accounts=[row("accounts", account_id="A9", customer_id="C1")]
    )
    outcome = load_batch(warehouse, second)
    assert outcome.rows_released == 2 and outcome.rows_held == 0
    loaded = warehouse.execute(
        "select invoice_id, _batch_id, _file_name, _line_number, _released_in_batch from raw.invoices "
        "where invoice_id = 'I9'"
    ).fetchall()
    assert loaded == [("I9", 1, "invoices.csv", 3, 2)]  # keeps where it came from
    assert count(warehouse, "raw.payments") == 1
    assert warehouse.execute(
        "select distinct status, resolved_batch_id from raw.quarantine"
    ).fetchall() == [("released", 2)]


# --- files that cannot be read: the batch fails and nothing is written ---------------------------

UNREADABLE_FILES = [
    pytest.param(
        "invoices.csv",
        csv_text("invoices", [row("invoices")]).replace("due_date", "due"),
        "missing required column(s) due_date",
        id="missing column",
    ),
    pytest.param(
        "invoices.csv",
        csv_text("invoices", [row("invoices")])
        .replace("description", "description,notes")
        .replace("\n", ",x\n", 2)
        .replace(",x\n", "\n", 1),
        "unknown column(s) notes",
        id="extra column",
    ),
    pytest.param("invoices.csv", "", "is empty (0 bytes)", id="empty file"),
    pytest.param(
        "invoices.csv",
        "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "binary data, not CSV",
        id="not a CSV file",
    ),
    pytest.param("invoices.xlsx", "PK\x03\x04", "only CSV (.csv) or Parquet", id="spreadsheet"),
    pytest.param(
        "refunds.csv", "refund_id\nR1\n", "'refunds' is not an entity", id="unknown entity"
    ),
    pytest.param(
        "invoices.parquet", "PAR1 truncated", "not a readable Parquet file", id="truncated parquet"
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), UNREADABLE_FILES)
def test_an_unreadable_file_fails_the_batch_and_writes_nothing(
    warehouse, tmp_path: Path, name: str, content: str, message: str
) -> None:
    folder = base_batch(tmp_path / "b1")  # good customers and accounts beside the bad file
    (folder / name).write_text(content, encoding="utf-8", newline="")
    with pytest.raises(
        BatchError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        load_batch(warehouse, folder)
    assert_warehouse_empty(warehouse)


def test_a_missing_batch_folder_is_a_clear_error(warehouse, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="no such folder"):
        load_batch(warehouse, tmp_path / "not-there")
    assert_warehouse_empty(warehouse)


def test_a_failure_midway_rolls_back_the_whole_batch(
    warehouse, tmp_path: Path, monkeypatch
) -> None:
    folder = base_batch(tmp_path / "b1", invoices=[row("invoices")])
    import flows.lib.loader as loader

    real = loader._check_links

    def fail_on_invoices(connection, entity):
        if entity.name == "invoices":
            raise RuntimeError("disk full")
        return real(connection, entity)

    monkeypatch.setattr(loader, "_check_links", fail_on_invoices)
    with pytest.raises(RuntimeError, match="disk full"):
        load_batch(warehouse, folder)
    assert_warehouse_empty(warehouse)  # customers and accounts were checked, then rolled back


# --- reloads and history -------------------------------------------------------------------------


def test_loading_the_same_files_twice_changes_nothing(warehouse, tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1", invoices=[row("invoices"), row("invoices", invoice_id="I2", amount="bad")]
    )
    first = load_batch(warehouse, folder)
    snapshot = {
        t: count(warehouse, t)
        for t in ("raw.invoices", "raw.quarantine", "raw.load_batches", "raw.load_files")
    }
    again = load_batch(warehouse, folder)
    copy = base_batch(tmp_path / "renamed-copy", invoices=(folder / "invoices.csv").read_text())
    third = load_batch(warehouse, copy)
    assert first.changed and not again.changed and not third.changed
    assert {f.status for f in again.files} == {"unchanged"}
    assert {f.loaded_in_batch for f in again.files} == {1}
    assert snapshot == {t: count(warehouse, t) for t in snapshot}


def test_a_later_version_of_a_key_wins_and_history_keeps_the_earlier(
    warehouse, tmp_path: Path
) -> None:
    load_batch(warehouse, base_batch(tmp_path / "b1", invoices=[row("invoices", amount="120.00")]))
    load_batch(warehouse, write_batch(tmp_path / "b2", invoices=[row("invoices", amount="80.00")]))
    load_batch(warehouse, write_batch(tmp_path / "b3", invoices=[row("invoices", amount="70.00")]))
    history = warehouse.execute(
        "select _batch_id, amount, _superseded_in_batch from raw.invoices order by 1"
    ).fetchall()
    # each version is marked by the batch that made it older, once
    assert history == [
        (1, Decimal("120.00"), 2),
        (2, Decimal("80.00"), 3),
        (3, Decimal("70.00"), None),
    ]
    assert warehouse.execute("select amount from raw.invoices_latest").fetchall() == [
        (Decimal("70.00"),)
    ]
    assert_latest_is_the_newest_version(warehouse)


# the rule the raw.<entity>_latest views implement, as a window over every version
LATEST_BY_WINDOW = """
    select * exclude (_superseded_in_batch) from raw.{entity}
    qualify row_number() over (
        partition by {key} order by _batch_id desc, _line_number desc
    ) = 1
"""


def assert_latest_is_the_newest_version(connection: duckdb.DuckDBPyConnection) -> None:
    """Every raw.<entity>_latest view holds exactly the newest version of each key: latest
    batch first, then the later line of that batch (a released held row keeps its batch)."""
    from flows.lib.contract import ENTITIES

    for entity in ENTITIES:
        window = LATEST_BY_WINDOW.format(entity=entity.name, key=", ".join(entity.key))
        view = f"select * from raw.{entity.name}_latest"
        differences = connection.execute(
            f"select count(*) from (({window} except all {view}) union all ({view} except all {window}))"
        ).fetchall()
        assert differences == [(0,)], entity.name


def test_a_held_row_released_after_a_newer_version_loaded_stays_history(
    warehouse, tmp_path: Path
) -> None:
    """A held row keeps its batch when it is released: a version of its key loaded in between
    is newer, and stays the latest; the released one is marked as older at once."""
    load_batch(warehouse, base_batch(tmp_path / "b1", invoices=[
        row("invoices", invoice_id="I9", account_id="A9", amount="10.00"),
    ]))  # fmt: skip
    assert count(warehouse, "raw.invoices") == 0  # held: account A9 is unknown
    load_batch(warehouse, write_batch(tmp_path / "b2", invoices=[
        row("invoices", invoice_id="I9", account_id="A1", amount="20.00"),
    ]))  # fmt: skip
    outcome = load_batch(warehouse, write_batch(
        tmp_path / "b3", accounts=[row("accounts", account_id="A9", customer_id="C1")]
    ))  # fmt: skip
    versions = warehouse.execute(
        "select _batch_id, amount, _released_in_batch, _superseded_in_batch from raw.invoices "
        "order by 1"
    ).fetchall()
    assert outcome.rows_released == 1
    # released with its own batch: older than batch 2's version, so history at once
    assert versions == [(1, Decimal("10.00"), 3, 3), (2, Decimal("20.00"), None, None)]
    assert warehouse.execute("select amount from raw.invoices_latest").fetchall() == [
        (Decimal("20.00"),)
    ]
    assert_latest_is_the_newest_version(warehouse)


def test_an_older_warehouse_gets_its_versions_marked_when_opened(tmp_path: Path) -> None:
    """A warehouse from before `_superseded_in_batch` (latest views as windows): opening it
    adds the column and marks every older version, so its latest views show what they did."""
    from flows.lib.contract import ENTITY_BY_NAME
    from flows.lib.warehouse import open_warehouse

    path = tmp_path / "warehouse" / "recoup.duckdb"
    connection = open_warehouse(path)
    load_batch(connection, base_batch(tmp_path / "b1", invoices=[row("invoices", amount="1.00")]))
    load_batch(connection, write_batch(tmp_path / "b2", invoices=[row("invoices", amount="2.00")]))
    for entity in ("invoices", "payments"):  # as an older recoup left them
        connection.execute(f"drop view raw.{entity}_latest")
        connection.execute(f"alter table raw.{entity} drop column _superseded_in_batch")
        connection.execute(
            f"create view raw.{entity}_latest as "
            + LATEST_BY_WINDOW.replace(" exclude (_superseded_in_batch)", "").format(
                entity=entity, key=", ".join(ENTITY_BY_NAME[entity].key)
            )
        )
    connection.close()
    connection = open_warehouse(path)
    try:
        assert connection.execute(
            "select _batch_id, _superseded_in_batch from raw.invoices order by 1"
        ).fetchall() == [(1, 0), (2, None)]  # 0: marked when the warehouse was opened
        assert connection.execute("select amount from raw.invoices_latest").fetchall() == [
            (Decimal("2.00"),)
        ]
        assert_latest_is_the_newest_version(connection)
    finally:
        connection.close()


def test_parquet_files_load_like_csv(warehouse, tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1",
        invoices=[row("invoices", amount="99.5"), row("invoices", invoice_id="I2", amount="1e3")],
    )
    duckdb.sql(
        f"copy (select * from read_csv('{folder / 'invoices.csv'}', all_varchar = true)) to '{folder / 'invoices.parquet'}'"
    )
    (folder / "invoices.csv").unlink()
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    assert warehouse.execute("select amount from raw.invoices").fetchall() == [(Decimal("99.50"),)]
    [(file_name, line, _, codes, _)] = quarantined(warehouse)
    assert (file_name, line, codes) == ("invoices.parquet", 2, ["bad_amount"])


def test_inch_marks_in_unquoted_fields_keep_exact_line_numbers(warehouse, tmp_path: Path) -> None:
    header = csv_text("invoices", []).strip()
    lines = [
        header,
        'I1,A1,N-1,2026-01-01,2026-01-31,10.00,USD,5" screen',  # line 2: a quote inside a field
        'I2,A1,N-2,2026-01-01,2026-01-31,10.00,USD,"p\nq\nr\ns"',  # lines 3-6
        "I3,A1,N-3,2026-01-01,2026-01-31,-1,USD,",  # line 7
        'I4,A1,N-4,2026-01-01,2026-01-31,10.00,USD,7" tab',  # line 8
    ]
    folder = base_batch(tmp_path / "b1", invoices="\n".join(lines) + "\n")
    outcome = load_batch(warehouse, folder)
    assert_nothing_lost(outcome)
    loaded = warehouse.execute(
        "select invoice_id, _line_number, description from raw.invoices order by 1"
    ).fetchall()
    assert loaded == [("I1", 2, '5" screen'), ("I2", 3, "p\nq\nr\ns"), ("I4", 8, '7" tab')]
    assert [(r[1], r[3]) for r in quarantined(warehouse)] == [(7, ["negative_amount"])]


def test_batch_folders_load_in_natural_order(warehouse, tmp_path: Path) -> None:
    from flows.lib.export_files import batch_folders

    for name in ("batch-10", "batch-9", "batch-100"):
        base_batch(tmp_path / "inbox" / name)
    assert [folder.name for folder in batch_folders(tmp_path / "inbox")] == [
        "batch-9",
        "batch-10",
        "batch-100",
    ]


def test_codes_outside_the_iso_lists_are_quarantined(warehouse, tmp_path: Path) -> None:
    folder = write_batch(
        tmp_path / "b1",
        customers=[
            row("customers", customer_id="C1", country="EU"),
            row("customers", customer_id="C2", country="ZZ"),
        ],
        accounts=[],
    )
    (folder / "accounts.csv").unlink()
    load_batch(warehouse, folder)
    assert [r[3] for r in quarantined(warehouse)] == [["unknown_country"], ["unknown_country"]]
