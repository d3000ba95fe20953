"""Flow `daily-dunning`: ingest → gate → dbt → gate → plan → act → report.

The flow loads the batches waiting in the inbox, checks them (gate 1), builds the warehouse
for the as-of date (balances, aging, holds, stages) and checks the marts (gate 2). Then it
imports the SendGrid events spooled by the webhook (bounces and opt-outs become flags), plans
the day's contacts by the guardrails, passes the plan through the volume circuit breaker,
writes it into the action ledger, re-checks every planned contact against the newest facts,
and hands them to each channel: emails (SendGrid, or .eml files in the outbox), letters (PDF
and a print manifest) and the phone and manager work queue. A failed gate stops the run
before anything outbound. A dry run plans and reports, and sends nothing. Steps not built yet
are listed in `NOT_BUILT_YET` and reported in every run summary.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.lib.config import load_settings
from flows.lib.dbt_build import DbtOutcome
from flows.lib.email_events import ImportOutcome
from flows.lib.export_files import inbox_batch_folders
from flows.lib.gates import GateOutcome, record_build
from flows.lib.ledger import ChannelOutcome
from flows.lib.loader import BatchOutcome
from flows.lib.planner import ContactScope, Plan
from flows.lib.run_lock import run_lock
from flows.lib.warehouse import open_warehouse
from flows.tasks.build import build_marts
from flows.tasks.contact import (
    plan_contacts,
    print_letters,
    queue_work,
    recheck_planned,
    send_emails,
)
from flows.tasks.events import import_email_events
from flows.tasks.gates import check_marts, check_raw_batch
from flows.tasks.load import load_batches

NOT_BUILT_YET = (
    "agency placement",
    "run report",
)


@dataclass
class RunSummary:
    run_id: str
    as_of: dt.date
    dry_run: bool
    batches: list[BatchOutcome] = field(default_factory=list)
    marts: DbtOutcome | None = None
    gates: list[GateOutcome] = field(default_factory=list)
    events: ImportOutcome | None = None
    plan: Plan | None = None
    rechecked: dict[str, int] = field(default_factory=dict)
    contacts: list[ChannelOutcome] = field(default_factory=list)
    not_built_yet: tuple[str, ...] = NOT_BUILT_YET


@flow(name="daily-dunning")
def daily_dunning(
    as_of: dt.date | None = None,
    dry_run: bool = False,
    segment: str | None = None,
    accounts: list[str] | None = None,
    only: Literal["gates"] | None = None,
    allow_volume_spike: bool = False,
) -> RunSummary:
    """Age every account, set its stage, and contact the customers who are due a reminder."""
    settings = load_settings()
    logger = get_run_logger()
    run = RunSummary(
        run_id=str(flow_run.get_id() or uuid.uuid4()),
        as_of=as_of or settings.today(),
        dry_run=dry_run,
    )
    scope = ContactScope(segment=segment, account_ids=tuple(accounts) if accounts else None)
    acting = not dry_run and only is None
    with run_lock(settings.path("state"), "run", settings.ingest.lock_wait_seconds):
        connection = open_warehouse(settings.warehouse_path)
        try:
            if only is None:
                folders = inbox_batch_folders(settings.path("inbox"))
                if folders:
                    run.batches = load_batches(connection, folders)
                else:
                    logger.info("inbox %s holds no batch", settings.path("inbox"))
            run.gates.append(check_raw_batch(connection, settings, run.as_of, run.run_id))
        finally:
            connection.close()  # dbt opens the file itself: one writer at a time
        if only is None:
            run.marts = build_marts(settings.warehouse_path, settings.path("state"), run.as_of)
        connection = open_warehouse(settings.warehouse_path)
        try:
            if run.marts is not None:
                record_build(connection, run.as_of)
            run.gates.append(check_marts(connection, settings, run.as_of, run.run_id))
            if acting:
                run.events = import_email_events(connection, settings)
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
            if acting:
                run.rechecked = recheck_planned(connection, settings, run.as_of, run.run_id, scope)
                for step in (send_emails, print_letters, queue_work):
                    run.contacts.append(step(connection, settings, run.as_of, run.run_id, scope))
        finally:
            connection.close()
    for step in run.not_built_yet:
        logger.warning("step not built yet, skipped: %s", step)
    create_markdown_artifact(
        key="daily-dunning-summary",
        markdown=_summary_markdown(run),
        description=f"daily-dunning for {run.as_of}",
    )
    return run


def _summary_markdown(run: RunSummary) -> str:
    loaded = sum(batch.rows_loaded for batch in run.batches)
    quarantined = sum(batch.rows_quarantined for batch in run.batches)
    lines = [
        f"# daily-dunning, as of {run.as_of}{' (dry run)' if run.dry_run else ''}",
        "",
        f"- batches looked at: {len(run.batches)}",
        f"- rows loaded: {loaded}",
        f"- rows quarantined: {quarantined}",
        f"- warehouse built for {run.as_of}: {run.marts.nodes if run.marts else 0} dbt nodes",
        "",
        "| gate | check | violations | passed |",
        "|---|---|---|---|",
        *[
            f"| {r.gate} | {r.check} | {r.violations} | {'yes' if r.success else 'NO'} |"
            for gate in run.gates
            for r in gate.results
        ],
        "",
        *_contact_markdown(run),
        "",
        "Steps not built yet (skipped): " + "; ".join(run.not_built_yet),
    ]
    return "\n".join(lines)


def _contact_markdown(run: RunSummary) -> list[str]:
    if run.plan is None:
        return []
    lines = [
        "| channel | status | reason | contacts |",
        "|---|---|---|---|",
    ]
    if run.contacts:
        for channel in run.contacts:
            lines += [
                f"| {channel.channel} | {status} | {reason} | {count} |"
                for (status, reason), count in sorted(channel.counts.items())
            ]
    else:  # a dry run, or gates only: what the plan would do
        lines += [
            f"| {channel} | {status} (plan) | {reason or ''} | {count} |"
            for (channel, status, reason), count in sorted(run.plan.counts.items(), key=str)
        ]
    lines += [f"| (re-check) | {what} | | {count} |" for what, count in run.rechecked.items()]
    return lines
