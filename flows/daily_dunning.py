"""Flow `daily-dunning`: ingest → gate → dbt → gate → plan → act → report.

The flow loads the batches waiting in the inbox, checks them (gate 1), builds the warehouse
for the as-of date (balances, aging, holds, stages) and checks the marts (gate 2). Then:

1. It imports the SendGrid events the webhook spooled (bounces and opt-outs become flags).
2. It plans the day's contacts by the guardrails and passes the plan through the volume
   circuit breaker.
3. It writes the plan into the action ledger and re-checks every planned contact against the
   newest facts.
4. It hands the contacts to each channel: emails (SendGrid, or .eml files in the outbox),
   letters (PDF and a print manifest) and the phone and manager work queue.

A failed gate stops the run before anything outbound. A dry run plans, writes the plan and its
diff against the previous run, and sends nothing. Every run, failed or not, is recorded in
`ops.runs` with its step timings and leaves a run report (`out/reports/<date>/`), a Prefect
artifact and a JSON log with the run id on every line (`state/logs/<date>/`). `only`,
`skip` and `resume` choose steps (see flows/lib/runs.py). Steps not built yet are listed in
`NOT_BUILT_YET` and reported.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.lib.agency_placement import PlacementOutcome
from flows.lib.config import Settings, load_settings
from flows.lib.credit_holds import CreditHoldOutcome
from flows.lib.dbt_build import DbtFailed, DbtOutcome
from flows.lib.dry_run import diff_markdown, dry_run_diff, plan_by_stage
from flows.lib.email_events import ImportOutcome
from flows.lib.export_files import inbox_batch_folders
from flows.lib.gates import (
    BuildAttempt,
    GateOutcome,
    fail_build,
    finish_build,
    latest_build,
    start_build,
    unfinished_build,
)
from flows.lib.ledger import ChannelOutcome
from flows.lib.legal_referral import LegalOutcome
from flows.lib.loader import BatchOutcome
from flows.lib.offers import OfferOutcome
from flows.lib.output_files import csv_bytes, owner_only_folder, write_atomically
from flows.lib.pii import keyring_for
from flows.lib.planner import ContactScope, Plan
from flows.lib.run_lock import run_lock
from flows.lib.run_logs import run_log
from flows.lib.runs import (
    STEPS,
    RunRecord,
    StepGroup,
    StepSelectionError,
    mark_interrupted,
    record_run,
    run_to_resume,
    select_steps,
)
from flows.lib.servicing import ServicingOutcome
from flows.lib.settlements import WriteOffOutcome
from flows.lib.skip_tracing import SkipTraceOutcome
from flows.lib.warehouse import WarehouseBusy, connect_warehouse
from flows.tasks.agencies import place_with_agencies
from flows.tasks.build import build_marts
from flows.tasks.contact import (
    offer_terms,
    plan_contacts,
    print_letters,
    queue_work,
    recheck_planned,
    send_emails,
)
from flows.tasks.events import import_email_events
from flows.tasks.gates import check_marts, check_raw_batch
from flows.tasks.handoffs import credit_holds, legal_referrals, write_offs
from flows.tasks.load import load_batches
from flows.tasks.report import write_the_run_report
from flows.tasks.servicing import servicing_queues, skip_trace

NOT_BUILT_YET: tuple[str, ...] = ()  # the credit-bureau file is monthly: flows/monthly_bureau.py
logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    as_of: dt.date
    dry_run: bool
    batches: list[BatchOutcome] = field(default_factory=list)
    marts: DbtOutcome | None = None
    gates: list[GateOutcome] = field(default_factory=list)
    events: ImportOutcome | None = None
    offers: OfferOutcome | None = None
    plan: Plan | None = None
    plan_rows: list[dict[str, object]] = field(default_factory=list)
    rechecked: dict[str, int] = field(default_factory=dict)
    contacts: list[ChannelOutcome] = field(default_factory=list)
    placements: PlacementOutcome | None = None
    write_offs: WriteOffOutcome | None = None
    legal: LegalOutcome | None = None
    credit_holds: CreditHoldOutcome | None = None
    servicing: ServicingOutcome | None = None
    skip_tracing: SkipTraceOutcome | None = None
    diff: dict[str, object] | None = None
    record: RunRecord | None = None
    files: list[str] = field(default_factory=list)
    not_built_yet: tuple[str, ...] = NOT_BUILT_YET


@flow(name="daily-dunning")
def daily_dunning(
    as_of: dt.date | None = None,
    dry_run: bool = False,
    segment: str | None = None,
    accounts: list[str] | None = None,
    only: list[StepGroup] | None = None,
    skip: list[StepGroup] | None = None,
    resume: bool = False,
    allow_volume_spike: bool = False,
) -> RunSummary:
    """Age every account, set its stage, and contact the customers who are due a reminder."""
    settings = load_settings()
    day = as_of or settings.today()
    run = RunSummary(run_id=str(flow_run.get_id() or uuid.uuid4()), as_of=day, dry_run=dry_run)
    holder = {"run_id": run.run_id, "as_of": day.isoformat(), "dry_run": dry_run}
    with (
        run_lock(settings.path("state"), "run", settings.ingest.lock_wait_seconds, holder),
        run_log(settings.path("state") / "logs" / day.isoformat(), run.run_id),
    ):
        choices: dict[str, object] = {
            "only": only, "skip": skip, "segment": segment, "accounts": accounts,
        }  # fmt: skip
        resume_from, gates_passed = None, False
        connection = connect_warehouse(settings)
        try:
            interrupted = mark_interrupted(connection)  # we hold the lock: those were killed
            if interrupted:
                get_run_logger().warning("%s earlier runs were interrupted", interrupted)
            if resume:
                resume_from, gates_passed, choices = _resume_point(connection, day, choices)
        finally:
            connection.close()
        run.record = RunRecord(
            run_id=run.run_id,
            flow="daily-dunning",
            as_of=day,
            dry_run=dry_run,
            scope={"segment": choices["segment"], "accounts": _count(choices["accounts"])},
            selected=select_steps(
                choices["only"],  # type: ignore[arg-type]
                choices["skip"],  # type: ignore[arg-type]
                resume_from=resume_from,
                gates_passed=gates_passed,
            ),
            choices=choices,
        )
        scope = ContactScope(
            segment=choices["segment"],  # type: ignore[arg-type]
            account_ids=tuple(choices["accounts"]) if choices["accounts"] else None,  # type: ignore[arg-type]
        )
        # a dry run works on a scratch copy of the warehouse: its ingest, dbt build and plan
        # must not change the history later runs decide from
        work = _scratch_copy(settings, run.run_id) if dry_run else settings
        try:
            _run_steps(run, work, scope, allow_volume_spike)
        except BaseException as error:
            run.record.fail_between_steps(error)
            raise
        finally:
            _finish(run, settings, work)
    return run


def _resume_point(
    connection, day: dt.date, choices: dict[str, object]
) -> tuple[str, bool, dict[str, object]]:
    """Where a resume starts, whether the resumed run's gates count, and its choices."""
    if any(value is not None for value in choices.values()):
        raise StepSelectionError(
            "a resume takes the failed run's segment, accounts and steps; run --resume without "
            "--segment, --accounts, --only or --skip"
        )
    resumable = run_to_resume(connection, day)
    resume_from, gates_passed = resumable.failed_step, resumable.gates_passed
    ahead = set(STEPS[STEPS.index(resume_from) :])
    if not gates_passed and ahead & {"plan", "agencies"} and "gate_raw" not in ahead:
        resume_from = "gate_raw"  # a failed build, say: both gates pass before anything outbound
    # the marts hold one build: when another date was built since, or a build did not finish
    # since (the marts may mix two dates), build this one again (and check it) before
    # contacting, or the contacts would carry another date's amounts
    if STEPS.index(resume_from) > STEPS.index("build") and (
        latest_build(connection) != day or unfinished_build(connection) is not None
    ):
        resume_from, gates_passed = "gate_raw", False
    get_run_logger().info("resuming run %s from step %s", resumable.run_id[:8], resume_from)
    return (
        resume_from,
        gates_passed,
        {
            "only": resumable.only,
            "skip": resumable.skip,
            "segment": resumable.segment,
            "accounts": resumable.accounts,
        },
    )


