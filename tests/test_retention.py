"""Record retention (flows/lib/retention.py, `recoup purge`): who is done with for longer than
retention.years, what their purge removes and what it keeps (the audit trail), the files, the
record in ops.purges, a dry run, and a second purge that changes nothing.

One small warehouse, loaded through the loader with load times in 2018 and 2026, plus the ops
rows a daily run would have written. As of 2026-06-01 with 7 years, the cutoff is 2019-06-01."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.lib.config import load_settings
from flows.lib.gates import record_build
from flows.lib.loader import load_batch
from flows.lib.pii import Keyring, decode_key
from flows.lib.retention import PURGED_TEXT, cutoff_date, file_date, purge
from flows.lib.warehouse import open_warehouse
from tests.builders import row, write_batch

pytestmark = pytest.mark.integration
RECOUP = Path(sys.executable).parent / "recoup"
KEY = "aqQ/wM+q1KL3A0h4JL/LfLBd+YHl3BN3+vHw55aE55Q="
KEYRING = Keyring((decode_key(KEY, "test"),))
AS_OF = dt.date(2026, 6, 1)
LOADED_2018 = dt.datetime(2018, 7, 1, 6, tzinfo=dt.UTC)
LOADED_2026 = dt.datetime(2026, 5, 1, 6, tzinfo=dt.UTC)
NAME = "Zebulon Quixotic"  # C-OLD: a name to look for in the file's bytes

# customer: (account status in 2018, invoice issue date, why it is there)
CUSTOMERS = {
    "C-OLD": ("closed", "2018-03-01"),  # closed, nothing since 2018: purged
    "C-SETTLED": ("active", "2018-03-01"),  # active, owes nothing, nothing since: purged
    "C-OWING": ("active", "2018-03-01"),  # active, still owes on the last build: kept
    "C-LATE": ("active", "2018-03-01"),  # billing closed it in 2026: counts from then, kept
    "C-HOLD": ("closed", "2018-03-01"),  # a legal hold: kept, reported
    "C-DISPUTE": ("closed", "2018-03-01"),  # a dispute never resolved: kept, reported
    "C-NEW": ("active", "2026-04-01"),  # recent: kept
}


def account(customer: str) -> str:
    return "A" + customer[1:]


def ledger_row(connection: duckdb.DuckDBPyConnection, customer: str, day: str, to: str) -> None:
    key = f"K{customer}"
    connection.execute(
        """
        insert into ops.action_ledger (action_key, account_id, customer_id, stage, stage_order,
            channel, template, policy_version, stage_entered_date, as_of_date, run_id,
            currency, total_open, collectible_amount, status, times_planned, attempts,
            planned_at, status_at, sent_at, recipient, output_path)
        values (?, ?, ?, 'reminder_1', 1, 'email', 'reminder_1', 'v1', ?, ?, 'run-1', 'USD',
            120, 120, 'sent', 1, 1, ?, ?, ?, ?, ?)
        """,
        [key, account(customer), customer, day, day, day, day, day, to, f"outbox/{day}/{key}.eml"],
    )
    connection.execute(
        "insert into ops.action_log values (?, ?, 'run-1', 'planned', 'sent', null)", [key, day]
    )
    connection.execute(
        "insert into ops.email_events (event_key, outbox_id, email, event, occurred_at, "
        "received_at, source) values (?, ?, ?, 'delivered', ?, ?, 'webhook')",
        [f"E{customer}", key, to, day, day],
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    path = home / "warehouse" / "recoup.duckdb"
    connection = open_warehouse(path)
    customers = [
        row("customers", customer_id=c, full_name=NAME if c == "C-OLD" else f"Client {c}",
            email=f"{c.lower()}@example.com", ssn="900111111", created_at="2017-01-01T00:00:00Z")
        for c in CUSTOMERS
    ]  # fmt: skip
    accounts = [
        row("accounts", account_id=account(c), customer_id=c, status=status, opened_date="2017-01-01")
        for c, (status, _) in CUSTOMERS.items()
    ]  # fmt: skip
    invoices = [
        row("invoices", invoice_id=f"I{c}", account_id=account(c), issue_date=issued,
            due_date=issued[:8] + "28")
        for c, (_, issued) in CUSTOMERS.items()
    ]  # fmt: skip
    flags = [row("account_flags", customer_id="C-HOLD", flag="legal_hold", start_date="2018-05-01")]
    disputes = [
        row("disputes", dispute_id="D1", account_id="A-DISPUTE", invoice_id="IC-DISPUTE",
            opened_date="2018-04-01")
    ]  # fmt: skip
    first = write_batch(
        tmp_path / "2018", customers=customers, accounts=accounts, invoices=invoices,
        account_flags=flags, disputes=disputes,
    )  # fmt: skip
    assert load_batch(connection, first, keyring=KEYRING, now=LOADED_2018).rows_quarantined == 0
    second = write_batch(
        tmp_path / "2026",
        # a fix of C-OLD's email that breaks the contract: its quarantine row holds the name
        customers=[row("customers", customer_id="C-OLD", full_name=NAME, email="not-an-email")],
        accounts=[row("accounts", account_id="A-LATE", customer_id="C-LATE", status="closed",
                      opened_date="2017-01-01")],
    )  # fmt: skip
    assert load_batch(connection, second, keyring=KEYRING, now=LOADED_2026).rows_quarantined == 1
    for customer in ("C-OLD", "C-NEW"):
        day = "2018-05-01" if customer == "C-OLD" else "2026-05-02"
        ledger_row(connection, customer, day, f"{customer.lower()}@example.com")
    connection.execute(
        "insert into ops.contact_overrides (override_id, customer_id, field_group, email, "
        "billing_fingerprint, replaced_fingerprint, source, confidence, accepted_on, "
        "accepted_at) values ('O1', 'C-OLD', 'email', 'zeb@new.example', 'c-old@example.com', "
        "'c-old@example.com', 'vendor', 90, '2018-06-01', '2018-06-01')"
    )
    # the last build: C-OWING and C-NEW owe something; the others nothing
    connection.execute("create schema marts")
    connection.execute("create table marts.fct_account_aging (account_id VARCHAR, as_of_date DATE)")
    connection.execute(
        "insert into marts.fct_account_aging values ('A-OWING', '2026-05-31'), "
        "('A-NEW', '2026-05-31')"
    )
    connection.execute(
        "create table marts.dim_customers as select customer_id, full_name, email, ssn_last4, "
        "birth_year, email as billing_email from raw.customers_latest"
    )
    record_build(connection, dt.date(2026, 5, 31))
    connection.close()
    for relative, day in (
        ("out/letters/2018-05-01/KC-OLD.pdf", None),
        ("out/credit_bureau/2019-04/metro2_201904.txt", None),
        ("outbox/2018-05-01/KC-OLD.eml", None),
        ("state/logs/2018-05-01/run-1.jsonl", None),
        ("out/letters/2026-05-02/KC-NEW.pdf", None),
        ("out/credit_bureau/2019-06/metro2_201906.txt", None),  # its month ends after the cutoff
        ("out/notes/undated.txt", dt.datetime(2017, 3, 1, tzinfo=dt.UTC)),  # old by its mtime
    ):
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
        if day is not None:
            os.utime(path, (day.timestamp(), day.timestamp()))
    return home


def query(home: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    connection = duckdb.connect(str(home / "warehouse" / "recoup.duckdb"), read_only=True)
    try:
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def recoup(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RECOUP_", "PREFECT_"))}
    environment |= {"RECOUP_HOME": str(home), "RECOUP_PII_KEY": KEY, "COLUMNS": "200"}
    return subprocess.run(
        [str(RECOUP), *args], cwd=home, env=environment, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_cutoff_is_the_same_day_years_before() -> None:
    assert cutoff_date(AS_OF, 7) == dt.date(2019, 6, 1)
    assert cutoff_date(dt.date(2028, 2, 29), 7) == dt.date(2021, 2, 28)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        pytest.param("letters/2026-11-23/k.pdf", dt.date(2026, 11, 23), id="a day folder"),
        pytest.param("credit_bureau/2026-02/metro2_202602.txt", dt.date(2026, 2, 28), id="a month: its last day"),
        pytest.param("reports/monthly/2026-12.pdf", dt.date(2026, 12, 31), id="a month file"),
        pytest.param("imported/20261123T061500123456Z-ab12.json", dt.date(2026, 11, 23), id="a spool stamp"),
    ],
)  # fmt: skip
def test_a_file_is_dated_by_its_path(tmp_path: Path, relative: str, expected: dt.date) -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_text("x", encoding="utf-8")
    assert file_date(path, tmp_path) == expected


def test_purge_removes_personal_data_keeps_the_audit_trail_and_runs_once(home: Path) -> None:
    path = home / "warehouse" / "recoup.duckdb"
    assert NAME.encode() in path.read_bytes()
    trail = "select * from ops.action_log order by all"
    ledger = (
        "select action_key, account_id, customer_id, status, as_of_date, sent_at, "
        "collectible_amount, currency, output_path from ops.action_ledger order by all"
    )
    trail_before, ledger_before = query(home, trail), query(home, ledger)

    # with ten years nobody is past the period yet: C-OLD was last active in 2018
    longer = load_settings({"RECOUP_HOME": str(home), "RECOUP_RETENTION__YEARS": "10"})
    outcome = purge(longer, as_of=AS_OF, dry_run=True)
    assert outcome.cutoff == dt.date(2016, 6, 1)
    assert (outcome.customers, outcome.files, outcome.held) == (0, [], {})

    # a dry run says what would go, from the command line, and changes nothing
    dry = recoup(home, "purge", "--dry-run", "--as-of", AS_OF.isoformat())
    assert dry.returncode == 0, dry.stderr
    said = " ".join(dry.stdout.split())
    assert "personal data of 2 customers would be removed" in said
    assert "5 files would be deleted" in said and "Kept past the period:" in said
    assert "1 legal_hold" in said and "1 open_dispute" in said
    assert "Nothing changed (dry run)." in said
    assert query(home, "select count(*) from ops.purges") == [(0,)]
    assert (home / "out/letters/2018-05-01/KC-OLD.pdf").exists()
    assert NAME.encode() in path.read_bytes()

    settings = load_settings({"RECOUP_HOME": str(home), "RECOUP_PII_KEY": KEY})
    outcome = purge(settings, as_of=AS_OF)
    assert (outcome.customers, outcome.held) == (2, {"legal_hold": 1, "open_dispute": 1})
    assert outcome.rows == {
        "raw.customers": 2,  # one version each (C-OLD's 2026 fix was quarantined)
        "raw.quarantine": 1,  # that fix, with the name in its row_json
        "ops.contact_overrides": 1,
        "ops.contact_problems": 0,
        "ops.email_events": 1,
        "ops.action_ledger": 1,
        "marts.dim_customers": 2,
    }
    purged = query(
        home,
        "select customer_id, full_name, email, phone, address_line1, city, state, postal_code, "
        "ssn, date_of_birth, ssn_last4, birth_year, country, created_at is not null "
        "from raw.customers where customer_id in ('C-OLD', 'C-SETTLED') order by all",
    )
    assert [values[1:] for values in purged] == [
        (PURGED_TEXT, None, None, PURGED_TEXT, PURGED_TEXT, PURGED_TEXT, PURGED_TEXT, None,
         None, None, None, "US", True)
    ] * 2  # fmt: skip  # required fields stay filled: gate_raw still passes
    kept = query(
        home,
        "select customer_id from raw.customers where full_name <> ? and ssn is not null order by 1",
        [PURGED_TEXT],
    )
    assert kept == [("C-DISPUTE",), ("C-HOLD",), ("C-LATE",), ("C-NEW",), ("C-OWING",)]
    assert query(home, "select count(*) from raw.quarantine where entity = 'customers'") == [(0,)]
    assert query(home, "select email, billing_fingerprint, source from ops.contact_overrides") == [
        (None, "", "vendor")
    ]
    assert query(home, "select outbox_id, email from ops.email_events order by 1") == [
        ("KC-NEW", "c-new@example.com"),
        ("KC-OLD", None),
    ]
    assert query(home, "select customer_id, recipient from ops.action_ledger order by 1") == [
        ("C-NEW", "c-new@example.com"),
        ("C-OLD", None),
    ]
    assert query(home, "select customer_id, full_name, email from marts.dim_customers "
                 "where customer_id = 'C-OLD'") == [("C-OLD", None, None)]  # fmt: skip
    # the audit trail: every log row, and the ledger's ids, dates, statuses and amounts
    assert query(home, trail) == trail_before and query(home, ledger) == ledger_before
    [(purge_id, cutoff, years, customers, files)] = query(
        home, "select purge_id, cutoff_date, retention_years, customers_purged, files_deleted "
        "from ops.purges"
    )  # fmt: skip
    assert (purge_id, cutoff, years, customers, files) == (
        outcome.purge_id, dt.date(2019, 6, 1), 7, 2, 5,
    )  # fmt: skip
    assert query(home, "select customer_id from ops.purged_customers order by 1") == [
        ("C-OLD",),
        ("C-SETTLED",),
    ]
    # the files dated before the cutoff, and the folders they leave empty
    remaining = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()
                       and p.parent.name != "warehouse" and "state/recoup.lock" not in str(p))  # fmt: skip
    assert remaining == [
        "out/credit_bureau/2019-06/metro2_201906.txt",
        "out/letters/2026-05-02/KC-NEW.pdf",
    ]
    assert not (home / "outbox" / "2018-05-01").exists()
    # the file was rewritten: no freed block keeps the purged name
    assert NAME.encode() not in path.read_bytes()

    again = purge(settings, as_of=AS_OF)
    assert not again.changed and "nothing to purge; nothing changed" in str(again)
    assert query(home, "select count(*) from ops.purges") == [(1,)]
