"""`recoup` command line: parse arguments, call a flow, print what happened.

Errors a user can fix (a wrong setting, an unreadable batch, a busy warehouse) print one clear
message and exit 1; a wrong argument exits 2 with its usage.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.lib.agreements import AgreementError
from flows.lib.bureau_file import BureauError
from flows.lib.config import ConfigError, Settings, load_settings
from flows.lib.contact_data import MartsNotForDate
from flows.lib.dbt_build import DbtFailed
from flows.lib.email_events import EventKeyError, EventPayloadError
from flows.lib.emailing import TemplatesNotReady
from flows.lib.export_files import BatchError
from flows.lib.gates import GateFailed
from flows.lib.loader import BatchOutcome
from flows.lib.messages import SendAborted
from flows.lib.metro2_validate import Metro2Invalid
from flows.lib.pii import PiiError
from flows.lib.remittances import RemittanceFileError
from flows.lib.run_lock import LockBusy, current_holder
from flows.lib.runs import StepSelectionError
from flows.lib.skip_results import SkipResultFileError
from flows.lib.warehouse import WarehouseBusy

if TYPE_CHECKING:
    from flows.daily_dunning import RunSummary as DailySummary

app = typer.Typer(
    name="recoup",
    help="recoup: the accounts-receivable collections pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)


class RunFailed(RuntimeError):
    """The run finished, but one of its steps failed."""


USER_ERRORS = (
    ConfigError,
    BatchError,
    LockBusy,
    WarehouseBusy,
    FileNotFoundError,
    DbtFailed,
    GateFailed,
    TemplatesNotReady,
    SendAborted,
    EventPayloadError,
    EventKeyError,
    StepSelectionError,
    MartsNotForDate,
    RemittanceFileError,
    SkipResultFileError,
    AgreementError,
    BureauError,
    Metro2Invalid,
    PiiError,
    RunFailed,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    # every file recoup (dbt and DuckDB in its process, Prefect's database) creates here is the
    # owner's only: letters, queues, logs and the warehouse hold personal data
    os.umask(0o077)
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except USER_ERRORS as error:
        error_console.print(f"[bold red]recoup:[/] {error}", highlight=False)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        error_console.print("recoup: aborted")
        sys.exit(130)
    except Exception as error:  # click usage errors carry their own exit code
        code = getattr(error, "exit_code", None)
        if code is not None and hasattr(error, "show"):
            error.show()
            sys.exit(code)
        raise


_verbosity = {"level": "CRITICAL"}


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's flow and task logs.")
    ] = False,
) -> None:
    """recoup: the accounts-receivable collections pipeline."""
    _verbosity["level"] = "INFO" if verbose else "CRITICAL"


def _settings() -> Settings:
    settings = load_settings()
    # Prefect reads its own settings from the environment; give it safe, local defaults.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    prefect_home = settings.path("state") / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    # The CLI prints its own summary; Prefect's logs (and a failed flow's traceback) with -v.
    # Loggers stay at INFO (the run's JSON log and the Prefect UI get every line); only the
    # console handler is quiet.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", _verbosity["level"])
    return settings


def _parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option
        ) from None


# --- demo --------------------------------------------------------------------------------


@app.command()
def demo(
    accounts: Annotated[
        int | None, typer.Option(help="Accounts to generate (default: recoup.yaml demo.accounts).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed; the same seed gives the same data.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Date the data ends on, YYYY-MM-DD (default: today)."),
    ] = None,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Generate a demo billing export, then run the daily cycle on it."""
    settings = _settings()
    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter("use csv or parquet", param_hint="--format")
    count = accounts or settings.demo.accounts
    if count < 10:
        raise typer.BadParameter("generate at least 10 accounts", param_hint="--accounts")
    day = _parse_date(as_of, "--as-of") or settings.today()
    chosen_seed = settings.demo.seed if seed is None else seed
    from flows.lib.demo_data import generate_demo_export

    folder = settings.path("inbox") / f"demo-{day.isoformat()}-{count}-seed{chosen_seed}"
    with console.status(f"Generating {count:,} accounts of billing data into {folder} ..."):
        export = generate_demo_export(
            folder,
            accounts=count,
            as_of=day,
            seed=chosen_seed,
            file_format=file_format,  # type: ignore[arg-type]
        )
    per_entity = ", ".join(f"{rows:,} {entity}" for entity, rows in export.rows.items())
    console.print(f"Generated {sum(export.rows.values()):,} rows ({per_entity}).")
    from flows.lib.pii import ensure_demo_key

    demo_key = ensure_demo_key(settings)
    if demo_key is not None:
        console.print(
            f"[yellow]No RECOUP_PII_KEY set:[/] generated a demo key in {demo_key} (owner-only); "
            "the demo's SSNs and dates of birth are encrypted with it. For real data set "
            "RECOUP_PII_KEY from your secret store (docs/data-protection.md).",
            highlight=False,
            soft_wrap=True,
        )
    _run_daily(settings, day, dry_run=False)
    console.print()
    console.print(f"Warehouse: [bold]{settings.warehouse_path}[/]")
    command = _command_name()
    console.print("Query it with any DuckDB client, or with recoup itself, for example:")
    console.print(
        f'  {command} sql "select stage, currency, count(*) as accounts, '
        "sum(collectible_amount) as collectible from marts.fct_account_stage "
        'group by all order by all"',
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"  {command} quarantine", highlight=False, soft_wrap=True)