def _count(accounts: object) -> int | None:
    return len(accounts) if isinstance(accounts, list) else None


def _scratch_copy(settings: Settings, run_id: str) -> Settings:
    """Settings that point at a copy of the warehouse, for a dry run."""
    folder = settings.path("state") / "dry_runs" / run_id
    owner_only_folder(folder)
    copy = folder / settings.warehouse_path.name
    for suffix in ("", ".wal"):
        source = settings.warehouse_path.with_name(settings.warehouse_path.name + suffix)
        if source.exists():
            shutil.copy2(source, folder / source.name)
    paths = settings.paths.model_copy(update={"warehouse": str(copy)})
    return settings.model_copy(update={"paths": paths})


def _run_steps(
    run: RunSummary, settings: Settings, scope: ContactScope, allow_volume_spike: bool
) -> None:
    record = run.record
    assert record is not None
    acting = not run.dry_run
    connection = connect_warehouse(settings)
    try:
        record_run(connection, record, summary_of(run))  # status: running
        record.on_step_done = lambda: record_run(connection, record, summary_of(run))
        if record.runs("ingest"):
            if record.runs("gate_raw"):
                preload_great_expectations()  # seconds of imports, hidden behind ingest
            with record.step("ingest"):
                folders = inbox_batch_folders(settings.path("inbox"))
                if folders:
                    run.batches = load_batches(connection, folders, keyring_for(settings))
                else:
                    get_run_logger().info("inbox %s holds no batch", settings.path("inbox"))
        if record.runs("gate_raw"):
            with record.step("gate_raw"):
                run.gates.append(check_raw_batch(connection, settings, run.as_of, run.run_id))
        if "build" in record.selected:
            start_build(connection, run.run_id, run.as_of)  # in doubt until it succeeds
    finally:
        record.on_step_done = None
        connection.close()  # dbt opens the file itself: one writer at a time
    if record.runs("build"):
        with record.step("build"):
            run.marts = _build_marked(run, settings)
    connection = connect_warehouse(settings)
    try:
        record.on_step_done = lambda: record_run(connection, record, summary_of(run))
        record.on_step_done()  # the build's outcome
        if run.marts is not None:
            finish_build(connection, run.run_id, run.as_of)
        if record.runs("gate_warehouse"):
            with record.step("gate_warehouse"):
                run.gates.append(check_marts(connection, settings, run.as_of, run.run_id))
        if not acting:
            record.skip("events")  # a dry run writes no suppressions
        elif record.runs("events"):
            with record.step("events"):
                run.events = import_email_events(connection, settings)
        if record.runs("offers"):
            with record.step("offers"):
                run.offers = offer_terms(
                    connection, settings, run.as_of, run.run_id, scope, dry_run=not acting
                )
        if record.runs("plan"):
            with record.step("plan"):
                run.plan, breaker = plan_contacts(
                    connection,
                    settings,
                    run.as_of,
                    run.run_id,
                    scope,
                    allow_volume_spike=allow_volume_spike,
                    commit=acting,
                )
                run.gates.append(breaker)
                run.plan_rows = plan_by_stage(connection)
            if run.dry_run:
                _write_dry_run(run, settings, connection)
        if not acting:  # a dry run sends nothing, places nothing and requests nothing
            for step in ("recheck", "email", "letters", "queue", "agencies", "servicing"):
                record.skip(step)
            _hand_off(run, settings, connection, scope, dry_run=True)
            if record.runs("skip_trace"):
                with record.step("skip_trace"):
                    run.skip_tracing = skip_trace(
                        connection, settings, run.as_of, run.run_id, dry_run=True,
                        scoped=scope != ContactScope(),
                    )  # fmt: skip
            return
        if record.runs("recheck"):
            with record.step("recheck"):
                run.rechecked = recheck_planned(connection, settings, run.as_of, run.run_id, scope)
        for step, task in (
            ("email", send_emails),
            ("letters", print_letters),
            ("queue", queue_work),
        ):
            if record.runs(step):
                with record.step(step):
                    outcome = task(connection, settings, run.as_of, run.run_id, scope)
                    run.contacts.append(outcome)
                    run.files += outcome.files[:1]
        if record.runs("agencies"):
            with record.step("agencies"):
                run.placements = place_with_agencies(
                    connection, settings, run.as_of, run.run_id, scope
                )
                run.files += [str(path) for path in run.placements.files]
        _hand_off(run, settings, connection, scope, dry_run=False)
        if record.runs("servicing"):
            with record.step("servicing"):
                run.servicing = servicing_queues(connection, settings, run.as_of)
                run.files += run.servicing.files
        if record.runs("skip_trace"):
            with record.step("skip_trace"):
                run.skip_tracing = skip_trace(
                    connection, settings, run.as_of, run.run_id, scoped=scope != ContactScope()
                )
                run.files += run.skip_tracing.files
    finally:
        record.on_step_done = None
        connection.close()


