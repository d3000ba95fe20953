"""Run a gate: SQL finds offending rows, Great Expectations judges the counts, the warehouse
keeps the results.

The suites live in the GX file context `expectations/` (one suite per gate, one expectation
per check, `meta.check` naming it); `sync_expectation_suites` writes them from
`gate_checks.CHECKS`. A failed gate raises `GateFailed` naming each failing check with its
count and sample rows; every result (pass or fail, and any override) is stored in
`ops.gate_results` first.

It also keeps the record of builds the gates and later steps rely on: `ops.builds` (the dates
the marts were built for) and `ops.build_attempts` with `marts.build_status` (a build that
failed or did not finish; see "warehouse integrity" below).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.lib.gate_checks import Check, GateName, checks_of, render

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
SAMPLE_ROWS = 5
DATASOURCE = "gate_frames"
BATCH_DEFINITION = "all_checks"


class GateFailed(RuntimeError):
    """A gate found bad data; nothing outbound may happen in this run. `outcome` holds the
    gate's results when they are known."""

    def __init__(self, message: str, outcome: GateOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class CheckResult:
    gate: str
    check: str
    description: str
    violations: int
    success: bool
    sample: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class GateOutcome:
    gate: str
    success: bool
    results: tuple[CheckResult, ...]
    seconds: float

    def failure_message(self) -> str:
        lines = [f"{self.gate} failed: nothing will be sent in this run."]
        for result in self.results:
            if not result.success:
                lines.append(
                    f"  {result.check}: {result.violations} offending row(s). "
                    f"{result.description} Sample: {json.dumps(result.sample, default=str)}"
                )
        return "\n".join(lines)


def run_gate(
    connection: duckdb.DuckDBPyConnection,
    gate: GateName,
    as_of: dt.date,
    *,
    run_id: str,
    freshness_days: int,
) -> GateOutcome:
    """Evaluate every check of `gate`, store the results, raise GateFailed on a failure."""
    started = time.perf_counter()
    checks = checks_of(gate)
    counted = [_count_and_sample(connection, check, as_of, freshness_days) for check in checks]
    verdicts = _judge_with_great_expectations(gate, counted)
    results = tuple(
        CheckResult(gate, check.name, check.description, violations, verdicts[check.name], sample)
        for check, violations, sample in counted
    )
    outcome = GateOutcome(
        gate, all(result.success for result in results), results, time.perf_counter() - started
    )
    store_gate_results(connection, run_id, as_of, outcome)
    if not outcome.success:
        raise GateFailed(outcome.failure_message())
    return outcome


def _count_and_sample(
    connection: duckdb.DuckDBPyConnection, check: Check, as_of: dt.date, freshness_days: int
) -> tuple[Check, int, list[dict[str, object]]]:
    sql = render(check, as_of, freshness_days)
    count = connection.execute(f"select count(*) from ({sql})").fetchall()[0][0]
    sample: list[dict[str, object]] = []
    if count:
        cursor = connection.execute(f"select * from ({sql}) limit {SAMPLE_ROWS}")
        names = [column[0] for column in cursor.description]
        sample = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return check, count, sample


def _judge_with_great_expectations(
    gate: GateName, counted: list[tuple[Check, int, list[dict[str, object]]]]
) -> dict[str, bool]:
    """Validate the one-row-per-check frame against the gate's suite (a checkpoint of the
    file context, which also updates its Data Docs)."""
    import great_expectations as gx  # seconds to import: only when a gate runs
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="file", context_root_dir=str(EXPECTATIONS_DIR))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    frame = pd.DataFrame(
        {
            "check": [check.name for check, _, _ in counted],
            "violations": [violations for _, violations, _ in counted],
        }
    )
    result = context.checkpoints.get(gate).run(batch_parameters={"dataframe": frame})
    verdicts: dict[str, bool] = {}
    for validation in result.run_results.values():
        for expectation_result in validation.results:
            verdicts[expectation_result.expectation_config.meta["check"]] = (
                expectation_result.success
            )
    missing = [check.name for check, _, _ in counted if check.name not in verdicts]
    if missing:
        raise GateFailed(
            f"{gate}: the suite in {EXPECTATIONS_DIR} has no expectation for {missing}; "
            "run `python -m flows.lib.gates` to write the suites again."
        )
    return verdicts


