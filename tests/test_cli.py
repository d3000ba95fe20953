"""The `recoup` command as a user runs it: output, files and exit codes."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import base_batch, csv_text, row
from tests.cli_env import subprocess_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RECOUP = Path(sys.executable).parent / "recoup"


SERVED_API: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _served_api(served_api_url: str) -> None:
    SERVED_API["url"] = served_api_url


def recoup(
    home: Path, *args: str, ephemeral_api: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """`recoup <args>` in a subprocess; on the session's test API unless `ephemeral_api`
    (the default of a real installation, which the demo fixture keeps covered)."""
    api_url = None if ephemeral_api else SERVED_API["url"]
    return subprocess.run(
        [str(RECOUP), *args], cwd=home, env=subprocess_environment(home, api_url, **env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`recoup demo` as a fresh installation runs it: Prefect's ephemeral API included."""
    home = tmp_path_factory.mktemp("home")
    demo = ("demo", "--accounts", "300", "--as-of", "2026-11-23")
    return home, recoup(home, *demo, ephemeral_api=True)


def test_demo_generates_loads_and_says_where_the_warehouse_is(demo_home) -> None:
    home, result = demo_home
    assert result.returncode == 0, result.stderr
    assert (home / "warehouse" / "recoup.duckdb").is_file()
    assert (home / "inbox" / "demo-2026-11-23-300-seed42" / "invoices.csv").is_file()
    assert "Generated" in result.stdout
    assert "quarantined 5" in result.stdout
    assert f"Warehouse: {home / 'warehouse' / 'recoup.duckdb'}" in result.stdout
    assert "Not built yet" not in result.stdout
    said = " ".join(result.stdout.split())
    assert "Agencies: placed 0; recalled 0;" in said  # a first day: nobody at the agency stage
    servicing = home / "out" / "servicing" / "2026-11-23"
    assert "Servicing queues: refunds due" in said and f"files in {servicing}" in said
    assert (servicing / "refund_queue.csv").is_file()
    skips = home / "out" / "skip_tracing" / "2026-11-23"
    assert "Skip tracing: skip tracing:" not in said
    assert "Skip tracing: " in said and f"files in {skips}" in said
    assert (skips / "skip_requests.csv").is_file()
    assert "Traceback" not in result.stdout + result.stderr


def test_demo_contacts_customers_through_the_outbox_letters_and_queue(demo_home) -> None:
    home, result = demo_home
    assert "Contacts for 2026-11-23" in result.stdout
    emails = sorted((home / "outbox" / "2026-11-23").glob("*.eml"))
    letters = sorted((home / "out" / "letters" / "2026-11-23").glob("*.pdf"))
    manifests = sorted((home / "out" / "letters" / "2026-11-23").glob("print_manifest_*.csv"))
    assert emails and letters and len(manifests) == 1
    assert f"Emails: {len(emails):,} written as .eml files to {home / 'outbox' / '2026-11-23'}" in (
        result.stdout
    )
    assert f"Letters: {len(letters):,} PDFs; print manifest {manifests[0]}" in result.stdout
    listed = manifests[0].read_text(encoding="utf-8").splitlines()
    assert len(listed) == len(letters) + 1  # a header, then one line per letter


def test_demo_twice_changes_nothing(demo_home) -> None:
    home, _ = demo_home
    again = recoup(home, "demo", "--accounts", "300", "--as-of", "2026-11-23")
    assert again.returncode == 0, again.stderr
    assert "Every file had been loaded before; nothing changed." in again.stdout
    # every key went out once: nothing is sent again (deferred contacts may be listed)
    assert "Emails:" not in again.stdout and "Letters:" not in again.stdout
    assert "│ sent" not in again.stdout


def test_status_quarantine_and_sql_read_the_warehouse(demo_home) -> None:
    home, _ = demo_home
    status = recoup(home, "status")
    assert status.returncode == 0, status.stderr
    assert "raw.invoices" in status.stdout and "Quarantine: 1 held, 4 rejected" in status.stdout
    listed = recoup(home, "quarantine")
    assert "issue_date '2026-13-45' is not a real date" in listed.stdout
    query = recoup(home, "sql", "select count(*) as accounts from raw.accounts_latest")
    assert query.returncode == 0 and "300" in query.stdout
    bad = recoup(home, "sql", "select * from nowhere")
    assert bad.returncode == 1 and "the query failed" in bad.stderr