# --- ingest ------------------------------------------------------------------------------


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A batch folder, or a folder of batch folders.")],
) -> None:
    """Load a billing export batch into the warehouse; bad rows go to the quarantine."""
    settings = _settings()
    from flows.ingest import ingest as ingest_flow
    from flows.lib.export_files import batch_folders

    batch_folders(path)  # fail fast, before Prefect starts, on a missing or empty folder

    with console.status(f"Loading {path} ..."):
        outcomes = ingest_flow(path=path.resolve())
    _print_batches(outcomes)
    _print_quarantine_hint(settings, sum(outcome.rows_quarantined for outcome in outcomes))


# --- run ---------------------------------------------------------------------------------


@app.command()
def run(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Run for this date, YYYY-MM-DD (default: today).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; send nothing.")
    ] = False,
    segment: Annotated[
        str | None, typer.Option(help="Contact only accounts of this segment.")
    ] = None,
    accounts: Annotated[
        Path | None,
        typer.Option(help="Contact only the account ids listed in this file, one per line."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these steps (repeat the option): ingest, gates, build, events, contact, "
            "agencies, handoffs, servicing, report. `--only gates` checks the warehouse as it is."
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(help="Skip these steps (repeat the option), e.g. --skip ingest."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Start again from the step the last run for this date failed in."
        ),
    ] = False,
    allow_volume_spike: Annotated[
        bool,
        typer.Option(
            "--allow-volume-spike",
            help="Let this run through the volume circuit breaker (recorded with the run).",
        ),
    ] = False,
) -> None:
    """Run the daily cycle: load the inbox, check it, build the warehouse, check it again,
    plan the day's contacts and send them (emails, letters, the phone and manager queue)."""
    settings = _settings()
    from flows.lib.runs import select_steps

    select_steps(only, skip)  # a wrong step name fails here, before Prefect starts
    _run_daily(
        settings,
        _parse_date(as_of, "--as-of") or settings.today(),
        dry_run=dry_run,
        only=only,
        skip=skip,
        resume=resume,
        allow_volume_spike=allow_volume_spike,
        segment=segment,
        accounts=_read_account_list(accounts) if accounts is not None else None,
    )