def _hand_off(
    run: RunSummary, settings: Settings, connection, scope: ContactScope, *, dry_run: bool
) -> None:
    """The end of the ladder's files for billing and the attorneys: write-off
    recommendations, legal referrals, credit holds (a dry run counts them)."""
    record = run.record
    assert record is not None
    if record.runs("write_offs"):
        with record.step("write_offs"):
            run.write_offs = write_offs(
                connection, settings, run.as_of, run.run_id, scope, dry_run=dry_run
            )
            run.files += list(run.write_offs.files)
    if record.runs("legal"):
        with record.step("legal"):
            run.legal = legal_referrals(
                connection, settings, run.as_of, run.run_id, scope, dry_run=dry_run
            )
            run.files += [str(path) for path in run.legal.files]
    if record.runs("credit_holds"):
        with record.step("credit_holds"):
            run.credit_holds = credit_holds(
                connection, settings, run.as_of, run.run_id, scope, dry_run=dry_run
            )
            run.files += [str(path) for path in run.credit_holds.files]


def _build_marked(run: RunSummary, settings: Settings) -> DbtOutcome:
    """dbt for the run's date. A failed build is marked with the run id in
    ops.build_attempts (analysts see it in marts.build_status), and its error says first what
    the marts hold now."""
    try:
        return build_marts(
            settings.warehouse_path,
            settings.path("state"),
            run.as_of,
            settings.dbt_vars(),
            data_tests=settings.gates.dbt_data_tests,
            duckdb_config=settings.duckdb_config(),
        )
    except Exception as error:
        attempt = _mark_failed_build(settings, run.run_id, error)
        if attempt is None or not isinstance(error, DbtFailed):
            raise
        raise DbtFailed(
            f"{attempt.warning()} (marts.build_status). {attempt.recovery()}.\n{error}",
            failed_nodes=error.failed_nodes,
            rebuilt_models=error.rebuilt_models,
            not_rebuilt_models=error.not_rebuilt_models,
        ) from error