def test_the_gates_run_alone_on_the_date_the_marts_hold(demo_home) -> None:
    home, _ = demo_home
    checked = recoup(home, "run", "--only", "gates", "--as-of", "2026-11-23")
    assert checked.returncode == 0, checked.stderr
    assert "ledger_reconciles" in checked.stdout and "FAIL" not in checked.stdout
    other_day = recoup(home, "run", "--only", "gates", "--as-of", "2026-11-24")
    assert other_day.returncode == 1
    assert "gate_warehouse cannot check 2026-11-24: the marts hold 2026-11-23" in other_day.stderr
    assert "Traceback" not in other_day.stderr


def test_ingest_reports_a_wrong_header_without_a_traceback(tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "batch",
        invoices=csv_text("invoices", [row("invoices")]).replace("amount", "amt"),
    )
    result = recoup(tmp_path, "ingest", str(folder))
    assert result.returncode == 1
    assert (
        "invoices.csv: wrong header: missing required column(s) amount; unknown column(s) amt"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_ingest_of_a_missing_folder_fails_fast(tmp_path: Path) -> None:
    result = recoup(tmp_path, "ingest", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "no such folder" in result.stderr


def test_a_wrong_setting_stops_every_command(tmp_path: Path) -> None:
    result = recoup(tmp_path, "status", RECOUP_INGEST__LOCK_WAIT="5")
    assert result.returncode == 1
    assert "RECOUP_INGEST__LOCK_WAIT: 'ingest' has no key 'lock_wait'" in result.stderr


def test_bureau_writes_a_valid_file_for_the_month_without_an_ssn_in_sight(demo_home) -> None:
    home, _ = demo_home
    result = recoup(home, "bureau", "--period", "2026-11")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "Metro 2 file for 2026-11:" in said and "as of 2026-11-23" in said
    path = home / "out" / "credit_bureau" / "2026-11" / "metro2_202611.txt"
    assert path.is_file() and f"written to {path}" in said
    from flows.lib.metro2_validate import validate_file

    assert validate_file(path.read_bytes(), today=dt.date(2026, 12, 31)) == []
    # the warehouse holds them encrypted (tests/test_data_protection.py): read the export's
    export = home / "inbox" / "demo-2026-11-23-300-seed42" / "customers.csv"
    with export.open(encoding="utf-8", newline="") as lines:
        demo_ssns = [customer["ssn"] for customer in csv.DictReader(lines) if customer["ssn"]]
    assert demo_ssns
    logs = "".join(p.read_text(encoding="utf-8") for p in (home / "state").rglob("*.jsonl"))
    for ssn in demo_ssns:
        assert ssn not in result.stdout + result.stderr + logs
    not_over = recoup(home, "bureau", "--period", "2026-12")
    assert not_over.returncode == 1 and "is not over yet" in not_over.stderr
    assert "Traceback" not in not_over.stderr
    bad = recoup(home, "bureau", "--period", "2026-13")
    assert bad.returncode == 2 and "is not a month" in bad.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read", id="no such file"),
        pytest.param("# nobody\n\n", "lists no account id", id="an empty list"),
    ],
)
def test_run_for_an_account_list_checks_the_file_first(
    tmp_path: Path, content: str | None, message: str
) -> None:
    listing = tmp_path / "accounts.txt"
    if content is not None:
        listing.write_text(content, encoding="utf-8")
    result = recoup(tmp_path, "run", "--accounts", str(listing))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "warehouse").exists()  # refused before anything ran


