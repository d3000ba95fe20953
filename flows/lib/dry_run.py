"""What a run would do, against what the previous run did: the dry-run diff.

Two parts:

- **Contacts**: the contacts the plan would send, per channel and stage, against the previous
  run's plan ("+312 reminder_2 emails").
- **Accounts**: how the accounts moved between the previous run's stage decisions and this
  run's ("40 paid since", "12 held since"), from marts.fct_account_stage_history.

The previous run is the latest real (not dry) run for an earlier date that got as far as
planning; its plan per channel and stage is kept in its `ops.runs` summary.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb

from flows.lib.planner import PLAN_TABLE
from flows.lib.runs import ensure_runs_table

NOUNS = {"email": "emails", "letter": "letters", "phone": "calls", "manager": "manager reviews"}


def plan_by_stage(connection: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """The judged plan (temp table of `build_plan`) per channel, stage, status and reason."""
    rows = connection.execute(
        f"""
        select channel, stage, status, reason, count(*)
        from {PLAN_TABLE} group by all order by all
        """
    ).fetchall()
    return [
        {"channel": channel, "stage": stage, "status": status, "reason": reason, "count": count}
        for channel, stage, status, reason, count in rows
    ]


def previous_run(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date
) -> tuple[str, dt.date, list[dict[str, object]]] | None:
    """(run ids, as-of date, plan by stage) of the latest earlier date on which a real run got
    through planning. The plans of all that date's real runs add up (a second run of a day
    plans only what the first did not), and a run that failed before planning does not
    count."""
    ensure_runs_table(connection)
    rows = connection.execute(
        """
        select run_id, as_of_date, summary from ops.runs
        where not dry_run and as_of_date < ?
        order by as_of_date desc, started_at
        """,
        [as_of],
    ).fetchall()
    planned_on: dt.date | None = None
    run_ids: list[str] = []
    plan: list[dict[str, object]] = []
    for run_id, day, summary in rows:
        if planned_on is not None and day != planned_on:
            break
        document = json.loads(summary or "{}")
        steps = {step["step"]: step["status"] for step in document.get("steps", [])}
        if steps.get("plan") != "done":
            continue
        planned_on = day
        run_ids.append(run_id)
        plan += document.get("plan") or []
    if planned_on is None:
        return None
    return ", ".join(run_id[:8] for run_id in run_ids), planned_on, plan


def contact_changes(
    now: list[dict[str, object]], before: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Planned contacts per channel and stage, now against before, largest change first."""

    def planned(plan: list[dict[str, object]]) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for row in plan:
            if row["status"] == "planned":
                key = (str(row["channel"]), str(row["stage"]))
                out[key] = out.get(key, 0) + int(row["count"])  # type: ignore[call-overload]
        return out

    current, earlier = planned(now), planned(before)
    changes = []
    for channel, stage in sorted(set(current) | set(earlier)):
        after, prior = current.get((channel, stage), 0), earlier.get((channel, stage), 0)
        changes.append(
            {
                "what": f"{stage} {NOUNS.get(channel, channel)}",
                "previous_run": prior,
                "this_run": after,
                "change": f"{after - prior:+,}",
            }
        )
    return sorted(changes, key=lambda row: -abs(int(str(row["change"]).replace(",", ""))))


def account_movements(
    connection: duckdb.DuckDBPyConnection, before: dt.date, now: dt.date
) -> list[dict[str, object]]:
    """How accounts moved between two runs' stage decisions."""
    row = connection.execute(
        """
        with

        earlier as (
            select * from marts.fct_account_stage_history where as_of_date = $before
        ),

        later as (
            select * from marts.fct_account_stage_history where as_of_date = $now
        ),

        paired as (
            select
                earlier.stage_order as was_order,
                earlier.is_held as was_held,
                later.stage_order as now_order,
                later.is_held as now_held,
                coalesce(later.total_open, 0) as now_open,
                earlier.account_id is not null as was_there,
                later.account_id is not null as is_there
            from earlier
            full outer join later
                on earlier.account_id = later.account_id
        )

        select
            count(*) filter (where was_order > 0 and (not is_there or now_open = 0)),
            count(*) filter (where is_there and not was_held and now_held),
            count(*) filter (where was_held and is_there and not now_held),
            count(*) filter (
                where was_there and is_there and was_order > 0 and now_order > was_order
            ),
            count(*) filter (
                where was_there and is_there and now_order < was_order and now_open > 0
            ),
            count(*) filter (where now_order > 0 and (not was_there or was_order = 0))
        from paired
        """,
        {"before": before, "now": now},
    ).fetchall()[0]
    labels = (
        "paid since (no balance left)",
        "held since",
        "released from a hold",
        "moved up the ladder",
        "moved down the ladder (paid in part, or disputed)",
        "entered the ladder (courtesy reminders included)",
    )
    return [{"what": label, "accounts": count} for label, count in zip(labels, row, strict=True)]


def dry_run_diff(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, plan: list[dict[str, object]]
) -> dict[str, object]:
    """The whole diff, JSON-able; `previous` is None on a first run."""
    previous = previous_run(connection, as_of)
    if previous is None:
        return {
            "as_of": as_of.isoformat(),
            "previous": None,
            "contacts": contact_changes(plan, []),
            "accounts": [],
        }
    run_id, day, before = previous
    return {
        "as_of": as_of.isoformat(),
        "previous": {"run_id": run_id, "as_of": day.isoformat()},
        "contacts": contact_changes(plan, before),
        "accounts": account_movements(connection, day, as_of),
    }


def diff_markdown(diff: dict[str, object]) -> str:
    previous = diff["previous"]
    against = (
        f"against the runs for {previous['as_of']} ({previous['run_id']})"  # type: ignore[index]
        if previous
        else "(no earlier run to compare with)"
    )
    lines = [f"# Dry run for {diff['as_of']}: nothing was sent", "", f"Contacts {against}:", ""]
    lines += ["| contacts | previous run | this run | change |", "|---|---|---|---|"]
    lines += [
        f"| {row['what']} | {row['previous_run']:,} | {row['this_run']:,} | {row['change']} |"
        for row in diff["contacts"]  # type: ignore[attr-defined]
    ]
    if diff["accounts"]:
        lines += ["", "| accounts since the previous run | accounts |", "|---|---|"]
        lines += [
            f"| {row['what']} | {row['accounts']:,} |"
            for row in diff["accounts"]  # type: ignore[attr-defined]
        ]
    return "\n".join(lines)
