"""Data protection: SSNs and dates of birth encrypted at rest (flows/lib/pii.py), nothing
personal in logs, Prefect artifacts or files that should not hold it, and every file recoup
writes readable by its owner only.

The demo tests share one `recoup demo` run (a subprocess, like tests/test_cli.py) with a key
in RECOUP_PII_KEY; the rest are small warehouses in tmp_path."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import email
import email.policy
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from flows.lib.config import ConfigError, load_settings
from flows.lib.loader import load_batch
from flows.lib.output_files import owner_only_folder, write_atomically
from flows.lib.pii import (
    ClearPiiInWarehouse,
    Keyring,
    PiiKeyMissing,
    PiiKeyWrong,
    decode_key,
    ensure_demo_key,
    key_id,
    keyring_for,
    protect_warehouse,
    restricted_identities,
)
from flows.lib.run_lock import run_lock
from flows.lib.run_logs import run_log
from flows.lib.warehouse import open_warehouse
from tests.builders import base_batch, row, write_batch
from tests.cli_env import subprocess_environment

pytestmark = pytest.mark.integration
RECOUP = Path(sys.executable).parent / "recoup"
KEY = "kO0mIl4hrvbT2uFZ6Ka3w3Pz8p+dEkr3tVwq5ibkl0o="
OTHER_KEY = "Zb1mQm0w8o3r8r9bqL7P0mK1dX2m3vYl9QhZ9o7c5aE="
KEYRING = Keyring((decode_key(KEY, "test"),))
AS_OF = "2026-11-23"


# --- one demo run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    home = tmp_path_factory.mktemp("home")
    # Prefect's ephemeral API, as installed: its database (logs, artifacts, parameters) lands
    # in the home, where the scan below reads it
    environment = subprocess_environment(home, None, RECOUP_PII_KEY=KEY)
    result = subprocess.run(
        [str(RECOUP), "demo", "--accounts", "120", "--as-of", AS_OF],
        cwd=home, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return home, result


def demo_customers(home: Path) -> list[dict[str, str]]:
    [export] = home.glob("inbox/*/customers.csv")
    with export.open(encoding="utf-8", newline="") as lines:
        return list(csv.DictReader(lines))


def values_of(customers: list[dict[str, str]], column: str) -> set[str]:
    return {customer[column] for customer in customers if customer[column]}


def texts(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every file under `folder` as text: a PDF's extracted text, anything else decoded."""
    from pypdf import PdfReader

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".pdf":
            text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        yield path, text


def prefect_database_text(home: Path) -> str:
    """Every value of every table of the run's Prefect database (logs, artifacts, flow and
    task runs, their parameters and states), one row per line."""
    database = home / "state" / "prefect" / "prefect.db"
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [name for (name,) in connection.execute(
            "select name from sqlite_master where type = 'table'"
        )]  # fmt: skip
        return "\n".join(
            " ".join(str(value) for value in values)
            for table in tables
            for values in connection.execute(f'select * from "{table}"')
        )
    finally:
        connection.close()


def held_in(connection: duckdb.DuckDBPyConnection, relation: str, needles: set[str]) -> set[str]:
    """The needles some row of `relation` holds, in any column."""
    rows = connection.execute(
        f"""
        select distinct needle
        from (select concat_ws('|', *columns(*)) as line from {relation})
        inner join (select unnest(?) as needle) on contains(line, needle)
        """,
        [sorted(needles)],
    ).fetchall()
    return {needle for (needle,) in rows}


def found(needles: set[str], text: str) -> set[str]:
    lowered = text.lower()
    return {needle for needle in needles if needle.lower() in lowered}


