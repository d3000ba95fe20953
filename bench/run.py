"""`make bench`: time demo generation, ingest, dbt, the gates, the contact steps and the
monthly Metro 2 file at several sizes; write a JSON of timings.

Sizes come from BENCH_SIZES (accounts, comma-separated; default 10000,100000). Each size also
times a plain-DuckDB reference (typed CSV load of the same files, no checks), so results read
as ratios that survive a noisy machine. The contact steps run on the first day of the demo
(every past-due account enters a stage at once, the heaviest day): planning, the re-check,
every email into an outbox folder, and letters on a sample of at most BENCH_LETTERS accounts
(default 1000), reported per letter. Output: a table on screen and
out/bench/<timestamp>.json (under RECOUP_HOME, default the current folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from flows.lib.bureau_file import generate_bureau_file
from flows.lib.config import load_settings
from flows.lib.contract import ENTITIES, STORAGE_TYPE
from flows.lib.dbt_build import build_warehouse
from flows.lib.demo_data import generate_demo_export
from flows.lib.emailing import send_planned_emails
from flows.lib.gates import run_gate
from flows.lib.loader import load_batch
from flows.lib.planner import ContactScope, build_plan, commit_plan
from flows.lib.printing import print_planned_letters
from flows.lib.recheck import cancel_outdated
from flows.lib.senders import OutboxSender
from flows.lib.warehouse import open_warehouse

AS_OF = dt.date(2026, 11, 23)


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB


def plain_duckdb_load(folder: Path, target: Path) -> float:
    """Reference: DuckDB loading the same CSVs into typed tables, with no contract checks."""
    started = time.perf_counter()
    connection = duckdb.connect(str(target))
    for entity in ENTITIES:
        columns = ", ".join(f"'{c.name}': '{STORAGE_TYPE[c.kind]}'" for c in entity.columns)
        connection.execute(
            f"create table {entity.name} as select * from read_csv("
            f"'{folder / (entity.name + '.csv')}', header = true, columns = {{{columns}}}, "
            "ignore_errors = true)"
        )
    connection.close()
    return time.perf_counter() - started


def plain_duckdb_aging(warehouse: Path) -> float:
    """Reference: one hand-written DuckDB query for the aging step (FIFO payment application
    and buckets, no holds or stages), on the same warehouse."""
    connection = duckdb.connect(str(warehouse), read_only=True)
    started = time.perf_counter()
    connection.execute(
        f"""
        with credit as (
            select account_id, sum(amount) as paid from raw.payments_latest
            where received_date <= date '{AS_OF}' and reverses_payment_id is null
            group by account_id
        ),
        items as (
            select account_id, invoice_id, due_date, amount,
                sum(amount) over (partition by account_id order by due_date, invoice_id
                    rows between unbounded preceding and 1 preceding) as before
            from raw.invoices_latest where issue_date <= date '{AS_OF}'
        ),
        open_items as (
            select items.account_id, items.due_date,
                items.amount - least(greatest(coalesce(credit.paid, 0)
                    - coalesce(items.before, 0), 0), items.amount) as open_amount
            from items left join credit using (account_id)
        )
        select account_id,
            sum(open_amount) filter (where date '{AS_OF}' - due_date <= 0) as current,
            sum(open_amount) filter (where date '{AS_OF}' - due_date between 1 and 30) as b1,
            sum(open_amount) filter (where date '{AS_OF}' - due_date > 30) as b2,
            sum(open_amount) as total_open
        from open_items where open_amount > 0 group by account_id
        """
    ).fetchall()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def bench_size(accounts: int, work: Path) -> dict[str, object]:
    folder = work / f"export-{accounts}"
    started = time.perf_counter()
    export = generate_demo_export(folder, accounts=accounts, as_of=AS_OF, seed=42)
    generate_s = time.perf_counter() - started

    connection = open_warehouse(work / f"recoup-{accounts}.duckdb")
    started = time.perf_counter()
    outcome = load_batch(connection, folder)
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    load_batch(connection, folder)  # the same files again: hashing only
    reload_s = time.perf_counter() - started
    connection.close()

    started = time.perf_counter()
    build_warehouse(work / f"recoup-{accounts}.duckdb", work / f"state-{accounts}", AS_OF)
    dbt_s = time.perf_counter() - started
    reference_aging_s = plain_duckdb_aging(work / f"recoup-{accounts}.duckdb")

    connection = open_warehouse(work / f"recoup-{accounts}.duckdb")
    started = time.perf_counter()
    run_gate(connection, "gate_raw", AS_OF, run_id="bench", freshness_days=7)
    gate_raw_s = time.perf_counter() - started
    started = time.perf_counter()
    run_gate(connection, "gate_warehouse", AS_OF, run_id="bench", freshness_days=7)
    gate_warehouse_s = time.perf_counter() - started
    contact = bench_contacts(connection, work, accounts)
    bureau = bench_bureau(connection, work, accounts)
    connection.close()

    reference_s = plain_duckdb_load(folder, work / f"plain-{accounts}.duckdb")
    rows = sum(export.rows.values())
    return {
        "accounts": accounts,
        "rows": rows,
        "generate_s": round(generate_s, 3),
        "ingest_s": round(ingest_s, 3),
        "reload_unchanged_s": round(reload_s, 3),
        "plain_duckdb_load_s": round(reference_s, 3),
        "ingest_vs_plain_duckdb": round(ingest_s / reference_s, 2),
        "ingest_rows_per_s": int(rows / ingest_s),
        "dbt_build_s": round(dbt_s, 3),
        "plain_duckdb_aging_s": round(reference_aging_s, 3),
        "dbt_vs_plain_duckdb_aging": round(dbt_s / reference_aging_s, 2),
        "gate_raw_s": round(gate_raw_s, 3),
        "gate_warehouse_s": round(gate_warehouse_s, 3),
        "gates_share_of_ingest_dbt_gates": round(
            (gate_raw_s + gate_warehouse_s) / (ingest_s + dbt_s + gate_raw_s + gate_warehouse_s), 3
        ),
        **contact,
        **bureau,
        "rows_quarantined": outcome.rows_quarantined,
        "peak_rss_mib_so_far": round(peak_rss_mib(), 1),
    }


def bench_contacts(
    connection: duckdb.DuckDBPyConnection, work: Path, accounts: int
) -> dict[str, object]:
    """Plan, re-check, send every email to an outbox folder, print a sample of letters."""
    settings = load_settings({"RECOUP_HOME": str(work / f"home-{accounts}")})
    now = dt.datetime.combine(AS_OF, dt.time(17), dt.UTC)  # inside the US send window
    started = time.perf_counter()
    plan = commit_plan(connection, build_plan(connection, settings.contact, AS_OF, "bench"))
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    cancel_outdated(connection, as_of=AS_OF, today=AS_OF, catch_up_days=7, run_id="bench")
    recheck_s = time.perf_counter() - started
    sender = OutboxSender.from_settings(settings, work / f"outbox-{accounts}")
    started = time.perf_counter()
    emails = send_planned_emails(connection, settings, sender, as_of=AS_OF, run_id="bench", now=now)
    emails_s = time.perf_counter() - started
    sample_size = int(os.environ.get("BENCH_LETTERS", "1000"))
    sample = [
        account
        for (account,) in connection.execute(
            "select account_id from ops.action_ledger where channel = 'letter' "
            "and status = 'planned' order by account_id limit ?",
            [sample_size],
        ).fetchall()
    ]
    started = time.perf_counter()
    letters = print_planned_letters(
        connection, settings, as_of=AS_OF, run_id="bench", now=now,
        scope=ContactScope(account_ids=tuple(sample)),
    )  # fmt: skip
    letters_s = time.perf_counter() - started
    printed = letters.total("sent")
    return {
        "plan_s": round(plan_s, 3),
        "planned_emails": plan.planned().get("email", 0),
        "planned_letters": plan.planned().get("letter", 0),
        "recheck_s": round(recheck_s, 3),
        "emails_s": round(emails_s, 3),
        "emails_per_s": int(emails.total("sent") / emails_s) if emails_s else 0,
        "letters_printed": printed,
        "letter_ms": round(1000 * letters_s / printed, 1) if printed else None,
    }


def bench_bureau(
    connection: duckdb.DuckDBPyConnection, work: Path, accounts: int
) -> dict[str, object]:
    """The month's Metro 2 file: decide, render, validate, publish and record."""
    settings = load_settings({"RECOUP_HOME": str(work / f"home-{accounts}")})
    started = time.perf_counter()
    outcome = generate_bureau_file(
        connection, settings, f"{AS_OF:%Y-%m}", today=AS_OF.replace(day=1) + dt.timedelta(days=40)
    )
    bureau_s = time.perf_counter() - started
    return {
        "bureau_s": round(bureau_s, 3),
        "bureau_records": outcome.records,
        "bureau_us_per_record": round(1e6 * bureau_s / outcome.records, 1)
        if outcome.records
        else None,
    }


def main() -> None:
    sizes = [int(size) for size in os.environ.get("BENCH_SIZES", "10000,100000").split(",")]
    home = Path(os.environ.get("RECOUP_HOME", "."))
    results = []
    work = Path(tempfile.mkdtemp(prefix="recoup-bench-"))
    try:
        for accounts in sizes:
            print(f"benchmarking {accounts:,} accounts ...", file=sys.stderr, flush=True)
            results.append(bench_size(accounts, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "sizes": results,
    }
    target = home / "out" / "bench" / f"{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2), encoding="utf-8")
    keys = list(results[0])
    print(" | ".join(keys))
    for result in results:
        print(" | ".join(str(result[key]) for key in keys))
    print(f"peak RSS {report['peak_rss_mib']} MiB; written to {target}")


if __name__ == "__main__":
    main()
