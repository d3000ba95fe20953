"""The run report: what one daily run did and where the accounts stand, as JSON, HTML and
markdown.

`build_run_report(connection, summary)` takes the run summary the flow hands over (steps,
batches, gates, contacts) and adds, for the run's as-of date, the accounts and collectible
amount per escalation stage and currency (`marts.fct_account_stage_history`), the aging per
currency (`marts.fct_account_aging`) and the holds by reason. The result holds JSON types only:
money is a string with two decimals next to its currency, and no amount is ever added to an
amount in another currency. A run that failed before dbt built the marts still gets a report;
it says which marts were missing.

`render_run_report_html(report)` is one self-contained page (inline CSS, charts as inline SVG
from matplotlib, no script, nothing fetched) from `report_templates/run_report.html.j2`,
autoescaped, so a stage name or a reason can never become markup. `run_report_markdown` is the
short version for the Prefect artifact; `write_run_report` writes the JSON and the HTML.

The charts, their palette and `amount_text` come from `flows.lib.report_charts`, which the
monthly report shares, so both reports look alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import markupsafe

from flows.lib.output_files import write_atomically
from flows.lib.report_charts import (
    aging_distribution_figure,
    stage_funnel_figure,
    svg_of,
)
from flows.lib.report_formats import (
    AGING_BUCKETS,
    CONTACT_OUTCOME,
    OUTCOME_LABELS,
    OUTCOME_ORDER,
    amount_text,
    stage_label,
)

REPORT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "report_templates"
RUN_REPORT_TEMPLATE = "run_report.html.j2"
REPORT_VERSION = 1
CENT = Decimal("0.01")

STAGE_MARTS = ("fct_account_stage_history", "fct_account_aging")


# --- building the report --------------------------------------------------------------------


def build_run_report(
    connection: duckdb.DuckDBPyConnection, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """The run report as a JSON-ready dict: the run summary, tidied, plus the warehouse's view
    of the as-of date. Every key of `summary` but run_id, as_of and status may be missing."""
    as_of = dt.date.fromisoformat(str(summary["as_of"]))
    steps = [
        {
            "step": str(step.get("step")),
            "status": str(step.get("status")),
            "seconds": round(float(step.get("seconds") or 0), 1),
        }
        for step in summary.get("steps") or []
    ]
    gates = [
        {
            "gate": str(gate.get("gate")),
            "check": str(gate.get("check")),
            "violations": int(gate.get("violations") or 0),
            "passed": bool(gate.get("passed")),
        }
        for gate in summary.get("gates") or []
    ]
    gates.sort(key=lambda gate: gate["passed"])  # failing checks first, otherwise as run
    contacts = _contacts(summary.get("contacts") or [])
    warehouse = warehouse_view(connection, as_of)
    return {
        "report_version": REPORT_VERSION,
        "run": {
            "run_id": str(summary["run_id"]),
            "flow": summary.get("flow") or "daily-dunning",
            "as_of": as_of.isoformat(),
            "status": str(summary["status"]),
            "dry_run": bool(summary.get("dry_run")),
            "scope": _scope(summary.get("scope")),
            "failed_step": summary.get("failed_step"),
            "error": summary.get("error"),
            "started_at": summary.get("started_at"),
            "finished_at": summary.get("finished_at"),
            "seconds": _duration(summary.get("started_at"), summary.get("finished_at")),
        },
        "steps": steps,
        "batches": [
            {
                "folder": str(batch.get("folder")),
                "batch_id": batch.get("batch_id"),
                "changed": bool(batch.get("changed")),
                "rows_loaded": int(batch.get("rows_loaded") or 0),
                "rows_quarantined": int(batch.get("rows_quarantined") or 0),
            }
            for batch in summary.get("batches") or []
        ],
        "gates": gates,
        "gates_failed": sum(not gate["passed"] for gate in gates),
        "contacts": contacts,
        "contacts_by_channel": _contacts_by_channel(contacts),
        "plan_by_stage": _plan_by_stage(summary.get("plan") or [], warehouse["funnel"]),
        "rechecked": [
            {"outcome": str(outcome), "count": int(count)}
            for outcome, count in sorted((summary.get("rechecked") or {}).items())
        ],
        "agencies": _agencies(summary.get("placements")),
        "servicing": _servicing(summary.get("servicing")),
        "skip_tracing": _skip_tracing(summary.get("skip_tracing")),
        "files": [str(path) for path in summary.get("files") or []],
        "not_built_yet": [str(step) for step in summary.get("not_built_yet") or []],
        "warehouse": warehouse,
    }


def warehouse_view(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, Any]:
    """Stages, aging and holds on `as_of`, per currency; `available` is False (with a note)
    when the marts are missing or hold nothing for that date."""
    empty: dict[str, Any] = {"stages": [], "funnel": [], "aging": [], "holds": []}
    missing = [name for name in STAGE_MARTS if not mart_exists(connection, name)]
    if missing:
        names = ", ".join(f"marts.{name}" for name in missing)
        return {
            "available": False,
            "note": f"The warehouse has no {names}: the run stopped before dbt built the "
            "marts, so there are no stages or aging to show.",
            **empty,
        }
    stages = _stages(connection, as_of)
    aging = _aging(connection, as_of)
    if not stages and not aging:
        latest = connection.execute(
            "select max(as_of_date) from marts.fct_account_stage_history"
        ).fetchall()[0][0]
        since = f" (the latest date it holds is {latest})" if latest else ""
        return {
            "available": False,
            "note": f"The marts hold no accounts for {as_of}{since}: this run did not build "
            "the warehouse for its date, or no account has anything open.",
            **empty,
        }
    return {
        "available": True,
        "note": None,
        "stages": stages,
        "funnel": _funnel(stages),
        "aging": aging,
        "holds": _holds(connection, as_of),
    }


def mart_exists(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True when `marts.<name>` exists (a table or a view)."""
    rows = connection.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'marts' and table_name = ?",
        [name],
    ).fetchall()
    return bool(rows[0][0])