def test_events_import_of_a_broken_file_says_what_is_wrong(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    events.write_text('{"event": "bounce"}', encoding="utf-8")
    result = recoup(tmp_path, "events", "import", str(events))
    assert result.returncode == 1
    assert "JSON array" in result.stderr and "Traceback" not in result.stderr


def test_the_monthly_report_writes_html_and_pdf(demo_home) -> None:
    home, _ = demo_home
    result = recoup(home, "report", "--month", "2026-11")
    assert result.returncode == 0, result.stderr
    folder = home / "out" / "reports" / "monthly"
    assert (folder / "2026-11.html").is_file() and (folder / "2026-11.pdf").is_file()
    assert f"Report: {folder / '2026-11.pdf'}" in result.stdout
    assert (folder / "2026-11.pdf").read_bytes().startswith(b"%PDF")


def test_a_month_that_is_not_a_month_is_refused(tmp_path: Path) -> None:
    result = recoup(tmp_path, "report", "--month", "2026-13")
    assert result.returncode == 2 and "is not a month; use YYYY-MM" in result.stderr


def test_status_lists_the_last_runs_and_the_next_scheduled_one(demo_home) -> None:
    home, _ = demo_home
    status = recoup(home, "status")
    assert status.returncode == 0, status.stderr
    assert "Next scheduled run: " in status.stdout and "America/Chicago" in status.stdout
    assert "Last runs (ops.runs)" in status.stdout and "succeeded" in status.stdout
    assert (
        "Run lock: free" in status.stdout and "Freshness: newest payment received" in status.stdout
    )


def test_agencies_import_refuses_a_wrong_file_and_quarantines_bad_lines(demo_home) -> None:
    home, _ = demo_home
    wrong = home / "wrong_header.csv"
    wrong.write_text("id,account,amount\nR1,A1,10.00\n", encoding="utf-8")
    refused = recoup(home, "agencies", "import", str(wrong), "--agency", "summit")
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())  # the console wraps long lines
    assert "wrong header for a remittance file" in said
    assert "Nothing from this file was loaded" in said
    assert "Traceback" not in refused.stderr
    unknown_agency = recoup(home, "agencies", "import", str(wrong), "--agency", "acme")
    assert unknown_agency.returncode == 1
    said = " ".join(unknown_agency.stderr.split())
    assert "'acme' is not a configured agency (northwind, summit)" in said

    lines = home / "summit_remittance.csv"
    lines.write_text(
        "remittance_id,account_id,placement_id,paid_date,collected_amount,commission_amount,"
        "currency\n"
        "R1,NO-SUCH-ACCOUNT,,2026-11-20,10.00,2.80,USD\n"
        "R2,NO-SUCH-ACCOUNT,,2026-11-20,ten,2.80,USD\n",
        encoding="utf-8",
    )
    loaded = recoup(home, "agencies", "import", str(lines), "--agency", "summit")
    assert loaded.returncode == 0, loaded.stderr
    said = " ".join(loaded.stdout.split())
    assert "2 lines read, 0 loaded, 2 quarantined" in said
    # a line names every reason it broke: R2 has a bad amount for an unknown account too
    assert "bad_amount 1, unknown_account 2" in said
    status = recoup(home, "agencies", "status")
    assert status.returncode == 0, status.stderr
    assert "2 remittance lines in quarantine" in status.stdout
    again = recoup(home, "agencies", "import", str(lines), "--agency", "summit")
    said = " ".join(again.stdout.split())
    assert "already loaded for summit" in said and "nothing changed" in said


def test_skip_trace_commands_record_returned_contacts_and_refuse_a_wrong_file(
    demo_home,
) -> None:
    home, _ = demo_home
    wrong = home / "skip_results_wrong.csv"
    wrong.write_text("request,customer,new_email\nR1,C1,a@example.com\n", encoding="utf-8")
    refused = recoup(home, "skip-trace", "import", str(wrong))
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "skip_results_wrong.csv" in said and "Nothing from this file was loaded" in said
    assert "Traceback" not in refused.stderr

    returned = home / "returned.csv"
    returned.write_text(
        "customer_id,channel,reported_on,reason,reference\n"
        "C0000004,letter,2026-11-23,moved,\n"
        "NO-SUCH-CUSTOMER,phone,2026-11-23,,\n",
        encoding="utf-8",
    )
    loaded = recoup(home, "skip-trace", "returned", str(returned))
    assert loaded.returncode == 0, loaded.stderr
    said = " ".join(loaded.stdout.split())
    assert "2 lines read, 1 loaded, 1 quarantined" in said and "unknown_customer 1" in said
    status = recoup(home, "skip-trace", "status")
    assert status.returncode == 0, status.stderr
    assert "No skip-trace request has been made." in status.stdout
    assert "1 line in quarantine: see ops.skip_quarantine." in status.stdout