def _mark_failed_build(
    settings: Settings, run_id: str, error: BaseException
) -> BuildAttempt | None:
    """Mark the run's build failed; when the warehouse cannot be opened, it stays marked as
    building, which every later step treats the same way."""
    try:
        connection = _open_retrying(settings)
    except Exception:
        logger.exception("could not mark the failed build of run %s", run_id)
        return None
    try:
        return fail_build(connection, run_id, error)
    finally:
        connection.close()


def _servicing_summary(outcome: ServicingOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "refunds": outcome.refunds,
        "refund_amounts": {c: str(a) for c, a in sorted(outcome.refund_amounts.items())},
        "discrepancies": dict(sorted(outcome.discrepancies.items())),
    }


def _offer_summary(outcome: OfferOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "accounts_offered": outcome.accounts_offered,
        "plan_offers": outcome.plan_offers,
        "settlement_offers": outcome.settlement_offers,
        "requiring_approval": outcome.requiring_approval,
        "reused": outcome.reused,
        "dry_run": outcome.dry_run,
    }


def _write_off_summary(outcome: WriteOffOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "settlements_kept": outcome.kept,
        "recommended": outcome.recommended,
        "amounts": {c: str(a) for c, a in sorted(outcome.amounts.items())},
        "nothing_left": outcome.nothing_left,
        "dry_run": outcome.dry_run,
    }


def _legal_summary(outcome: LegalOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "referred": outcome.referred,
        "amounts": {c: str(a) for c, a in sorted(outcome.referred_amounts.items())},
        "excluded": dict(sorted(outcome.excluded.items())),
        "withdrawn": dict(sorted(outcome.withdrawn.items())),
        "open_referrals": outcome.open_referrals,
        "dry_run": outcome.dry_run,
    }


def _credit_hold_summary(outcome: CreditHoldOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "new_holds": outcome.new_holds,
        "held": dict(sorted(outcome.held.items())),
        "released": dict(sorted(outcome.released.items())),
        "open_holds": outcome.open_holds,
        "dry_run": outcome.dry_run,
    }


def _skip_trace_summary(outcome: SkipTraceOutcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "candidates": outcome.total_candidates,
        "reasons": dict(sorted(outcome.candidates.items())),
        "waiting": outcome.waiting,
        "new_requests": outcome.new_requests,
        "requested": outcome.requested,
        "expired": outcome.expired,
        "open_requests": outcome.open_requests,
        "dry_run": outcome.dry_run,
    }


def _write_dry_run(run: RunSummary, settings: Settings, connection) -> None:
    """The dry run's plan (CSV, no personal data) and its diff against the previous run."""
    run.diff = dry_run_diff(connection, run.as_of, run.plan_rows)
    folder = settings.path("out") / "reports" / run.as_of.isoformat()
    rows = connection.execute(
        "select account_id, channel, stage, template, status, reason, collectible_amount, "
        "currency from _contact_plan order by account_id"
    ).fetchall()
    header = (
        "account_id", "channel", "stage", "template", "status", "reason", "collectible_amount",
        "currency",
    )  # fmt: skip
    plan_file = write_atomically(
        folder / f"dry_run_{run.run_id[:8]}_plan.csv", csv_bytes(header, rows)
    )
    run.files.append(str(plan_file))
    create_markdown_artifact(
        key="dry-run-diff",
        markdown=diff_markdown(run.diff),
        description=f"daily-dunning dry run for {run.as_of}: what would change",
    )
    create_table_artifact(
        key="dry-run-contacts",
        table=run.diff["contacts"],  # type: ignore[arg-type]
        description=f"contacts the dry run for {run.as_of} would make, against the previous run",
    )