def record_build(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> None:
    """Note that the marts now hold `as_of` (gate 2 checks the marts only for that date)."""
    ensure_builds_table(connection)
    connection.execute("insert into ops.builds values (?, now())", [as_of])


def ensure_builds_table(connection: duckdb.DuckDBPyConnection) -> None:
    """`ops.builds`: every date the marts were built for, and when; `ops.build_attempts`:
    every build a run started, and how it ended."""
    connection.execute("create schema if not exists ops")
    connection.execute(
        "create table if not exists ops.builds "
        "(as_of_date DATE NOT NULL, built_at TIMESTAMPTZ NOT NULL)"
    )
    connection.execute(BUILD_ATTEMPTS_DDL)


def latest_build(connection: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The as-of date the marts were last built for (the latest build, not the latest date)."""
    try:
        rows = connection.execute(
            "select as_of_date from ops.builds order by built_at desc limit 1"
        ).fetchall()
    except duckdb.CatalogException:
        return None
    return rows[0][0] if rows else None


# --- warehouse integrity: a build that did not finish is marked, and nothing acts on it ---
#
# dbt commits model by model: a build that fails (or is killed) after some models leaves the
# marts mixing its date and the previous build's. The run marks the attempt `building` before
# dbt starts and `succeeded` or `failed` after (with the failing nodes and the models it did
# and did not rebuild). While the latest attempt has not succeeded and no build succeeded
# since it started, the marts are in doubt: `marts.build_status` says so to analysts, and
# gate 2, the contact, agency and servicing steps refuse them. The next successful build
# clears it. (Why a marker and not a copy of the file: docs/operations.md.)

BUILD_ATTEMPTS_DDL = """
create table if not exists ops.build_attempts (
    run_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    status VARCHAR NOT NULL,
    previous_as_of_date DATE,
    failed_nodes VARCHAR[],
    rebuilt_models VARCHAR[],
    not_rebuilt_models VARCHAR[],
    error VARCHAR,
    note VARCHAR,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
)
"""
# the latest attempt, when it did not succeed and no build succeeded after it started
IN_DOUBT_SQL = """
    select attempt.*
    from (select * from ops.build_attempts order by started_at desc limit 1) as attempt
    where
        attempt.status <> 'succeeded'
        and not exists (
            select 1 from ops.builds where builds.built_at > attempt.started_at
        )
"""
BUILD_STATUS_VIEW = f"""
create or replace view marts.build_status as
with

last_good as (
    select
        as_of_date,
        built_at
    from ops.builds
    order by built_at desc
    limit 1
),

in_doubt as ({IN_DOUBT_SQL}),

-- dates whose last attempt did not finish and that no build completed since: their rows in
-- the history marts (fct_account_aging, fct_account_stage_history) may be partial
incomplete as (
    select list_sort(list(distinct attempts.as_of_date)) as dates
    from ops.build_attempts as attempts
    where
        attempts.status <> 'succeeded'
        and not exists (
            select 1 from ops.builds
            where
                builds.as_of_date = attempts.as_of_date
                and builds.built_at > attempts.started_at
        )
)

select
    in_doubt.run_id is null and last_good.as_of_date is not null as is_consistent,
    coalesce(
        in_doubt.status,
        case when last_good.as_of_date is null then 'never_built' else 'consistent' end
    ) as status,
    coalesce(
        in_doubt.note,
        case
            when last_good.as_of_date is null then 'the marts were never built'
            else 'every mart was built for ' || last_good.as_of_date::varchar
        end
    ) as message,
    last_good.as_of_date as built_as_of_date,
    last_good.built_at,
    in_doubt.run_id as failed_run_id,
    in_doubt.as_of_date as failed_as_of_date,
    in_doubt.failed_nodes,
    in_doubt.rebuilt_models,
    in_doubt.not_rebuilt_models,
    in_doubt.started_at as failed_started_at,
    coalesce(incomplete.dates, []) as incomplete_dates
from (select 1 as one) as one_row
left join last_good on true
left join in_doubt on true
left join incomplete on true
"""


@dataclass(frozen=True)
class BuildAttempt:
    """A build that did not finish well: `status` is `building` (started, never finished:
    still running or stopped) or `failed`."""

    run_id: str
    as_of: dt.date
    status: str
    previous: dt.date | None  # the date of the last good build when it started
    failed_nodes: tuple[str, ...]
    started_at: dt.datetime

    def warning(self) -> str:
        """What the marts hold now, in one sentence."""
        build = f"the last build (run {self.run_id[:8]}, for {self.as_of})"
        if self.status == "failed":
            names = [node_name(node) for node in self.failed_nodes]
            what = f"failed at {', '.join(names)}" if names else "failed before dbt finished"
        else:
            started = self.started_at.astimezone(dt.UTC)
            what = (
                f"started {started:%Y-%m-%d %H:%M} UTC and did not finish (the run was "
                "stopped, or is still building)"
            )
        if self.previous is None:
            mix = f"the marts may be only partly built for {self.as_of}"
        elif self.previous == self.as_of:
            mix = f"the marts may mix this build of {self.as_of} and the one before"
        else:
            mix = f"the marts may mix {self.as_of} and {self.previous}"
        return f"{build} {what}: {mix}"

    def recovery(self) -> str:
        return (
            f"Build the date again: `recoup run --as-of {self.as_of} --resume`, or "
            f"`recoup run --as-of {self.as_of}` to load a fixed batch first"
        )


def unfinished_build(connection: duckdb.DuckDBPyConnection) -> BuildAttempt | None:
    """The latest build attempt when it did not succeed and no build succeeded since it
    started (the marts may mix two dates); None when the marts are consistent."""
    try:
        rows = connection.execute(
            "select run_id, as_of_date, status, previous_as_of_date, failed_nodes, started_at "
            f"from ({IN_DOUBT_SQL})"
        ).fetchall()
    except duckdb.CatalogException:  # a read-only warehouse from before build attempts
        return None
    if not rows:
        return None
    run_id, as_of, status, previous, failed_nodes, started_at = rows[0]
    return BuildAttempt(run_id, as_of, status, previous, tuple(failed_nodes or ()), started_at)


def start_build(connection: duckdb.DuckDBPyConnection, run_id: str, as_of: dt.date) -> None:
    """Mark the build `run_id` is about to start (before dbt opens the file): until it
    succeeds, `marts.build_status` and every step that reads the marts treat them as in
    doubt."""
    ensure_builds_table(connection)
    previous = latest_build(connection)
    attempt = BuildAttempt(run_id, as_of, "building", previous, (), dt.datetime.now(dt.UTC))
    connection.execute("begin transaction")
    try:
        connection.execute(
            "insert into ops.build_attempts (run_id, as_of_date, status, previous_as_of_date, "
            "note, started_at) values (?, ?, 'building', ?, ?, ?)",
            [run_id, as_of, previous, _note(attempt), attempt.started_at],
        )
        connection.execute("create schema if not exists marts")
        connection.execute(BUILD_STATUS_VIEW)
        connection.execute(
            "comment on view marts.build_status is 'One row: whether every mart comes from "
            "the last good build (is_consistent), and if not which run failed, for which date, "
            "at which model. Written by recoup, not dbt: see docs/operations.md.'"
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def finish_build(connection: duckdb.DuckDBPyConnection, run_id: str, as_of: dt.date) -> None:
    """The build succeeded: the marts hold `as_of` (ops.builds) and the mark is cleared, in
    one transaction."""
    ensure_builds_table(connection)
    connection.execute("begin transaction")
    try:
        connection.execute(
            "update ops.build_attempts set status = 'succeeded', note = null, "
            "finished_at = now() where run_id = ? and status = 'building'",
            [run_id],
        )
        record_build(connection, as_of)
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def fail_build(
    connection: duckdb.DuckDBPyConnection, run_id: str, error: BaseException
) -> BuildAttempt | None:
    """The build of `run_id` failed: keep what dbt said (failing nodes, the models it did and
    did not rebuild) and the sentence analysts see; return the attempt now in doubt."""
    ensure_builds_table(connection)
    failed = _names(getattr(error, "failed_nodes", ())) or []
    connection.execute(
        """
        update ops.build_attempts set
            status = 'failed',
            failed_nodes = ?,
            rebuilt_models = ?,
            not_rebuilt_models = ?,
            error = ?,
            finished_at = now()
        where run_id = ? and status = 'building'
        """,
        [
            failed,
            _names(getattr(error, "rebuilt_models", None)),
            _names(getattr(error, "not_rebuilt_models", None)),
            f"{type(error).__name__}: {error}"[:2000],
            run_id,
        ],
    )
    attempt = unfinished_build(connection)
    if attempt is None or attempt.run_id != run_id:
        return attempt
    connection.execute(
        "update ops.build_attempts set note = ? where run_id = ? and status = 'failed'",
        [_note(attempt), run_id],
    )
    return attempt


def node_name(unique_id: str) -> str:
    """`model.recoup.fct_account_aging` → `fct_account_aging` (a test keeps its name too)."""
    parts = unique_id.split(".")
    return parts[2] if len(parts) >= 3 else unique_id


def _note(attempt: BuildAttempt) -> str:
    return f"{attempt.warning()}. {attempt.recovery()}."


def _names(nodes: object) -> list[str] | None:
    """dbt's unique ids as the names analysts know; None when dbt did not say."""
    return [node_name(str(node)) for node in nodes] if isinstance(nodes, (list, tuple)) else None


def require_marts_for(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> None:
    """Gate 2 alone (`--only gates`) needs marts built for its date by the latest build, and
    no build in doubt since."""
    unfinished = unfinished_build(connection)
    if unfinished is not None:
        raise GateFailed(
            f"gate_warehouse cannot check {as_of}: {unfinished.warning()}. {unfinished.recovery()}."
        )
    built_for = latest_build(connection)
    if built_for != as_of:
        built = f"the marts hold {built_for}" if built_for else "the marts were never built"
        raise GateFailed(
            f"gate_warehouse cannot check {as_of}: {built}. Build them first with "
            f"`recoup run --as-of {as_of}` (which runs the gates too)."
        )


def store_gate_results(
    connection: duckdb.DuckDBPyConnection, run_id: str, as_of: dt.date, outcome: GateOutcome
) -> None:
    connection.execute("create schema if not exists ops")
    connection.execute(
        """
        create table if not exists ops.gate_results (
            run_id VARCHAR NOT NULL,
            as_of_date DATE NOT NULL,
            gate VARCHAR NOT NULL,
            check_name VARCHAR NOT NULL,
            success BOOLEAN NOT NULL,
            violations BIGINT NOT NULL,
            description VARCHAR NOT NULL,
            sample JSON,
            overridden BOOLEAN NOT NULL DEFAULT false,
            checked_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    if not outcome.results:
        return
    now = dt.datetime.now(dt.UTC)
    connection.executemany(
        "insert into ops.gate_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                run_id,
                as_of,
                result.gate,
                result.check,
                result.success,
                result.violations,
                result.description,
                json.dumps(result.sample, default=str),
                False,
                now,
            ]
            for result in outcome.results
        ],
    )


def sync_expectation_suites() -> None:
    """Write the file context in expectations/: one suite, validation definition and
    checkpoint per gate, an expectation per check (violations between 0 and 0)."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    from flows.lib.gate_checks import CHECKS

    context = gx.get_context(mode="file", context_root_dir=str(EXPECTATIONS_DIR))
    try:
        source = context.data_sources.get(DATASOURCE)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(DATASOURCE)
    for gate in sorted({check.gate for check in CHECKS}):
        try:
            asset = source.get_asset(gate)
        except LookupError:
            asset = source.add_dataframe_asset(gate)
        try:
            batch = asset.get_batch_definition(BATCH_DEFINITION)
        except (KeyError, ValueError):
            batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
        if gate in [checkpoint.name for checkpoint in context.checkpoints.all()]:
            context.checkpoints.delete(gate)
        if gate in [definition.name for definition in context.validation_definitions.all()]:
            context.validation_definitions.delete(gate)
        if gate in [suite.name for suite in context.suites.all()]:
            context.suites.delete(gate)
        suite = context.suites.add(gx.ExpectationSuite(name=gate, meta={"gate": gate}))
        for check in checks_of(gate):  # type: ignore[arg-type]
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="violations",
                    min_value=0,
                    max_value=0,
                    row_condition=Column("check") == check.name,
                    meta={"check": check.name, "description": check.description},
                )
            )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=gate, data=batch, suite=suite)
        )
        context.checkpoints.add(
            gx.Checkpoint(
                name=gate,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format="SUMMARY",
            )
        )


if __name__ == "__main__":
    sync_expectation_suites()
    print(f"suites written to {EXPECTATIONS_DIR}")
