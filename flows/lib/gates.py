"""Run a gate: SQL finds offending rows, Great Expectations judges the counts, the warehouse
keeps the results.

The suites live in the GX file context `expectations/` (one suite per gate, one expectation
per check, `meta.check` naming it); `sync_expectation_suites` writes them from
`gate_checks.CHECKS`. A failed gate raises `GateFailed` naming each failing check with its
count and sample rows; every result (pass or fail, and any override) is stored in
`ops.gate_results` first.
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
    """`ops.builds`: every date the marts were built for, and when."""
    connection.execute("create schema if not exists ops")
    connection.execute(
        "create table if not exists ops.builds "
        "(as_of_date DATE NOT NULL, built_at TIMESTAMPTZ NOT NULL)"
    )


def latest_build(connection: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The as-of date the marts were last built for (the latest build, not the latest date)."""
    try:
        rows = connection.execute(
            "select as_of_date from ops.builds order by built_at desc limit 1"
        ).fetchall()
    except duckdb.CatalogException:
        return None
    return rows[0][0] if rows else None


def require_marts_for(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> None:
    """Gate 2 alone (`--only gates`) needs marts built for its date by the latest build."""
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