@pytest.mark.slow
def test_the_warehouse_keeps_full_ssns_and_dates_of_birth_only_encrypted(demo) -> None:
    home, _ = demo
    customers = demo_customers(home)
    ssns, births = values_of(customers, "ssn"), values_of(customers, "date_of_birth")
    assert len(ssns) > 20 and len(births) > 20
    connection = duckdb.connect(str(home / "warehouse" / "recoup.duckdb"), read_only=True)
    try:
        stored = connection.execute(
            "select customer_id, ssn, date_of_birth, ssn_last4, birth_year from raw.customers"
        ).fetchall()
        by_id = {customer["customer_id"]: customer for customer in customers}
        for customer_id, ssn, born, last4, year in stored:
            billing = by_id[customer_id]
            for column, value in (("ssn", ssn), ("date_of_birth", born)):
                if billing[column]:  # encrypted with the configured key, and it opens
                    assert value.startswith(f"pii1:{KEYRING.current_id}:")
                    assert KEYRING.decrypt(customer_id, column, value) == billing[column]
                else:
                    assert value is None
            assert last4 == (billing["ssn"][-4:] or None)
            assert year == (int(billing["date_of_birth"][:4]) if billing["date_of_birth"] else None)
        # no table or view holds a full SSN or date of birth in the clear: not the marts, not
        # ops, not the quarantine (its row_json), not raw.customers itself
        relations = connection.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() union all "
            "select schema_name, view_name from duckdb_views() "
            "where database_name = current_database() and not internal"
        ).fetchall()
        assert ("marts", "dim_customers") in relations and ("raw", "quarantine") in relations
        for schema, name in relations:
            leaked = held_in(connection, f'"{schema}"."{name}"', ssns | births)
            assert leaked == set(), f"{schema}.{name} holds {len(leaked)} SSNs or dates of birth"
        assert held_in(connection, "marts.dim_customers", values_of(customers, "email"))
        marts = {name for (name,) in connection.execute(
            "select column_name from duckdb_columns() "
            "where schema_name = 'marts' and table_name = 'dim_customers'"
        ).fetchall()}  # fmt: skip
        assert {"ssn_last4", "birth_year"} <= marts and not marts & {"ssn", "date_of_birth"}
        contacts = {name for (name,) in connection.execute(
            "select column_name from duckdb_columns() "
            "where schema_name = 'ops' and table_name = 'customer_contacts'"
        ).fetchall()}  # fmt: skip
        assert not contacts & {"ssn", "date_of_birth"}
    finally:
        connection.close()


@pytest.mark.slow
def test_logs_artifacts_and_files_hold_no_ssn_date_of_birth_email_or_key(demo) -> None:
    """SSNs, dates of birth and the key nowhere; emails only in the .eml files, the
    skip-trace request file (and agency placement files, none on a demo's first day); names,
    phone numbers and email bodies in no log, Prefect record or run report."""
    home, result = demo
    customers = demo_customers(home)
    secret = values_of(customers, "ssn") | values_of(customers, "date_of_birth") | {KEY}
    emails = values_of(customers, "email")
    [export] = home.glob("inbox/*/customers.csv")
    assert len(found(secret, export.read_text(encoding="utf-8"))) == len(secret) - 1  # all but KEY
    emls = sorted((home / "outbox" / AS_OF).glob("*.eml"))
    assert emls
    bodies = set()
    for eml in emls:
        body = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        plain = body.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        bodies |= {line for line in plain.splitlines()[:4] if len(line) > 12}  # "Dear Ann Lee,"
    personal = values_of(customers, "full_name") | values_of(customers, "phone") | bodies

    prefect = prefect_database_text(home)
    assert "daily-dunning-summary" in prefect  # the run's artifacts are in what is read
    run_logs = list((home / "state" / "logs" / AS_OF).glob("*.jsonl"))
    assert run_logs and run_logs[0].read_text(encoding="utf-8").count("\n") > 10
    logs = [
        *texts(home / "state"),  # run logs, dbt logs and target, the lock, Prefect's files
        (home / "state" / "prefect" / "prefect.db", prefect),
        *texts(home / "out" / "reports"),
        (Path("stdout and stderr"), result.stdout + result.stderr),
    ]
    for where, text in logs:
        assert not found(secret | emails | personal, text), where

    outputs = [*texts(home / "out"), *texts(home / "outbox")]
    assert any(path.suffix == ".pdf" for path, _ in outputs)
    assert any(found(values_of(customers, "full_name"), text) for path, text in outputs
               if path.suffix == ".pdf")  # fmt: skip  # the letters were read, not skipped
    for path, text in outputs:
        assert not found(secret, text), path
        meant_for_emails = path.suffix == ".eml" or path.name == "skip_requests.csv"
        if not meant_for_emails and "agencies" not in path.relative_to(home).parts:
            assert not found(emails, text), path
    assert all(found(emails, eml.read_text(encoding="utf-8")) for eml in emls)  # needles work