def _finish(run: RunSummary, settings: Settings, work: Settings) -> None:
    """Record the run's outcome and write its report, whether it succeeded or not. The report
    is built from the warehouse the run worked on (a dry run's scratch copy); the run is
    recorded in the real one. A failure here is logged and never hides the run's own error."""
    record = run.record
    if record is None:
        return
    for step in run.not_built_yet:
        get_run_logger().warning("step not built yet, skipped: %s", step)
    record.finish()
    try:
        connection = _open_retrying(work)
    except Exception:
        logger.exception("could not reopen the warehouse to report run %s", run.run_id)
        return
    try:
        if "report" in record.selected:
            try:
                with record.step("report"):
                    run.files += write_the_run_report(connection, settings, summary_of(run))
            except Exception:
                logger.exception("the run report of %s could not be written", run.run_id)
        if work is not settings:
            connection.close()
            connection = _open_retrying(settings)
        record_run(connection, record, summary_of(run))
    except Exception:
        logger.exception("could not record run %s in ops.runs", run.run_id)
    finally:
        connection.close()
        if work is not settings:
            shutil.rmtree(work.warehouse_path.parent, ignore_errors=True)
    get_run_logger().info(
        "run %s %s%s", run.run_id[:8], record.status,
        f" at {record.failed_step}: {record.error}" if record.failed_step else "",
    )  # fmt: skip


def preload_great_expectations() -> threading.Thread:
    """Import Great Expectations in a background thread: gate 1 needs it right after ingest,
    and ingest's DuckDB work leaves the interpreter idle. The gate's own import waits for this
    one (Python's import lock) and then finds the module loaded."""
    loader = threading.Thread(
        target=importlib.import_module,
        args=("great_expectations",),
        name="preload-great-expectations",
        daemon=True,
    )
    loader.start()
    return loader


def _open_retrying(settings: Settings, attempts: int = 4):
    """The run's connection, waiting out a reader that has the file open for a moment."""
    for attempt in range(attempts):
        try:
            return connect_warehouse(settings)
        except WarehouseBusy:
            if attempt == attempts - 1:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def summary_of(run: RunSummary) -> dict[str, object]:
    """The run as JSON: what ops.runs keeps and what the run report is built from."""
    record = run.record
    header = record.summary_header() if record else {"run_id": run.run_id}
    contacts: list[dict[str, object]] = []
    if run.plan is not None:
        held = run.plan.held_back() if run.contacts else {}
        source = held if run.contacts else {
            (channel, status, reason or ""): count
            for (channel, status, reason), count in run.plan.counts.items()
        }  # fmt: skip
        contacts += [
            {"channel": channel, "status": status, "reason": reason or None, "count": count}
            for (channel, status, reason), count in sorted(source.items())
        ]
    contacts += [
        {"channel": channel.channel, "status": status, "reason": reason or None, "count": count}
        for channel in run.contacts
        for (status, reason), count in sorted(channel.counts.items())
    ]
    return {
        **header,
        "choices": record.choices if record else {},
        "batches": [
            {
                "folder": batch.folder.name,
                "batch_id": batch.batch_id,
                "changed": batch.changed,
                "rows_loaded": batch.rows_loaded,
                "rows_quarantined": batch.rows_quarantined,
            }
            for batch in run.batches
        ],
        "gates": [
            {"gate": r.gate, "check": r.check, "violations": r.violations, "passed": r.success}
            for gate in run.gates
            for r in gate.results
        ],
        "events": asdict(run.events) if run.events is not None else None,
        "offers": _offer_summary(run.offers),
        "plan": run.plan_rows,
        "contacts": contacts,
        "rechecked": run.rechecked,
        "placements": asdict(run.placements) if run.placements is not None else None,
        "write_offs": _write_off_summary(run.write_offs),
        "legal": _legal_summary(run.legal),
        "credit_holds": _credit_hold_summary(run.credit_holds),
        "servicing": _servicing_summary(run.servicing),
        "skip_tracing": _skip_trace_summary(run.skip_tracing),
        "diff": run.diff,
        "files": run.files,
        "not_built_yet": list(run.not_built_yet),
    }
