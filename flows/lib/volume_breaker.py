"""The volume circuit breaker: halt before sending when a run plans far more contacts than usual.

Planned contacts per channel (email, letter, phone, manager) are the contacts of the day's plan
that passed every guardrail: what the send steps will act on (flows/lib/planner.py). The
breaker runs between planning and writing the plan into the action ledger, so a halted spike
leaves nothing planned. Each run's counts are kept in `ops.run_volumes` (a rerun replaces its
date's counts; scoped runs and dry runs record nothing). A channel trips the breaker when at
least `min_history` earlier runs exist, the count exceeds `factor` times their median (a
median of 0 counts as 1, so a channel's first busy day halts until someone lets it through),
and it is at least `min_actions`. An operator may let a spike through with an explicit
override, which is recorded in `ops.gate_results`.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import dataclass

import duckdb

from flows.lib.gates import CheckResult, GateFailed, GateOutcome, store_gate_results

GATE = "volume_breaker"


@dataclass(frozen=True)
class VolumeRule:
    factor: float
    min_actions: int
    trailing_runs: int
    min_history: int = 3


def check_volumes(
    connection: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    rule: VolumeRule,
    *,
    run_id: str,
    override: bool,
    planned: dict[str, int],
    record: bool = True,
) -> GateOutcome:
    """Compare the plan's contacts per channel with the trailing median. Only a run that
    passes (or is let through) adds its counts to the history, so a halted spike never raises
    the median; dry runs pass `record=False`."""
    started = time.perf_counter()
    history = _earlier_volumes(connection, as_of, rule.trailing_runs)
    results = []
    channels = (set(planned) | {c for run in history.values() for c in run}) - {"none"}
    for channel in sorted(channels):
        count = planned.get(channel, 0)
        earlier = [run.get(channel, 0) for run in history.values()]
        median = statistics.median(earlier) if earlier else 0
        tripped = (
            len(earlier) >= rule.min_history
            and count >= rule.min_actions
            and count > rule.factor * max(median, 1)
        )
        results.append(
            CheckResult(
                GATE,
                f"planned_{channel}",
                f"{count} planned {channel} contacts against a median of {median:g} over "
                f"{len(earlier)} earlier runs (limit {rule.factor:g}x, at least "
                f"{rule.min_actions}).",
                count,
                not tripped or override,
                [{"planned": count, "median": median, "earlier_runs": len(earlier)}]
                if tripped
                else [],
            )
        )
    outcome = GateOutcome(
        GATE, all(r.success for r in results), tuple(results), time.perf_counter() - started
    )
    store_gate_results(connection, run_id, as_of, outcome)
    tripped_checks = [r.check for r in results if r.sample]
    if override and tripped_checks:
        connection.execute(
            "update ops.gate_results set overridden = true "
            "where run_id = ? and gate = ? and list_contains(?, check_name)",
            [run_id, GATE, tripped_checks],
        )
    if outcome.success and record:
        _record(connection, as_of, planned)
    if not outcome.success:
        raise GateFailed(
            outcome.failure_message()
            + "\n  If this volume is expected (a billing catch-up, a new segment), run again "
            "with --allow-volume-spike; the override is recorded.",
            outcome,
        )
    return outcome


def _earlier_volumes(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, runs: int
) -> dict[dt.date, dict[str, int]]:
    _ensure_table(connection)
    rows = connection.execute(
        """
        with recent as (
            select distinct as_of_date from ops.run_volumes
            where as_of_date < ? order by as_of_date desc limit ?
        )
        select volumes.as_of_date, volumes.channel, volumes.planned
        from ops.run_volumes as volumes
        inner join recent on volumes.as_of_date = recent.as_of_date
        """,
        [as_of, runs],
    ).fetchall()
    history: dict[dt.date, dict[str, int]] = {}
    for run_date, channel, count in rows:
        history.setdefault(run_date, {})[channel] = count
    return history


def _record(connection: duckdb.DuckDBPyConnection, as_of: dt.date, planned: dict[str, int]) -> None:
    _ensure_table(connection)
    connection.execute("delete from ops.run_volumes where as_of_date = ?", [as_of])
    rows = [[as_of, channel, count] for channel, count in planned.items()] or [[as_of, "none", 0]]
    connection.executemany("insert into ops.run_volumes values (?, ?, ?, now())", rows)


def _ensure_table(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("create schema if not exists ops")
    connection.execute(
        """
        create table if not exists ops.run_volumes (
            as_of_date DATE NOT NULL,
            channel VARCHAR NOT NULL,
            planned BIGINT NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL
        )
        """
    )