@pytest.mark.slow
def test_every_file_recoup_writes_is_owner_only(demo) -> None:
    home, _ = demo
    checked = 0
    for folder in ("out", "outbox", "state", "warehouse", "inbox"):
        for path in (home / folder).rglob("*"):
            mode = stat.S_IMODE(path.lstat().st_mode)
            expected = 0o700 if path.is_dir() else 0o600
            assert mode == expected, f"{path.relative_to(home)} is {mode:o}"
            checked += 1
        assert stat.S_IMODE((home / folder).stat().st_mode) == 0o700, folder
    assert checked > 50
    assert not (home / "state" / "pii_demo.key").exists()  # RECOUP_PII_KEY was set


def test_recoup_s_own_writers_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """Outside the command line (a Prefect worker started with a lax umask) the writers
    still create owner-only files and folders."""
    previous = os.umask(0o022)
    try:
        report = write_atomically(tmp_path / "out" / "reports" / AS_OF / "run.json", b"{}")
        with run_log(tmp_path / "state" / "logs" / AS_OF, "run-1") as log:
            pass
        with run_lock(tmp_path / "state", "test", 0):
            pass
        connection = open_warehouse(tmp_path / "warehouse" / "recoup.duckdb")
        connection.close()
        settings = load_settings({"RECOUP_HOME": str(tmp_path / "home")})
        key_file = ensure_demo_key(settings)
        owner_only_folder(tmp_path / "outbox" / AS_OF)
    finally:
        os.umask(previous)
    files = [report, log, tmp_path / "state" / "recoup.lock",
             tmp_path / "warehouse" / "recoup.duckdb", key_file]  # fmt: skip
    folders = [tmp_path / "out", tmp_path / "out" / "reports", report.parent,
               tmp_path / "state" / "logs", log.parent, tmp_path / "warehouse",
               tmp_path / "outbox" / AS_OF, tmp_path / "home" / "state"]  # fmt: skip
    for path in files:
        assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in folders:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


# --- the keyring --------------------------------------------------------------------------