def money_text(amount: object) -> str:
    """An amount as a string with two decimals ("1234.50"); never a float on the way."""
    if amount is None:
        return "0.00"
    if isinstance(amount, float):
        amount = Decimal(repr(amount))
    return str(Decimal(str(amount)).quantize(CENT))


def _stages(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[dict[str, Any]]:
    rows = connection.execute(
        """
        select
            stage_order,
            stage,
            currency,
            count(*) as accounts,
            count(*) filter (where is_held) as held_accounts,
            sum(collectible_amount) as collectible_amount
        from marts.fct_account_stage_history
        where as_of_date = ?
        group by all
        order by stage_order, stage, currency
        """,
        [as_of],
    ).fetchall()
    return [
        {
            "stage_order": stage_order,
            "stage": stage,
            "currency": currency,
            "accounts": accounts,
            "held_accounts": held,
            "collectible_amount": money_text(collectible),
        }
        for stage_order, stage, currency, accounts, held, collectible in rows
    ]


def _funnel(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accounts per stage in ladder order, all currencies together (a count of accounts adds
    up across currencies; their amounts do not, and stay per currency in `stages`)."""
    funnel: dict[tuple[int, str], dict[str, Any]] = {}
    for row in stages:
        key = (row["stage_order"], row["stage"])
        entry = funnel.setdefault(
            key,
            {"stage_order": row["stage_order"], "stage": row["stage"], "accounts": 0, "held": 0},
        )
        entry["accounts"] += row["accounts"]
        entry["held"] += row["held_accounts"]
    return [funnel[key] for key in sorted(funnel)]


def _aging(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[dict[str, Any]]:
    buckets = ", ".join(f"sum({name}) as {name}" for name, _ in AGING_BUCKETS)
    result = connection.execute(
        f"""
        select
            currency,
            count(*) as accounts,
            {buckets},
            sum(total_open) as total_open,
            sum(disputed_amount) as disputed_amount,
            sum(collectible_amount) as collectible_amount
        from marts.fct_account_aging
        where as_of_date = ?
        group by currency
        order by currency
        """,
        [as_of],
    )
    names = [column[0] for column in result.description]
    report = []
    for row in result.fetchall():
        values = dict(zip(names, row, strict=True))
        report.append(
            {
                "currency": values["currency"],
                "accounts": values["accounts"],
                "buckets": {name: money_text(values[name]) for name, _ in AGING_BUCKETS},
                "total_open": money_text(values["total_open"]),
                "disputed_amount": money_text(values["disputed_amount"]),
                "collectible_amount": money_text(values["collectible_amount"]),
            }
        )
    return report


def _holds(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[dict[str, Any]]:
    # hold_reason is a sorted, comma-separated list: an account held for two reasons counts
    # under each of them
    rows = connection.execute(
        """
        with held as (
            select
                currency,
                collectible_amount,
                unnest(string_split(coalesce(nullif(hold_reason, ''), 'unspecified'), ','))
                    as reason
            from marts.fct_account_stage_history
            where as_of_date = ? and is_held
        )
        select trim(reason) as reason, currency, count(*), sum(collectible_amount)
        from held
        group by all
        order by reason, currency
        """,
        [as_of],
    ).fetchall()
    holds: dict[str, dict[str, Any]] = {}
    for reason, currency, accounts, collectible in rows:
        entry = holds.setdefault(reason, {"reason": reason, "accounts": 0, "amounts": []})
        entry["accounts"] += accounts
        entry["amounts"].append(
            {
                "currency": currency,
                "accounts": accounts,
                "collectible_amount": money_text(collectible),
            }
        )
    return sorted(holds.values(), key=lambda entry: (-entry["accounts"], entry["reason"]))


def _contacts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    contacts = [
        {
            "channel": str(row.get("channel")),
            "status": str(row.get("status")),
            "outcome": CONTACT_OUTCOME.get(str(row.get("status")), "other"),
            "reason": row.get("reason") or None,
            "count": int(row.get("count") or 0),
        }
        for row in rows
    ]

    def order(row: Mapping[str, Any]) -> tuple[Any, ...]:
        outcome = row["outcome"]
        rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else len(OUTCOME_ORDER)
        return (row["channel"], rank, -row["count"], row["status"], row["reason"] or "")

    return sorted(contacts, key=order)


def _plan_by_stage(
    rows: Sequence[Mapping[str, Any]], funnel: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The judged plan per stage and channel (what the planner decided before sending), in
    ladder order where the warehouse knows the stage."""
    ladder = {row["stage"]: row["stage_order"] for row in funnel}
    plan = [
        {
            "stage": str(row.get("stage")),
            "channel": str(row.get("channel")),
            "status": str(row.get("status")),
            "outcome": CONTACT_OUTCOME.get(str(row.get("status")), "other"),
            "reason": row.get("reason") or None,
            "count": int(row.get("count") or 0),
        }
        for row in rows
    ]
    return sorted(
        plan,
        key=lambda row: (
            ladder.get(row["stage"], len(ladder) + 1),
            row["stage"],
            row["channel"],
            row["status"] != "planned",
            row["status"],
            row["reason"] or "",
        ),
    )


def _contacts_by_channel(contacts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    channels: dict[str, dict[str, Any]] = {}
    for row in contacts:
        entry = channels.setdefault(
            row["channel"],
            {"channel": row["channel"], **{outcome: 0 for outcome in OUTCOME_ORDER}, "other": 0},
        )
        entry[row["outcome"] if row["outcome"] in entry else "other"] += row["count"]
    return [channels[name] for name in sorted(channels)]


def _agencies(placements: object) -> dict[str, Any] | None:
    """What the agency step did: new placements per agency, recalls per reason and the
    candidates left unplaced per reason; None when the step did not run."""
    if not isinstance(placements, Mapping):
        return None

    def rows(key: str, name: str) -> list[dict[str, Any]]:
        counts = placements.get(key) or {}
        return [{name: str(k), "count": int(v)} for k, v in sorted(counts.items())]

    return {
        "placed": rows("placed", "agency"),
        "recalled": rows("recalled", "reason"),
        "not_placed": rows("not_placed", "reason"),
    }


def _servicing(servicing: object) -> dict[str, Any] | None:
    """The servicing queues after the run: refunds due (count, amount per currency) and
    payment discrepancies per reason; None when the step did not run."""
    if not isinstance(servicing, Mapping):
        return None
    return {
        "refunds": int(servicing.get("refunds") or 0),
        "refund_amounts": [
            {"currency": str(currency), "amount": str(amount)}
            for currency, amount in sorted((servicing.get("refund_amounts") or {}).items())
        ],
        "discrepancies": [
            {"reason": str(reason), "count": int(count)}
            for reason, count in sorted((servicing.get("discrepancies") or {}).items())
        ],
    }


def _skip_tracing(skip_tracing: object) -> dict[str, Any] | None:
    """The skip-trace step: candidates per reason, requests made and waiting; None when the
    step did not run."""
    if not isinstance(skip_tracing, Mapping):
        return None
    return {
        "candidates": int(skip_tracing.get("candidates") or 0),
        "reasons": [
            {"reason": str(reason), "count": int(count)}
            for reason, count in sorted((skip_tracing.get("reasons") or {}).items())
        ],
        **{
            key: int(skip_tracing.get(key) or 0)
            for key in ("waiting", "new_requests", "requested", "expired", "open_requests")
        },
        "dry_run": bool(skip_tracing.get("dry_run")),
    }


def _scope(scope: object) -> dict[str, Any]:
    if not isinstance(scope, Mapping):
        return {"segment": None, "accounts": None}
    accounts = scope.get("accounts")
    return {
        "segment": scope.get("segment"),
        # the flow may pass the account list itself: the report keeps how many, not who
        "accounts": len(accounts) if isinstance(accounts, list | tuple) else accounts,
    }


def _duration(started: object, finished: object) -> float | None:
    try:
        start = dt.datetime.fromisoformat(str(started))
        end = dt.datetime.fromisoformat(str(finished))
    except ValueError:
        return None
    return round((end - start).total_seconds(), 1)


# --- rendering ------------------------------------------------------------------------------


def count_text(value: object) -> str:
    """A count with thousands separators; an empty cell for None."""
    return "" if value is None else f"{int(value):,}"  # type: ignore[call-overload]


def percent_text(value: object) -> str:
    """A percentage with one decimal ("87.5 %"), or "n/a" for None."""
    return "n/a" if value is None else f"{float(value):,.1f} %"  # type: ignore[arg-type]


def build_report_environment(root: Path = REPORT_TEMPLATES_DIR) -> jinja2.Environment:
    """The Jinja environment of the reports: like the contact templates' (strict, HTML
    autoescaped by the `.html.j2` suffix), with number filters instead of locale-bound ones."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False
        ),
    )
    env.filters["amount"] = amount_text
    env.filters["count"] = count_text
    env.filters["percent"] = percent_text
    env.filters["label"] = stage_label
    env.filters["outcome"] = lambda outcome: OUTCOME_LABELS.get(outcome, outcome)
    return env


@functools.cache
def report_environment() -> jinja2.Environment:
    """The one environment on `report_templates/`."""
    return build_report_environment()


def render_run_report_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page with its charts inline."""
    warehouse = report["warehouse"]
    as_of = report["run"]["as_of"]
    charts = {
        "funnel": stage_funnel_figure(warehouse["funnel"], as_of),
        "aging": aging_distribution_figure(warehouse["aging"], as_of),
    }
    svgs = {
        name: None if figure is None else markupsafe.Markup(svg_of(figure, f"run-{name}"))
        for name, figure in charts.items()
    }
    slowest = max((step["seconds"] for step in report["steps"]), default=0) or 1
    return (
        report_environment()
        .get_template(RUN_REPORT_TEMPLATE)
        .render(
            report=report,
            run=report["run"],
            warehouse=warehouse,
            charts=svgs,
            slowest_step=slowest,
            currencies=sorted({row["currency"] for row in warehouse["stages"]}),
            stage_amounts=_stage_amounts(warehouse["stages"]),
            aging_buckets=AGING_BUCKETS,
        )
    )


def _stage_amounts(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage: accounts, held and the collectible amount per currency."""
    table: dict[tuple[int, str], dict[str, Any]] = {}
    for row in stages:
        entry = table.setdefault(
            (row["stage_order"], row["stage"]),
            {"stage": row["stage"], "accounts": 0, "held": 0, "amounts": {}},
        )
        entry["accounts"] += row["accounts"]
        entry["held"] += row["held_accounts"]
        entry["amounts"][row["currency"]] = row["collectible_amount"]
    return [table[key] for key in sorted(table)]


def run_report_markdown(report: Mapping[str, Any]) -> str:
    """A compact markdown version for the Prefect artifact: the run, its steps, gates and
    contacts, and the accounts per stage with their collectible amount per currency."""
    sections = [
        _md_header(report["run"]),
        _md_steps(report),
        _md_contacts(report),
        _md_agencies(report.get("agencies")),
        _md_servicing(report.get("servicing")),
        _md_skip_tracing(report.get("skip_tracing")),
        _md_warehouse(report["warehouse"]),
    ]
    if report["not_built_yet"]:
        sections.append("Not built yet: " + ", ".join(_md(s) for s in report["not_built_yet"]))
    return "\n\n".join(section for section in sections if section) + "\n"


def _md_header(run: Mapping[str, Any]) -> str:
    mode = "dry run" if run["dry_run"] else "live run"
    took = f" · {run['seconds']:,.1f} s" if run["seconds"] is not None else ""
    lines = [
        f"# {_md(run['flow'])} for {run['as_of']}: {_md(run['status'])}",
        "",
        f"Run `{_md(run['run_id'][:8])}` · {mode}{took}",
    ]
    if run["status"] != "succeeded":
        lines += ["", f"**Failed step:** {_md(run['failed_step'] or 'unknown')}"]
        if run["error"]:
            lines += ["", f"**Error:** {_md(str(run['error']).splitlines()[0])}"]
    return "\n".join(lines)


def _md_steps(report: Mapping[str, Any]) -> str:
    lines: list[str] = []
    if report["steps"]:
        lines += ["| step | status | seconds |", "|---|---|---:|"]
        lines += [
            f"| {_md(step['step'])} | {_md(step['status'])} | {step['seconds']:.1f} |"
            for step in report["steps"]
        ]
    if report["batches"]:
        loaded = sum(batch["rows_loaded"] for batch in report["batches"])
        quarantined = sum(batch["rows_quarantined"] for batch in report["batches"])
        lines += [
            "",
            f"**Batches:** {len(report['batches'])} folder(s), {loaded:,} rows loaded, "
            f"{quarantined:,} quarantined",
        ]
    if report["gates"]:
        lines += ["", f"**Gates:** {len(report['gates'])} checks, {report['gates_failed']} failing"]
        lines += [
            f"- FAILED {_md(gate['gate'])} {_md(gate['check'])}: {gate['violations']:,} rows"
            for gate in report["gates"]
            if not gate["passed"]
        ]
    return "\n".join(lines).strip()


def _md_contacts(report: Mapping[str, Any]) -> str:
    if not report["contacts_by_channel"]:
        return ""
    lines = ["| channel | went out | planned | held back | failed |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {_md(row['channel'])} | {row['went_out']:,} | {row['planned']:,} | "
        f"{row['held_back']:,} | {row['failed']:,} |"
        for row in report["contacts_by_channel"]
    ]
    held = [
        f"{_md(row['channel'])} {_md(row['status'])} ({_md(row['reason'] or 'no reason')}) "
        f"{row['count']:,}"
        for row in report["contacts"]
        if row["outcome"] in ("held_back", "failed")
    ]
    if held:
        lines += ["", "Held back or failed: " + "; ".join(held)]
    return "\n".join(lines)


def _md_agencies(agencies: Mapping[str, Any] | None) -> str:
    if agencies is None:
        return ""

    def listed(rows: Sequence[Mapping[str, Any]], key: str) -> str:
        return "; ".join(f"{_md(row[key])} {row['count']:,}" for row in rows) or "none"

    return (
        f"**Agencies:** placed {listed(agencies['placed'], 'agency')} · "
        f"recalled {listed(agencies['recalled'], 'reason')} · "
        f"not placed {listed(agencies['not_placed'], 'reason')}"
    )


def _md_servicing(servicing: Mapping[str, Any] | None) -> str:
    if servicing is None:
        return ""
    amounts = "; ".join(
        f"{_md(row['currency'])} {amount_text(row['amount'])}"
        for row in servicing["refund_amounts"]
    )
    reasons = "; ".join(
        f"{_md(row['reason'])} {row['count']:,}" for row in servicing["discrepancies"]
    )
    return (
        f"**Servicing:** refunds due {servicing['refunds']:,}"
        + (f" ({amounts})" if amounts else "")
        + f" · payment discrepancies {reasons or 'none'}"
    )


def _md_skip_tracing(skip_tracing: Mapping[str, Any] | None) -> str:
    if skip_tracing is None:
        return ""
    reasons = "; ".join(f"{_md(row['reason'])} {row['count']:,}" for row in skip_tracing["reasons"])
    made = "would request" if skip_tracing["dry_run"] else "new requests"
    return (
        f"**Skip tracing:** candidates {skip_tracing['candidates']:,}"
        + (f" ({reasons})" if reasons else "")
        + f" · {made} {skip_tracing['new_requests']:,}"
        + f" · waiting on an earlier request {skip_tracing['waiting']:,}"
        + f" · open {skip_tracing['open_requests']:,} · expired {skip_tracing['expired']:,}"
    )


def _md_warehouse(warehouse: Mapping[str, Any]) -> str:
    if not warehouse["available"]:
        return f"_{_md(warehouse['note'])}_"
    currencies = sorted({row["currency"] for row in warehouse["stages"]})
    lines = [
        "| stage | accounts | held | "
        + " | ".join(f"collectible {_md(currency)}" for currency in currencies)
        + " |",
        "|---|---:|---:|" + "---:|" * len(currencies),
    ]
    for row in _stage_amounts(warehouse["stages"]):
        amounts = " | ".join(
            amount_text(row["amounts"][currency]) if currency in row["amounts"] else ""
            for currency in currencies
        )
        lines.append(f"| {_md(row['stage'])} | {row['accounts']:,} | {row['held']:,} | {amounts} |")
    if warehouse["holds"]:
        holds = ", ".join(
            f"{_md(hold['reason'])} {hold['accounts']:,}" for hold in warehouse["holds"]
        )
        lines += ["", f"**Holds:** {holds}"]
    return "\n".join(lines)


def _md(text: object) -> str:
    """Text safe in a markdown table cell: no pipes, no HTML, one line."""
    value = " ".join(str(text).split())
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def write_run_report(report: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write `run_<run id[:8]>.json` and `.html` into `folder` (atomically, owner-only)."""
    stem = f"run_{report['run']['run_id'][:8]}"
    data = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    html = render_run_report_html(report)  # before writing anything: both files or neither
    return [
        write_atomically(folder / f"{stem}.json", data.encode("utf-8")),
        write_atomically(folder / f"{stem}.html", html.encode("utf-8")),
    ]