def _read_account_list(path: Path) -> list[str]:
    """One account id per line; blank lines and lines starting with # are skipped, and a
    header line `account_id` is allowed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}", param_hint="--accounts") from None
    ids = [
        line.strip()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#") and line.strip() != "account_id"
    ]
    if not ids:
        raise typer.BadParameter(f"{path} lists no account id", param_hint="--accounts")
    return list(dict.fromkeys(ids))


def _run_daily(
    settings: Settings,
    as_of: dt.date,
    *,
    dry_run: bool,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    resume: bool = False,
    allow_volume_spike: bool = False,
    segment: str | None = None,
    accounts: list[str] | None = None,
) -> None:
    from flows.daily_dunning import daily_dunning

    with console.status(
        f"Running the daily cycle for {as_of} (inbox: {settings.path('inbox')}) ..."
    ):
        summary = daily_dunning(
            as_of=as_of,
            dry_run=dry_run,
            segment=segment,
            accounts=accounts,
            only=only,
            skip=skip,
            resume=resume,
            allow_volume_spike=allow_volume_spike,
        )
    ingested = summary.record is not None and "ingest" in summary.record.selected
    if summary.batches:
        _print_batches(summary.batches)
    elif ingested:
        console.print("No batch waiting in the inbox.")
    _print_table(
        "Gates",
        [
            {"gate": r.gate, "check": r.check, "violations": r.violations,
             "result": "pass" if r.success else "FAIL"}
            for gate in summary.gates
            for r in gate.results
        ],
    )  # fmt: skip
    if summary.marts is not None:
        _print_stages(settings, as_of)
    _print_contacts(summary)
    if summary.diff is not None:
        _print_diff(summary.diff)
    if summary.offers is not None:
        console.print(f"Offers: {summary.offers}", highlight=False, soft_wrap=True)
    if summary.placements is not None:
        console.print(f"Agencies: {summary.placements}", highlight=False, soft_wrap=True)
    out = settings.path("out")
    for label, outcome, folder in (
        ("Write-off recommendations", summary.write_offs, out / "adjustments"),
        ("Legal referral", summary.legal, out / "legal"),
        ("Credit holds", summary.credit_holds, out / "credit_holds"),
    ):
        if outcome is not None:
            where = "" if outcome.dry_run else f"; files in {folder / as_of.isoformat()}"
            console.print(f"{label}: {outcome}{where}", highlight=False, soft_wrap=True)

    if summary.servicing is not None:
        folder = settings.path("out") / "servicing" / as_of.isoformat()
        console.print(
            f"Servicing queues: {summary.servicing}; files in {folder}",
            highlight=False,
            soft_wrap=True,
        )
    if summary.skip_tracing is not None:
        console.print(
            f"Skip tracing: {summary.skip_tracing}"
            + (
                ""
                if summary.skip_tracing.dry_run
                else f"; files in {settings.path('out') / 'skip_tracing' / as_of.isoformat()}"
            ),
            highlight=False,
            soft_wrap=True,
        )
    for path in summary.files:
        if "/reports/" in path:
            console.print(f"Report: {path}", highlight=False, soft_wrap=True)
    if summary.not_built_yet:
        console.print(
            "[yellow]Not built yet, skipped:[/] " + "; ".join(summary.not_built_yet),
            highlight=False,
        )
    _print_quarantine_hint(settings, sum(batch.rows_quarantined for batch in summary.batches))
    record = summary.record
    if record is not None and record.status != "succeeded":
        # the flow returned, yet a step failed (the run report): say so, and exit 1
        raise RunFailed(f"the run {record.status} at {record.failed_step}: {record.error}")


# --- status, quarantine, sql -------------------------------------------------------------


@app.command()
def status() -> None:
    """Show the warehouse: batches loaded, rows per table, quarantine, a run in progress."""
    settings = _settings()
    from flows.lib.runs import recent_runs
    from flows.lib.summaries import (
        contact_status_rows,
        freshness,
        quarantine_counts,
        warehouse_rows,
    )
    from flows.lib.warehouse import scalar

    console.print(f"RECOUP_HOME: {settings.home}")
    from flows.lib.schedule import next_scheduled_run

    console.print(f"Next scheduled run: {next_scheduled_run()}")
    holder = current_holder(settings.path("state"))
    if holder:
        run = (
            f"run {str(holder['run_id'])[:8]} for {holder.get('as_of')}, "
            if holder.get("run_id")
            else ""
        )
        console.print(
            f"[yellow]In progress:[/] recoup {holder.get('command')} ({run}pid "
            f"{holder.get('pid')}, started {holder.get('started_at')}). The warehouse opens "
            "again when it has finished."
        )
        return
    console.print("Run lock: free")
    connection = _read_only(settings)
    try:
        batches = scalar(connection, "select count(*) from raw.load_batches")
        last = scalar(connection, "select max(finished_at) from raw.load_batches")
        console.print(
            f"Warehouse: {settings.warehouse_path}  ({batches} batches loaded, last {last})"
        )
        console.print(f"Freshness: {freshness(connection)}")
        from flows.lib.gates import unfinished_build

        unfinished = unfinished_build(connection)
        if unfinished is not None:  # the marts may mix two dates: see marts.build_status
            console.print(
                f"[bold red]Marts in doubt:[/] {unfinished.warning()}. {unfinished.recovery()}.",
                highlight=False,
            )
        runs = recent_runs(connection)
        if runs:
            _print_table("Last runs (ops.runs)", runs)
        _print_table("Raw tables", warehouse_rows(connection))
        counts = quarantine_counts(connection)
        console.print(
            "Quarantine: "
            + (
                ", ".join(f"{count:,} {state}" for state, count in sorted(counts.items()))
                or "empty"
            )
        )
        contacts = contact_status_rows(connection)
        if contacts:
            _print_table("Contacts (ops.action_ledger)", contacts)
            unclear = sum(row["maybe_sent"] for row in contacts)  # type: ignore[misc]
            if unclear:
                console.print(
                    f"[yellow]{unclear:,} contacts are maybe sent[/] (a timeout or crash while "
                    "sending): recoup never re-sends them by itself; a SendGrid event confirms "
                    "them (`recoup events import`)."
                )
    finally:
        connection.close()


@app.command()
def quarantine(
    limit: Annotated[int, typer.Option(help="How many rows to show.")] = 20,
) -> None:
    """List the quarantined rows still waiting for a fix, with file, line and reason."""
    settings = _settings()
    from flows.lib.summaries import quarantine_rows

    connection = _read_only(settings)
    try:
        rows = quarantine_rows(connection, limit)
    finally:
        connection.close()
    if not rows:
        console.print("The quarantine is empty.")
        return
    _print_table("Quarantined rows (rejected: fix and resend; held: waits for its parent)", rows)


@app.command()
def sql(query: Annotated[str, typer.Argument(help="A read-only SQL query.")]) -> None:
    """Run a read-only SQL query on the warehouse and print the result."""
    settings = _settings()
    import duckdb

    connection = _read_only(settings)
    try:
        try:
            cursor = connection.execute(query)
        except duckdb.Error as error:
            raise BatchError(f"the query failed: {error}") from None
        names = [column[0] for column in cursor.description or []]
        rows = cursor.fetchmany(200)
    finally:
        connection.close()
    _print_table(None, [dict(zip(names, row, strict=True)) for row in rows])


# --- events ------------------------------------------------------------------------------

events_app = typer.Typer(
    help="SendGrid Event Webhook: serve the endpoint, import what it received.",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")


@events_app.command("serve")
def events_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8025,
) -> None:
    """Receive signed SendGrid events at POST /sendgrid/events, and opt-outs at /opt-out (the
    page contact.opt_out_link should point at), and spool both for the next run. Put it behind
    your TLS proxy; it never opens the warehouse."""
    settings = _settings()
    import uvicorn

    from flows.webhook import create_app

    if not settings.email.event_public_key:
        error_console.print(
            "[yellow]recoup:[/] email.event_public_key is not set: every post will be refused "
            "(503) until it is. Copy the key from SendGrid's Mail Settings, Signed Event Webhook."
        )
    console.print(f"Listening on http://{host}:{port}/sendgrid/events (Ctrl-C stops).")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@events_app.command("import")
def events_import(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A JSON array of events downloaded from SendGrid (default: the spool)."
        ),
    ] = None,
) -> None:
    """Import SendGrid events: bounces, drops, spam reports and unsubscribes become
    suppressions, and a delivery confirms a contact whose send was unclear."""
    settings = _settings()
    from flows.lib.email_events import import_events_file, import_spool, incoming_folder
    from flows.lib.opt_outs import import_opt_outs, opt_out_folder
    from flows.lib.run_lock import run_lock
    from flows.lib.warehouse import connect_warehouse

    with run_lock(settings.path("state"), "events import", settings.ingest.lock_wait_seconds):
        connection = connect_warehouse(settings)
        try:
            opted_out = None
            if path is None:
                outcome = import_spool(
                    connection,
                    incoming_folder(settings),
                    public_key=settings.email.event_public_key,
                )
                opted_out = import_opt_outs(connection, opt_out_folder(settings))
            else:
                outcome = import_events_file(connection, path)
        finally:
            connection.close()
    console.print(
        f"{outcome.events_read:,} events read: {outcome.events_new:,} new, "
        f"{outcome.duplicates:,} seen before; {outcome.suppressions_added:,} addresses will "
        f"not be emailed again; {outcome.actions_confirmed:,} unclear sends confirmed."
        + (f" {outcome.files_rejected} spool files rejected." if outcome.files_rejected else "")
    )
    if opted_out is not None and (opted_out.files_imported or opted_out.files_rejected):
        console.print(
            f"Opt-outs from the opt-out page: {opted_out.addresses_suppressed:,} addresses "
            f"suppressed; {opted_out.files_rejected:,} requests for unknown emails set aside."
        )


# --- monthly ------------------------------------------------------------------------------


@app.command()
def report(
    month: Annotated[
        str | None,
        typer.Option(help="Month to report, YYYY-MM (default: the previous month)."),
    ] = None,
) -> None:
    """Write the monthly report (HTML and PDF with charts) under out/reports/monthly/."""
    _settings()
    if month is not None:
        try:
            dt.datetime.strptime(month, "%Y-%m")
        except ValueError:
            raise typer.BadParameter(
                f"{month!r} is not a month; use YYYY-MM", param_hint="--month"
            ) from None
    from flows.monthly_report import monthly_report

    with console.status(f"Writing the monthly report for {month or 'last month'} ..."):
        paths = monthly_report(month=month)
    for path in paths:
        console.print(f"Report: {path}", highlight=False, soft_wrap=True)


@app.command()
def bureau(
    period: Annotated[
        str | None, typer.Option(help="Reporting period, YYYY-MM (default: last month).")
    ] = None,
) -> None:
    """Write the monthly Metro 2 credit-bureau file, validated before it is published."""
    _settings()
    from flows.lib.monthly_report import parse_month

    if period is not None:
        try:
            parse_month(period)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--period") from None
    from flows.monthly_bureau import monthly_bureau

    with console.status(f"Writing the Metro 2 file for {period or 'last month'} ..."):
        outcome = monthly_bureau(period=period)
    console.print(str(outcome), highlight=False, soft_wrap=True)


# --- data protection ----------------------------------------------------------------------


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Judge the ages on this date, YYYY-MM-DD (default: today)."),
    ] = None,
) -> None:
    """Remove the personal data of customers done with for longer than retention.years
    (default 7), and the files older than that; the audit trail stays (ops.action_log, the
    ledger's ids, dates, statuses and amounts). Recorded in ops.purges."""
    settings = _settings()
    from flows.lib.retention import purge as purge_personal_data

    day = _parse_date(as_of, "--as-of") or settings.today()
    outcome = purge_personal_data(settings, as_of=day, dry_run=dry_run)
    console.print(str(outcome), highlight=False, soft_wrap=True)
    if dry_run and outcome.files:
        for path in outcome.files[:20]:
            console.print(f"  would delete {path}", highlight=False, soft_wrap=True)
        if len(outcome.files) > 20:
            console.print(f"  ... and {len(outcome.files) - 20:,} more files", highlight=False)


pii_app = typer.Typer(
    help="SSNs and dates of birth at rest: encrypt an older warehouse, rotate the key.",
    no_args_is_help=True,
)
app.add_typer(pii_app, name="pii")


@pii_app.command("encrypt")
def pii_encrypt() -> None:
    """Encrypt every SSN and date of birth in raw.customers with RECOUP_PII_KEY: those an
    older recoup kept in the clear, and those under a key in RECOUP_PII_PREVIOUS_KEYS (a
    rotation). Then the warehouse file is rewritten, so it keeps no older copy."""
    settings = _settings()
    from flows.lib.pii import PiiKeyMissing, keyring_for, protect_warehouse
    from flows.lib.run_lock import run_lock
    from flows.lib.warehouse import connect_warehouse

    keyring = keyring_for(settings)
    if keyring is None:
        raise PiiKeyMissing(
            "set RECOUP_PII_KEY to the key to encrypt with (`openssl rand -base64 32` makes "
            "one; keep it in your secret store, not beside the warehouse). Nothing was changed."
        )
    if not settings.warehouse_path.exists():
        raise FileNotFoundError(f"{settings.warehouse_path}: no warehouse yet; nothing to do.")
    with run_lock(settings.path("state"), "pii encrypt", settings.ingest.lock_wait_seconds):
        outcome = protect_warehouse(settings.warehouse_path, keyring, settings.duckdb_config())
        connect_warehouse(settings).close()  # today's views over the new columns
    console.print(str(outcome), highlight=False, soft_wrap=True)


agencies_app = typer.Typer(
    help="Collection agencies: place and recall accounts, import remittance files.",
    no_args_is_help=True,
)
app.add_typer(agencies_app, name="agencies")


@agencies_app.command("place")
def agencies_place(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="For this date, YYYY-MM-DD (default: today).")
    ] = None,
) -> None:
    """Check the warehouse as built (both gates), then recall from and place with the agencies
    for the date, and write their files. The daily run does the same as its agencies step."""
    settings = _settings()
    _run_daily(
        settings,
        _parse_date(as_of, "--as-of") or settings.today(),
        dry_run=False,
        only=["gates", "agencies", "report"],
    )