def test_a_value_opens_only_with_its_key_its_customer_and_its_column() -> None:
    sealed = KEYRING.encrypt("C1", "ssn", "900123456")
    assert sealed.startswith(f"pii1:{key_id(decode_key(KEY, 'test'))}:")
    assert "900123456" not in sealed and KEYRING.encrypt("C1", "ssn", "900123456") != sealed
    assert KEYRING.decrypt("C1", "ssn", sealed) == "900123456"
    for customer, column in (("C2", "ssn"), ("C1", "date_of_birth")):
        with pytest.raises(PiiKeyWrong, match="does not decrypt") as moved:
            KEYRING.decrypt(customer, column, sealed)
        assert "900123456" not in str(moved.value)
    other = Keyring((decode_key(OTHER_KEY, "test"),))
    with pytest.raises(PiiKeyWrong, match=f"encrypted with key {KEYRING.current_id}"):
        other.decrypt("C1", "ssn", sealed)
    assert KEY not in repr(KEYRING) and KEYRING.current_id in repr(KEYRING)
    rotated = Keyring((decode_key(OTHER_KEY, "test"), decode_key(KEY, "test")))
    assert rotated.decrypt("C1", "ssn", sealed) == "900123456"  # a previous key still opens


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        pytest.param({"RECOUP_PII_KEY": "not-a-key"}, "RECOUP_PII_KEY is not base64", id="not base64"),
        pytest.param({"RECOUP_PII_KEY": base64.b64encode(b"short").decode()}, "RECOUP_PII_KEY decodes to 5 bytes", id="too short"),
        pytest.param({"RECOUP_PII_PREVIOUS_KEYS": KEY}, "RECOUP_PII_KEY is not", id="previous without current"),
    ],
)  # fmt: skip
def test_a_wrong_key_setting_stops_recoup_without_showing_the_key(
    tmp_path: Path, environment: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings({"RECOUP_HOME": str(tmp_path), **environment})
    assert all(value not in str(refused.value) for value in environment.values())


def test_a_key_in_recoup_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "recoup.yaml").write_text(f"pii_key: {KEY}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="set RECOUP_PII_KEY") as refused:
        load_settings({"RECOUP_HOME": str(tmp_path)})
    assert KEY not in str(refused.value)


def test_the_demo_key_is_written_once_and_only_without_a_configured_key(tmp_path: Path) -> None:
    settings = load_settings({"RECOUP_HOME": str(tmp_path)})
    assert keyring_for(settings) is None
    written = ensure_demo_key(settings)
    assert written == tmp_path / "state" / "pii_demo.key"
    demo_ring = keyring_for(settings)
    assert demo_ring is not None and ensure_demo_key(settings) is None  # not replaced
    assert keyring_for(settings) == demo_ring
    configured = load_settings({"RECOUP_HOME": str(tmp_path), "RECOUP_PII_KEY": KEY})
    assert keyring_for(configured) == KEYRING  # the environment wins


# --- ingest -------------------------------------------------------------------------------


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse" / "recoup.duckdb"


def test_ingest_encrypts_and_keeps_the_last_four_and_the_year(
    warehouse_path: Path, tmp_path: Path
) -> None:
    connection = open_warehouse(warehouse_path)
    try:
        load_batch(connection, base_batch(tmp_path / "b1"), keyring=KEYRING, require_key=True)
        [(ssn, born, last4, year)] = connection.execute(
            "select ssn, date_of_birth, ssn_last4, birth_year from raw.customers_latest"
        ).fetchall()
        assert (last4, year) == ("3456", 1980)
        assert KEYRING.decrypt("C1", "ssn", ssn) == "900123456"
        assert KEYRING.decrypt("C1", "date_of_birth", born) == "1980-01-02"
        [identity] = restricted_identities(
            connection, KEYRING, ["C1"], needed_for="a test"
        ).values()
        assert (identity.ssn, identity.date_of_birth) == ("900123456", dt.date(1980, 1, 2))
        assert "900123456" not in repr(identity)
        with pytest.raises(PiiKeyMissing, match="a test needs"):
            restricted_identities(connection, None, ["C1"], needed_for="a test")
        # another key cannot load more under it: the warehouse would need two keys
        other = Keyring((decode_key(OTHER_KEY, "test"),))
        customers = [row("customers", customer_id="C2", ssn="900654321")]
        with pytest.raises(PiiKeyWrong, match="Nothing was written"):
            load_batch(connection, write_batch(tmp_path / "b2", customers=customers), keyring=other)
        assert connection.execute("select count(*) from raw.load_batches").fetchall() == [(1,)]
    finally:
        connection.close()


def test_without_a_key_a_batch_with_ssns_is_refused_and_nothing_is_written(
    warehouse_path: Path, tmp_path: Path
) -> None:
    connection = open_warehouse(warehouse_path)
    try:
        folder = base_batch(tmp_path / "b1")
        with pytest.raises(PiiKeyMissing, match=r"customers\.csv: 1 customers carry") as refused:
            load_batch(connection, folder, require_key=True)
        assert "900123456" not in str(refused.value)
        assert connection.execute("select count(*) from raw.customers").fetchall() == [(0,)]
        assert connection.execute("select count(*) from raw.load_files").fetchall() == [(0,)]
        # a batch without either loads; as a library call without a key they are not kept
        plain = [row("customers", ssn="", date_of_birth="")]
        load_batch(connection, base_batch(tmp_path / "b2", customers=plain), require_key=True)
        load_batch(connection, base_batch(tmp_path / "b3"))
        assert connection.execute(
            "select ssn, date_of_birth, ssn_last4, birth_year from raw.customers order by _batch_id"
        ).fetchall() == [(None, None, None, None), (None, None, "3456", 1980)]
    finally:
        connection.close()


def test_the_skip_trace_file_carries_the_date_of_birth_decrypted_for_it(tmp_path: Path) -> None:
    from flows.lib.config import SkipTracingSettings
    from flows.lib.gates import record_build
    from flows.lib.skip_tracing import trace_skips
    from tests.contact_fixtures import AS_OF as TRACED_ON
    from tests.contact_fixtures import a_customer, a_stage, make_marts

    connection = open_warehouse(tmp_path / "warehouse" / "recoup.duckdb")
    try:
        load_batch(connection, base_batch(tmp_path / "b1"), keyring=KEYRING)  # C1, born 1980
        make_marts(connection, [a_stage()], [a_customer()])
        connection.execute(
            "insert into ops.email_suppressions values ('ann@example.com', 'hard_bounce', now(), "
            "null)"
        )  # C1's email bounced: a skip candidate
        record_build(connection, TRACED_ON)
        settings, out = SkipTracingSettings(), tmp_path / "out"
        with pytest.raises(PiiKeyMissing, match="the skip-trace request file needs"):
            trace_skips(connection, settings, out, TRACED_ON, run_id="run-1")
        outcome = trace_skips(connection, settings, out, TRACED_ON, run_id="run-1", keyring=KEYRING)
        with Path(outcome.files[0]).open(encoding="utf-8", newline="") as lines:
            [line] = list(csv.DictReader(lines))
        assert (line["customer_id"], line["date_of_birth"]) == ("C1", "1980-01-02")
        assert "900123456" not in Path(outcome.files[0]).read_text(encoding="utf-8")
    finally:
        connection.close()


# --- an older warehouse, and rotating the key ---------------------------------------------


def legacy_warehouse(path: Path) -> None:
    """raw.customers as an older recoup left it: SSN and date of birth in the clear, and the
    date of birth in marts.dim_customers too."""
    connection = open_warehouse(path)
    connection.execute("alter table raw.customers drop column ssn_last4")
    connection.execute("alter table raw.customers drop column birth_year")
    connection.execute("alter table raw.customers alter date_of_birth type DATE")
    connection.execute(
        "insert into raw.customers by name select 'C1' as customer_id, 'consumer' as "
        "customer_type, 'Ann Lee' as full_name, '900123456' as ssn, date '1980-01-02' as "
        "date_of_birth, 1 as _batch_id, 'customers.csv' as _file_name, 2 as _line_number, "
        "now() as _loaded_at"
    )
    connection.execute("create schema marts")
    connection.execute(
        "create table marts.dim_customers as select customer_id, date_of_birth from raw.customers"
    )
    connection.close()


def test_an_older_warehouse_is_refused_until_encrypted_then_keeps_no_clear_copy(
    warehouse_path: Path,
) -> None:
    legacy_warehouse(warehouse_path)
    assert b"900123456" in warehouse_path.read_bytes()  # in the clear, in the file
    with pytest.raises(ClearPiiInWarehouse, match="holds 1 rows with them") as refused:
        open_warehouse(warehouse_path)
    assert "recoup pii encrypt" in str(refused.value)
    open_warehouse(warehouse_path, read_only=True).close()  # reading is still allowed

    outcome = protect_warehouse(warehouse_path, KEYRING)
    assert (outcome.encrypted, outcome.reencrypted, outcome.rewritten) == (2, 0, True)
    assert outcome.dropped == ("marts.dim_customers.date_of_birth",)
    data = warehouse_path.read_bytes()
    assert b"900123456" not in data and b"1980-01-02" not in data
    assert stat.S_IMODE(warehouse_path.stat().st_mode) == 0o600
    connection = open_warehouse(warehouse_path)  # accepted now
    try:
        [identity] = restricted_identities(connection, KEYRING, ["C1"], needed_for="t").values()
        assert (identity.ssn, identity.date_of_birth) == ("900123456", dt.date(1980, 1, 2))
        assert connection.execute(
            "select ssn_last4, birth_year from raw.customers_latest"
        ).fetchall() == [("3456", 1980)]
    finally:
        connection.close()
    again = protect_warehouse(warehouse_path, KEYRING)
    assert not again.rewritten and "nothing to do" in str(again)


def test_encrypting_takes_the_duckdb_limits(warehouse_path: Path, tmp_path: Path) -> None:
    """`recoup pii encrypt` opens the warehouse with duckdb.memory_limit and the owner-only
    spill folder, like every other connection: a limit DuckDB cannot read is refused."""
    legacy_warehouse(warehouse_path)
    spill = tmp_path / "spill"
    with pytest.raises(duckdb.Error, match=r"(?i)memory"):
        protect_warehouse(warehouse_path, KEYRING, {"memory_limit": "lots"})
    outcome = protect_warehouse(
        warehouse_path, KEYRING, {"memory_limit": "256MB", "temp_directory": str(spill)}
    )
    assert outcome.encrypted == 2
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700


def test_the_command_line_refuses_an_older_warehouse_until_it_is_encrypted(
    tmp_path: Path, served_api_url: str
) -> None:
    home = tmp_path / "home"
    legacy_warehouse(home / "warehouse" / "recoup.duckdb")

    def recoup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RECOUP), *args], cwd=home, env=subprocess_environment(home, served_api_url, **env),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    refused = recoup("purge", "--dry-run")  # anything that opens the warehouse to write
    assert refused.returncode == 1 and "run `recoup pii encrypt` once" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = recoup("pii", "encrypt", RECOUP_PII_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert "Encrypted 2 SSNs and dates of birth" in " ".join(done.stdout.split())
    open_warehouse(home / "warehouse" / "recoup.duckdb").close()  # accepted now


def test_rotating_the_key_re_encrypts_every_version_under_the_new_one(
    warehouse_path: Path, tmp_path: Path
) -> None:
    connection = open_warehouse(warehouse_path)
    load_batch(connection, base_batch(tmp_path / "b1"), keyring=KEYRING)
    load_batch(
        connection,
        write_batch(tmp_path / "b2", customers=[row("customers", ssn="900111222")]),
        keyring=KEYRING,
    )
    connection.close()
    new = decode_key(OTHER_KEY, "test")
    with pytest.raises(PiiKeyWrong, match=f"encrypted with key {KEYRING.current_id}"):
        protect_warehouse(warehouse_path, Keyring((new,)))  # the old key is needed to open
    outcome = protect_warehouse(warehouse_path, Keyring((new, decode_key(KEY, "test"))))
    assert (outcome.encrypted, outcome.reencrypted) == (0, 4)  # two versions, two columns
    connection = open_warehouse(warehouse_path)
    try:
        only_new = Keyring((new,))
        assert connection.execute(
            "select count(*) from raw.customers where not starts_with(ssn, ?)",
            [f"pii1:{only_new.current_id}:"],
        ).fetchall() == [(0,)]
        [identity] = restricted_identities(connection, only_new, ["C1"], needed_for="t").values()
        assert identity.ssn == "900111222"  # the newest version
    finally:
        connection.close()