@agencies_app.command("import")
def agencies_import(
    path: Annotated[Path, typer.Argument(help="A remittance file (CSV, layout v1).")],
    agency: Annotated[str, typer.Option("--agency", help="The agency id that sent it.")],
) -> None:
    """Load what an agency reports it collected; bad lines go to ops.remittance_quarantine."""
    settings = _settings()
    from flows.lib.remittances import import_remittance_file

    outcome = _with_warehouse(
        settings,
        "agencies import",
        lambda connection: import_remittance_file(connection, path, agency, today=settings.today()),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@agencies_app.command("status")
def agencies_status() -> None:
    """Placements per agency and status, and remittance lines waiting in quarantine."""
    settings = _settings()
    from flows.lib.summaries import agency_rows

    connection = _read_only(settings)
    try:
        placements, quarantined = agency_rows(connection)
    finally:
        connection.close()
    if placements:
        _print_table("Placements (ops.placements)", placements)
    else:
        console.print("No account has been placed with an agency.")
    if quarantined:
        console.print(
            f"{quarantined:,} remittance lines in quarantine: see ops.remittance_quarantine."
        )


skip_app = typer.Typer(
    help="Skip tracing: import skip-trace results and returned-mail / invalid-phone files.",
    no_args_is_help=True,
)
app.add_typer(skip_app, name="skip-trace")


@skip_app.command("import")
def skip_trace_import(
    path: Annotated[Path, typer.Argument(help="A skip-trace result file (CSV, layout v1).")],
) -> None:
    """Load a skip-trace vendor's results: accepted ones update the contact details recoup
    uses (billing's are never overwritten); bad lines go to ops.skip_quarantine."""
    settings = _settings()
    from flows.lib.skip_results import import_skip_results

    outcome = _with_warehouse(
        settings,
        "skip-trace import",
        lambda connection: import_skip_results(
            connection,
            path,
            settings=settings.skip_tracing,
            today=settings.today(),
            use_emails=settings.uses_found_emails,
        ),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@skip_app.command("returned")
def skip_trace_returned(
    path: Annotated[
        Path, typer.Argument(help="Returned letters or invalid phone numbers (CSV, layout v1).")
    ],
) -> None:
    """Record letters that came back and phone numbers found invalid: the ladder stops using
    them and the customers become skip-trace candidates."""
    settings = _settings()
    from flows.lib.skip_results import import_returned_contacts

    outcome = _with_warehouse(
        settings,
        "skip-trace returned",
        lambda connection: import_returned_contacts(connection, path, today=settings.today()),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@skip_app.command("status")
def skip_trace_status() -> None:
    """Skip-trace requests per status, and lines waiting in quarantine."""
    settings = _settings()
    from flows.lib.summaries import skip_trace_rows

    connection = _read_only(settings)
    try:
        requests, quarantined = skip_trace_rows(connection)
    finally:
        connection.close()
    if requests:
        _print_table("Skip-trace requests (ops.skip_requests)", requests)
    else:
        console.print("No skip-trace request has been made.")
    if quarantined:
        lines = "line" if quarantined == 1 else "lines"
        console.print(f"{quarantined:,} {lines} in quarantine: see ops.skip_quarantine.")


agreements_app = typer.Typer(
    help="Agreements: record installment plans and settlements agreed with customers, cancel "
    "and list them.",
    no_args_is_help=True,
)
app.add_typer(agreements_app, name="agreements")

_BY_HELP = "Who records it (default: your user name)."


@agreements_app.command("import")
def agreements_import(
    path: Annotated[Path, typer.Argument(help="An agreement file (CSV, layout v1).")],
    by: Annotated[str | None, typer.Option("--by", help=_BY_HELP)] = None,
) -> None:
    """Record the agreements of a file (one line per installment); an agreement with a bad line,
    or outside the offer policy without an approver, goes whole to ops.agreement_quarantine."""
    settings = _settings()
    from flows.lib.agreements import import_agreements

    outcome = _with_warehouse(
        settings,
        "agreements import",
        lambda connection: import_agreements(
            connection, settings, path, recorded_by=by or _user_name()
        ),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@agreements_app.command("add")
def agreements_add(
    account: Annotated[str, typer.Option("--account", help="The billing account id.")],
    kind: Annotated[str, typer.Option("--kind", help="installment_plan or settlement.")],
    agreed_date: Annotated[
        str, typer.Option("--agreed-date", help="The day it was agreed, YYYY-MM-DD.")
    ],
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            help="The installments, DATE=AMOUNT separated by commas, e.g. "
            '"2026-05-01=120.00,2026-06-01=120.00".',
        ),
    ],
    approved_by: Annotated[
        str | None,
        typer.Option("--approved-by", help="Who approved it: needed when it breaks the policy."),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help=_BY_HELP)] = None,
) -> None:
    """Record one installment plan or settlement agreed by phone. One outside the offer policy
    is refused unless --approved-by names who approved it."""
    settings = _settings()
    from flows.lib.agreements import KINDS, Agreement, record_agreement

    if kind not in KINDS:
        raise typer.BadParameter(f"{kind!r}: use {' or '.join(KINDS)}", param_hint="--kind")
    agreement = Agreement(
        account_id=account.strip(),
        kind=kind,
        agreed_date=_parse_date(agreed_date, "--agreed-date"),  # type: ignore[arg-type]
        installments=_parse_schedule(schedule),
        approved_by=(approved_by or "").strip() or None,
    )
    outcome = _with_warehouse(
        settings,
        "agreements add",
        lambda connection: record_agreement(
            connection, settings, agreement, recorded_by=by or _user_name()
        ),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@agreements_app.command("cancel")
def agreements_cancel(
    agreement_id: Annotated[str, typer.Argument(help="The agreement id (see `list`).")],
    date: Annotated[str, typer.Option("--date", help="Cancelled from this day, YYYY-MM-DD.")],
    by: Annotated[str | None, typer.Option("--by", help="Who cancels it (default: you).")] = None,
) -> None:
    """Cancel a recorded agreement: from the date on it holds the account no more."""
    settings = _settings()
    from flows.lib.agreements import cancel_agreement

    day = _parse_date(date, "--date")
    outcome = _with_warehouse(
        settings,
        "agreements cancel",
        lambda connection: cancel_agreement(
            connection,
            agreement_id,
            day,  # type: ignore[arg-type]
            by or _user_name(),
        ),
    )
    console.print(str(outcome), highlight=False, soft_wrap=True)


@agreements_app.command("list")
def agreements_list(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's.")] = None,
) -> None:
    """The recorded agreements, newest first, with their status as of the last run."""
    settings = _settings()
    from flows.lib.agreements import list_agreements

    connection = _read_only(settings)
    try:
        rows = list_agreements(connection, account)
    finally:
        connection.close()
    if rows:
        _print_table("Agreements (ops.agreements)", rows)
    else:
        console.print(
            "No agreement has been recorded" + (f" for account {account}." if account else ".")
        )


def _parse_schedule(text: str) -> tuple:
    """`DATE=AMOUNT,DATE=AMOUNT,...` as installments, in the order given."""
    import re
    from decimal import Decimal

    from flows.lib.agreements import Installment
    from flows.lib.row_checks import AMOUNT_PATTERN

    installments = []
    for number, item in enumerate((part.strip() for part in text.split(",")), start=1):
        day, _, amount = item.partition("=")
        if not re.fullmatch(AMOUNT_PATTERN, amount.strip()):
            raise typer.BadParameter(
                f"installment {number} ({item!r}) is not DATE=AMOUNT with an amount like 120.00",
                param_hint="--schedule",
            )
        try:
            due = dt.date.fromisoformat(day.strip())
        except ValueError:
            raise typer.BadParameter(
                f"installment {number} ({item!r}): {day.strip()!r} is not a date; use YYYY-MM-DD",
                param_hint="--schedule",
            ) from None
        installments.append(Installment(due, Decimal(amount.strip())))
    return tuple(installments)


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return f"uid-{os.getuid()}"


def _with_warehouse(settings: Settings, holder: str, work):
    """Run `work(connection)` on the warehouse, holding the run lock."""
    from flows.lib.run_lock import run_lock
    from flows.lib.warehouse import connect_warehouse

    with run_lock(settings.path("state"), holder, settings.ingest.lock_wait_seconds):
        connection = connect_warehouse(settings)
        try:
            return work(connection)
        finally:
            connection.close()


# --- printing ----------------------------------------------------------------------------


def _command_name() -> str:
    """How the user can call recoup again: the path when it is not on PATH (make demo)."""
    import shutil

    invoked = Path(sys.argv[0])
    on_path = shutil.which("recoup")
    if on_path and Path(on_path).resolve() == invoked.resolve():
        return "recoup"
    try:
        return str(invoked.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(invoked)


def _read_only(settings: Settings) -> _ReadConnection:
    """A read-only connection that holds the run lock until it is closed: a reader never has
    the file open while a run needs it (it waits for a running run, up to
    ingest.lock_wait_seconds, then says which run is in the way)."""
    return _ReadConnection(settings)


class _ReadConnection:
    def __init__(self, settings: Settings) -> None:
        from flows.lib.run_lock import run_lock
        from flows.lib.warehouse import connect_warehouse

        self._lock = run_lock(settings.path("state"), "read", settings.ingest.lock_wait_seconds)
        self._lock.__enter__()
        try:
            self._connection = connect_warehouse(settings, read_only=True)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def close(self) -> None:
        try:
            self._connection.close()
        finally:
            self._lock.__exit__(None, None, None)


def _print_table(title: str | None, rows: list[dict[str, object]]) -> None:
    if not rows:
        console.print("(no rows)")
        return
    table = Table(title=title, title_justify="left")
    for name in rows[0]:
        numeric = all(isinstance(row[name], int | float) for row in rows)
        table.add_column(str(name), justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row.values()))
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _print_stages(settings: Settings, as_of: dt.date) -> None:
    from flows.lib.summaries import stage_rows

    connection = _read_only(settings)
    try:
        _print_table(f"Escalation stages on {as_of}", stage_rows(connection))
    finally:
        connection.close()


def _print_contacts(summary: DailySummary) -> None:
    from flows.lib.summaries import contact_files, contact_rows

    if summary.plan is None:
        return
    title = (
        f"Contacts for {summary.as_of}"
        if summary.contacts
        else f"Contacts the plan for {summary.as_of} would make (nothing sent)"
    )
    rows = contact_rows(summary)
    if rows:
        _print_table(title, rows)
    else:
        console.print(f"No contact was due on {summary.as_of}.")
    for line in contact_files(summary):
        console.print(line, highlight=False, soft_wrap=True)


def _print_diff(diff: dict[str, object]) -> None:
    previous = diff.get("previous")
    against = (
        f"against the run for {previous['as_of']}"  # type: ignore[index]
        if previous
        else "(no earlier run to compare with)"
    )
    _print_table(f"Dry run: contacts {against}", list(diff["contacts"]))  # type: ignore[call-overload]
    if diff.get("accounts"):
        _print_table("Accounts since the previous run", list(diff["accounts"]))  # type: ignore[call-overload]
    console.print("[bold]Dry run: nothing was sent.[/]")


def _print_batches(outcomes: Sequence[BatchOutcome]) -> None:
    from flows.lib.summaries import batch_rows, batch_title

    for outcome in outcomes:
        _print_table(batch_title(outcome), batch_rows(outcome))
    _print_ingest_totals(outcomes)


def _print_ingest_totals(outcomes: Sequence[BatchOutcome]) -> None:
    loaded = sum(outcome.rows_loaded for outcome in outcomes)
    quarantined = sum(outcome.rows_quarantined for outcome in outcomes)
    released = sum(outcome.rows_released for outcome in outcomes)
    changed = [outcome for outcome in outcomes if outcome.changed]
    if not changed:
        console.print("Every file had been loaded before; nothing changed.")
        return
    console.print(
        f"Loaded {loaded:,} rows, quarantined {quarantined:,}"
        + (f", released {released:,} held rows whose parent arrived" if released else "")
        + "."
    )


def _print_quarantine_hint(settings: Settings, quarantined: int) -> None:
    if quarantined:
        console.print(
            f"{quarantined:,} rows quarantined: see `recoup quarantine` "
            "(or the table raw.quarantine) for file, line and reason."
        )
