"""The monthly report: how collections went over one calendar month, as HTML and PDF.

`build_monthly_report(connection, month)` reads the marts for the month ("YYYY-MM") into a
JSON-ready dict (money as two-decimal strings beside their currency, never added across
currencies). Each section says what it covers, and plainly when the warehouse has nothing
for the month or does not have the data yet (and which issue brings it):

- aging trend: total open per days-past-due bucket on each run date of the month, per
  currency (`marts.fct_account_aging`, one row per account per run date);
- roll rates and cure rates by stage (`marts.fct_roll_rates`, `marts.fct_stage_cure_rates`)
  and DSO, CEI and the promise-kept rate (`marts.fct_collection_kpis`): these marts hold only
  the latest run's trailing period, so they show the month only when its latest run is in it;
- disputes and their outcomes (`marts.fct_disputes`) and payment plans and promises
  (`marts.fct_payment_plans`), both as of the latest run, with the currency from
  `marts.dim_accounts`;
- collections by channel: contacts per channel and status (`marts.fct_contact_log`) and what
  the accounts contacted paid in the 30 days after (`staging.stg_billing__payments`: the marts
  have no payment fact);
- agency performance: each agency's placement cohorts up to the month end (placed, collected,
  commission, net recovery rate), as the latest run sees them (`marts.fct_agency_performance`);
- negotiation: the month's offers and what became of them (`marts.fct_offer_outcomes`), the
  settlements agreed in it and what they recovered (`marts.fct_settlement_recovery_by_month`)
  and the plans made in it by length (`marts.fct_plan_performance`), as of the latest run.

`monthly_report_sections(report)` turns that dict into what both templates show: per
section a title, notes, a chart and tables of formatted strings. The charts are drawn by
`flows.lib.report_charts` (matplotlib, as SVG); `monthly_report_charts` picks them for a
report. The HTML comes from `report_templates/monthly_report.html.j2` (autoescaped), the PDF
from `report_templates/monthly_report.typ`, which gets the sections as JSON through
`sys.inputs` (text is never parsed as markup) and the charts as SVG bytes. DejaVu fonts only,
and the creation date is the end of the month, so the same data gives the same PDF bytes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import json
import re
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import markupsafe
import typst

from flows.lib.letters import FONTS_DIR
from flows.lib.output_files import write_atomically
from flows.lib.report_charts import (
    aging_trend_figure,
    channel_figure,
    cure_rate_figure,
    kpi_figure,
    roll_rate_figure,
    svg_of,
)
from flows.lib.report_formats import (
    AGING_BUCKETS,
    ROLL_BUCKETS,
    amount_text,
    short_date,
)
from flows.lib.run_report import (
    REPORT_TEMPLATES_DIR,
    mart_exists,
    money_text,
    report_environment,
)

REPORT_VERSION = 1
HTML_TEMPLATE = "monthly_report.html.j2"
PDF_TEMPLATE = "monthly_report.typ"
PAID_WINDOW_DAYS = 30
CHART_KEYS = ("aging_trend", "roll_rates", "cure_rates", "kpis", "collections")
NEGOTIATION_TITLE = "Negotiation: offers, settlements and plans"
_MONTH = re.compile(r"(\d{4})-(\d{2})")

# A typst.Compiler serves one compilation at a time.
_COMPILE_LOCK = threading.Lock()


class MonthlyReportError(RuntimeError):
    """The PDF template did not compile; the message gives Typst's words."""


# --- the month ------------------------------------------------------------------------------


def parse_month(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of "YYYY-MM"; ValueError for anything else."""
    match = _MONTH.fullmatch(month.strip()) if isinstance(month, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(
            f"month {month!r} is not a month: use YYYY-MM, for example 2026-11 for November 2026"
        )
    year, number = int(match.group(1)), int(match.group(2))
    return dt.date(year, number, 1), dt.date(year, number, calendar.monthrange(year, number)[1])


def previous_month(today: dt.date) -> str:
    """The calendar month before `today`'s, as YYYY-MM."""
    last_of_previous = today.replace(day=1) - dt.timedelta(days=1)
    return f"{last_of_previous:%Y-%m}"


# --- building the report --------------------------------------------------------------------


def build_monthly_report(
    connection: duckdb.DuckDBPyConnection, month: str, *, company: str | None = None
) -> dict[str, Any]:
    """The month's report as a JSON-ready dict, one key per section."""
    first, last = parse_month(month)
    month = f"{first:%Y-%m}"
    latest = _latest_run_date(connection)
    return {
        "report_version": REPORT_VERSION,
        "month": month,
        "month_name": f"{calendar.month_name[first.month]} {first.year}",
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "company": company,
        "latest_run_date": latest,
        "aging_trend": _aging_trend(connection, first, last),
        "roll_rates": _roll_rates(connection, first, last),
        "cure_rates": _cure_rates(connection, first, last),
        "kpis": _kpis(connection, first, last),
        "disputes": _disputes(connection, first, last),
        "payment_plans": _payment_plans(connection, first, last),
        "collections": _collections(connection, first, last),
        "agency": _agency(connection, first, last),
        "servicing": _servicing(connection, first, last),
        "skip_tracing": _skip_tracing(connection, first, last),
        "negotiation": _negotiation(connection, first, last),
    }


def _latest_run_date(connection: duckdb.DuckDBPyConnection) -> str | None:
    if not mart_exists(connection, "fct_account_aging"):
        return None
    return _iso(_one(connection, "select max(as_of_date) from marts.fct_account_aging"))


def _aging_trend(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    if not mart_exists(connection, "fct_account_aging"):
        return _missing("marts.fct_account_aging")
    buckets = ", ".join(f"sum({name}) as {name}" for name, _ in AGING_BUCKETS)
    result = connection.execute(
        f"""
        select currency, as_of_date, count(*) as accounts, {buckets}, sum(total_open) as total_open
        from marts.fct_account_aging
        where as_of_date between ? and ?
        group by currency, as_of_date
        order by currency, as_of_date
        """,
        [first, last],
    )
    names = [column[0] for column in result.description]
    currencies: dict[str, list[dict[str, Any]]] = {}
    for row in result.fetchall():
        values = dict(zip(names, row, strict=True))
        currencies.setdefault(values["currency"], []).append(
            {
                "as_of_date": values["as_of_date"].isoformat(),
                "accounts": values["accounts"],
                "buckets": {name: money_text(values[name]) for name, _ in AGING_BUCKETS},
                "total_open": money_text(values["total_open"]),
            }
        )
    run_dates = sorted({point["as_of_date"] for points in currencies.values() for point in points})
    if not run_dates:
        return _empty(f"No run in {first:%Y-%m}: {_runs_held(connection)}")
    return {
        "available": True,
        "note": None,
        "run_dates": run_dates,
        "currencies": [
            {"currency": currency, "points": points} for currency, points in currencies.items()
        ],
    }


def _runs_held(connection: duckdb.DuckDBPyConnection) -> str:
    rows = connection.execute(
        "select min(as_of_date), max(as_of_date), count(distinct as_of_date) "
        "from marts.fct_account_aging"
    ).fetchall()
    earliest, latest, runs = rows[0]
    if not runs:
        return "marts.fct_account_aging holds no run yet."
    return (
        f"marts.fct_account_aging holds {runs} run date{'s' if runs != 1 else ''}, "
        f"from {earliest} to {latest}."
    )


def _roll_rates(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    if not mart_exists(connection, "fct_roll_rates"):
        return _missing("marts.fct_roll_rates")
    rows = connection.execute(
        """
        select as_of_date, from_date, currency, from_bucket, to_bucket, accounts, from_balance
        from marts.fct_roll_rates
        -- the latest period in the month (the mart keeps only the latest run's)
        where as_of_date = (
            select max(as_of_date) from marts.fct_roll_rates where as_of_date between ? and ?
        )
        order by currency, from_bucket, to_bucket
        """,
        [first, last],
    ).fetchall()
    if not rows:
        return _empty(_latest_only_note(connection, "fct_roll_rates", first))
    return {
        "available": True,
        "note": None,
        "as_of_date": rows[0][0].isoformat(),
        "from_date": rows[0][1].isoformat(),
        "cells": [
            {
                "currency": currency,
                "from_bucket": from_bucket,
                "to_bucket": to_bucket,
                "accounts": accounts,
                "from_balance": money_text(balance),
            }
            for _, _, currency, from_bucket, to_bucket, accounts, balance in rows
        ],
    }


def _cure_rates(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    if not mart_exists(connection, "fct_stage_cure_rates"):
        return _missing("marts.fct_stage_cure_rates")
    rows = connection.execute(
        """
        select as_of_date, from_date, currency, stage_order, stage, accounts, cured
        from marts.fct_stage_cure_rates
        where as_of_date = (
            select max(as_of_date) from marts.fct_stage_cure_rates
            where as_of_date between ? and ?
        )
        order by stage_order, stage, currency
        """,
        [first, last],
    ).fetchall()
    if not rows:
        return _empty(_latest_only_note(connection, "fct_stage_cure_rates", first))
    return {
        "available": True,
        "note": None,
        "as_of_date": rows[0][0].isoformat(),
        "from_date": rows[0][1].isoformat(),
        "rows": [
            {
                "currency": currency,
                "stage_order": stage_order,
                "stage": stage,
                "accounts": accounts,
                "cured": cured,
            }
            for _, _, currency, stage_order, stage, accounts, cured in rows
        ],
    }


def _kpis(connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> dict[str, Any]:
    if not mart_exists(connection, "fct_collection_kpis"):
        return _missing("marts.fct_collection_kpis")
    result = connection.execute(
        """
        select
            as_of_date,
            currency,
            period_days,
            dso_days,
            best_possible_dso_days,
            average_days_delinquent,
            collection_effectiveness_index,
            promises_kept,
            promises_broken,
            promise_kept_rate
        from marts.fct_collection_kpis
        where as_of_date between ? and ?
        order by currency, as_of_date
        """,
        [first, last],
    )
    names = [column[0] for column in result.description]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    if not rows:
        return _empty(_latest_only_note(connection, "fct_collection_kpis", first))
    for row in rows:
        row["as_of_date"] = row["as_of_date"].isoformat()
        for name in names[3:]:
            if row[name] is not None and not isinstance(row[name], int):
                row[name] = round(float(row[name]), 1)
    return {
        "available": True,
        "note": None,
        "dates": sorted({row["as_of_date"] for row in rows}),
        "rows": rows,
    }


def _latest_only_note(connection: duckdb.DuckDBPyConnection, mart: str, first: dt.date) -> str:
    """Why a latest-run mart has nothing for the month."""
    dates = [
        row[0]
        for row in connection.execute(f"select distinct as_of_date from marts.{mart}").fetchall()
    ]
    if not dates:
        return (
            f"marts.{mart} is empty: it compares the latest run with a run at least the KPI "
            "period (kpi_period_days, 30 days by default) earlier, and the warehouse has no "
            "such pair of runs yet."
        )
    held = ", ".join(sorted(str(day) for day in dates))
    return (
        f"marts.{mart} holds only the latest run's period (as of {held}), which is not in "
        f"{first:%Y-%m}; the warehouse keeps no history of it, so this month cannot be shown."
    )


def _disputes(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    missing = [
        name for name in ("fct_disputes", "dim_accounts") if not mart_exists(connection, name)
    ]
    if missing:
        return _missing(", ".join(f"marts.{name}" for name in missing))
    as_of = _one(connection, "select max(as_of_date) from marts.fct_disputes")
    if as_of is None:
        return _empty("marts.fct_disputes holds no dispute.")
    if as_of < first:
        return _empty(
            f"The latest run ({as_of}) is before {first:%Y-%m}: no dispute facts for the month."
        )
    # the status at the month end: a resolution dated after it still counts as open then
    rows = connection.execute(
        """
        with disputes as (
            select
                disputes.dispute_id,
                -- a dispute without an amount covers its whole invoice; one of the whole
                -- account balance has no amount to add here and is counted apart
                coalesce(disputes.disputed_amount, invoices.amount) as disputed_amount,
                disputes.disputed_amount is null and disputes.invoice_id is null
                    as is_whole_balance,
                disputes.opened_date,
                disputes.resolved_date,
                accounts.currency,
                case
                    when disputes.resolved_date <= $last then disputes.dispute_status
                    else 'open'
                end as status_at_month_end
            from marts.fct_disputes as disputes
            inner join marts.dim_accounts as accounts
                on disputes.account_id = accounts.account_id
            left join staging.stg_billing__invoices as invoices
                on disputes.invoice_id = invoices.invoice_id
            where disputes.opened_date <= $last
        )
        select
            currency,
            status_at_month_end,
            count(*) filter (where opened_date >= $first) as opened,
            count(*) filter (where resolved_date between $first and $last) as resolved,
            count(*) filter (where status_at_month_end = 'open') as open_at_month_end,
            sum(disputed_amount) filter (where opened_date >= $first) as opened_amount,
            sum(disputed_amount) filter (where status_at_month_end = 'open') as open_amount,
            avg(resolved_date - opened_date)
                filter (where resolved_date between $first and $last) as days_to_resolve,
            count(*) filter (where is_whole_balance and status_at_month_end = 'open')
                as whole_balance_open
        from disputes
        group by all
        order by currency, status_at_month_end
        """,
        {"first": first, "last": last},
    ).fetchall()
    names = (
        "currency", "status", "opened", "resolved", "open_at_month_end", "opened_amount",
        "open_amount", "days_to_resolve", "whole_balance_open",
    )  # fmt: skip
    table = []
    for values in rows:
        row = dict(zip(names, values, strict=True))
        if not (row["opened"] or row["resolved"] or row["open_at_month_end"]):
            continue
        row["opened_amount"] = money_text(row["opened_amount"])
        row["open_amount"] = money_text(row["open_amount"])
        days = row["days_to_resolve"]
        row["days_to_resolve"] = None if days is None else round(float(days), 1)
        table.append(row)
    return {
        "available": bool(table),
        "note": None if table else f"No dispute was opened, resolved or open in {first:%Y-%m}.",
        "as_of_date": as_of.isoformat(),
        "rows": table,
    }


def _payment_plans(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    missing = [
        name for name in ("fct_payment_plans", "dim_accounts") if not mart_exists(connection, name)
    ]
    if missing:
        return _missing(", ".join(f"marts.{name}" for name in missing))
    as_of = _one(connection, "select max(as_of_date) from marts.fct_payment_plans")
    if as_of is None:
        return _empty("marts.fct_payment_plans holds no plan or promise.")
    if as_of < first:
        return _empty(
            f"The latest run ({as_of}) is before {first:%Y-%m}: no plan facts for the month."
        )
    result = connection.execute(
        """
        select
            accounts.currency,
            plans.plan_kind,
            count(*) filter (where plans.created_date between $first and $last) as created,
            count(*) filter (
                where plans.created_date between $first and $last and plans.plan_status = 'kept'
            ) as kept,
            count(*) filter (
                where plans.created_date between $first and $last and plans.plan_status = 'broken'
            ) as broken,
            count(*) filter (
                where plans.created_date between $first and $last and plans.plan_status = 'active'
            ) as active,
            count(*) filter (where plans.broken_on between $first and $last) as broken_in_month,
            count(*) filter (where plans.cancelled_date between $first and $last)
                as cancelled_in_month,
            sum(plans.total_amount) filter (where plans.created_date between $first and $last)
                as promised_amount,
            sum(plans.paid_amount) filter (where plans.created_date between $first and $last)
                as paid_amount
        from marts.fct_payment_plans as plans
        inner join marts.dim_accounts as accounts
            on plans.account_id = accounts.account_id
        group by all
        order by accounts.currency, plans.plan_kind
        """,
        {"first": first, "last": last},
    )
    names = [column[0] for column in result.description]
    table = []
    for row in result.fetchall():
        values = dict(zip(names, row, strict=True))
        if values["created"] or values["broken_in_month"] or values["cancelled_in_month"]:
            values["promised_amount"] = money_text(values["promised_amount"])
            values["paid_amount"] = money_text(values["paid_amount"])
            table.append(values)
    return {
        "available": bool(table),
        "note": None
        if table
        else f"No plan or promise was made, broken or cancelled in {first:%Y-%m}.",
        "as_of_date": as_of.isoformat(),
        "rows": table,
    }


def _collections(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    if not mart_exists(connection, "fct_contact_log"):
        return _missing("marts.fct_contact_log")
    statuses = connection.execute(
        """
        select channel, status, count(*) as contacts
        from marts.fct_contact_log
        where as_of_date between ? and ?
        group by all
        order by channel, status
        """,
        [first, last],
    ).fetchall()
    if not statuses:
        return _empty(f"marts.fct_contact_log has no contact planned by a run in {first:%Y-%m}.")
    paid: list[dict[str, Any]] = []
    paid_note = None
    payments_through = None
    if _relation_exists(connection, "staging", "stg_billing__payments"):
        paid = _paid_after_contact(connection, first, last)
        payments_through = _iso(
            _one(connection, "select max(received_date) from staging.stg_billing__payments")
        )
    else:
        paid_note = "staging.stg_billing__payments is missing: payments after contact not shown."
    data_through = _facts_through(connection)
    return {
        "available": True,
        "note": paid_note,
        "data_through": data_through,
        "payments_through": payments_through,
        "statuses": [
            {"channel": channel, "status": status, "contacts": contacts}
            for channel, status, contacts in statuses
        ],
        "paid_after_contact": paid,
    }


def _paid_after_contact(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> list[dict[str, Any]]:
    """Per channel and currency: the accounts that a contact reached in the month, and the
    payments they made in the PAID_WINDOW_DAYS days after their first such contact."""
    rows = connection.execute(
        f"""
        with contacted as (
            select channel, account_id, currency, min(as_of_date) as contacted_on
            from marts.fct_contact_log
            where is_contacted and as_of_date between $first and $last
            group by all
        ),

        payments as (
            select
                account_id,
                received_date,
                -- a reversal undoes its payment
                case when is_reversal then -amount else amount end as amount
            from staging.stg_billing__payments
        ),

        paid_per_account as (
            select
                contacted.channel,
                contacted.currency,
                contacted.account_id,
                contacted.contacted_on,
                coalesce(sum(payments.amount), 0) as paid
            from contacted
            left join payments
                on contacted.account_id = payments.account_id
                and payments.received_date > contacted.contacted_on
                and payments.received_date <= contacted.contacted_on + {PAID_WINDOW_DAYS}
            group by all
        )

        select
            channel,
            currency,
            count(*) as accounts,
            count(*) filter (where paid > 0) as accounts_paid,
            sum(paid) as paid_amount,
            count(*) filter (
                where contacted_on + {PAID_WINDOW_DAYS} > $through
            ) as windows_open
        from paid_per_account
        group by all
        order by channel, currency
        """,
        {
            "first": first,
            "last": last,
            "through": dt.date.fromisoformat(_facts_through(connection)),
        },
    ).fetchall()
    return [
        {
            "channel": channel,
            "currency": currency,
            "accounts": accounts,
            "accounts_paid": accounts_paid,
            "paid_amount": money_text(paid),
            "windows_open": windows_open,
        }
        for channel, currency, accounts, accounts_paid, paid, windows_open in rows
    ]


def _facts_through(connection: duckdb.DuckDBPyConnection) -> str:
    """The latest run date: what the warehouse knows ends there, so a payment window that
    runs past it is not over yet."""
    latest = _latest_run_date(connection)
    contacts = _iso(_one(connection, "select max(as_of_date) from marts.fct_contact_log"))
    return max(day for day in (latest, contacts) if day is not None)


def _agency(connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> dict[str, Any]:
    """Each agency's placement cohorts up to the month end, as the latest run sees them:
    placed, collected, commission and net recovery rate (marts.fct_agency_performance)."""
    if not mart_exists(connection, "fct_agency_performance"):
        return _missing("marts.fct_agency_performance")
    as_of = _one(connection, "select max(as_of_date) from marts.fct_agency_performance")
    rows = connection.execute(
        """
        select
            agency_id, placement_month, currency, accounts_placed, placed_balance,
            collected_amount, commission_amount, net_recovered, net_recovery_rate,
            accounts_recalled
        from marts.fct_agency_performance
        where placement_month <= ?
        order by agency_id, placement_month, currency
        """,
        [f"{last:%Y-%m}"],
    ).fetchall()
    if not rows:
        return _empty(f"No account was placed with an agency by the end of {first:%Y-%m}.")
    keys = (
        "agency_id", "placement_month", "currency", "accounts_placed", "placed_balance",
        "collected_amount", "commission_amount", "net_recovered", "net_recovery_rate",
        "accounts_recalled",
    )  # fmt: skip
    return {
        "available": True,
        "as_of_date": _iso(as_of),
        "rows": [
            {
                key: str(value) if isinstance(value, Decimal) else value
                for key, value in zip(keys, row, strict=True)
            }
            for row in rows
        ],
    }


def _servicing(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    """The refund and discrepancy queues as the latest run left them (the marts hold its date
    only), shown when that run is in the month."""
    names = ("fct_refund_queue", "fct_payment_discrepancies")
    missing = [name for name in names if not mart_exists(connection, name)]
    if missing:
        return _missing(", ".join(f"marts.{name}" for name in missing))
    latest = _latest_run_date(connection)
    if latest is None or not first.isoformat() <= latest <= last.isoformat():
        return _empty(
            f"The servicing queues hold the latest run only ({latest or 'none yet'}), which is "
            f"not in {first:%Y-%m}."
        )
    refunds = connection.execute(
        "select currency, count(*), sum(amount) from marts.fct_refund_queue "
        "group by currency order by currency"
    ).fetchall()
    discrepancies = connection.execute(
        "select reason, count(*), max(age_days) from marts.fct_payment_discrepancies "
        "group by reason order by reason"
    ).fetchall()
    return {
        "available": True,
        "as_of_date": latest,
        "refunds": [
            {"currency": currency, "accounts": count, "amount": str(amount)}
            for currency, count, amount in refunds
        ],
        "discrepancies": [
            {"reason": reason, "items": count, "oldest_days": oldest}
            for reason, count, oldest in discrepancies
        ],
    }


def _skip_tracing(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    """The month's skip-trace requests (per reason, and where they stand now) and the queue
    the latest run left (marts.fct_skip_trace_requests holds every request up to its date)."""
    if not mart_exists(connection, "fct_skip_trace_requests"):
        return _missing("marts.fct_skip_trace_requests")
    month = [first, last]
    made = "from marts.fct_skip_trace_requests where requested_on between ? and ?"
    reasons = connection.execute(
        f"select reason, count(*) from (select unnest(string_split(reasons, ', ')) as reason "
        f"{made}) group by reason order by reason",
        month,
    ).fetchall()
    statuses = connection.execute(
        f"select request_status, count(*), median(age_days) {made} "
        "group by request_status order by request_status",
        month,
    ).fetchall()
    updated = connection.execute(
        f"select field_group, count(*) from (select unnest(string_split(fields_updated, ', ')) "
        f"as field_group {made} and fields_updated is not null) group by all order by all",
        month,
    ).fetchall()
    queue = connection.execute(
        "select max(as_of_date), count(*) filter (where is_open), "
        "max(age_days) filter (where is_open) from marts.fct_skip_trace_requests"
    ).fetchall()[0]
    requested = sum(count for _, count, _ in statuses)
    answered = sum(count for status, count, _ in statuses if status in ("found", "not_found"))
    found = sum(count for status, count, _ in statuses if status == "found")
    return {
        "available": True,
        "as_of_date": _iso(queue[0]),
        "requested": requested,
        "found_rate": (found / answered) if answered else None,
        "reasons": [{"reason": reason, "customers": count} for reason, count in reasons],
        "statuses": [
            {"status": status, "requests": count, "median_days": median}
            for status, count, median in statuses
        ],
        "updated": [{"field_group": group, "customers": count} for group, count in updated],
        "open_now": int(queue[1] or 0),
        "oldest_open_days": queue[2],
    }


# --- negotiation (issue 13) -----------------------------------------------------------------

NEGOTIATION_MARTS = (
    "fct_offer_outcomes",
    "fct_settlement_recovery_by_month",
    "fct_plan_performance",
)
OFFER_HEADER = (
    "kind", "segment", "accounts offered", "offers", "accounts accepted", "kept", "broken",
    "running", "lapsed", "acceptance rate", "kept rate",
)  # fmt: skip
SETTLEMENT_HEADER = (
    "currency", "settlements", "kept", "broken", "balance", "settled for", "paid", "forgiven",
    "written off", "recovery rate",
)  # fmt: skip
PLAN_LENGTH_HEADER = (
    "currency", "plan", "length", "started", "running", "kept", "broken", "cancelled",
    "kept rate", "scheduled", "paid", "share paid",
)  # fmt: skip


def _negotiation(
    connection: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[str, Any]:
    """The month's offers and what became of them, the settlements agreed in it and what
    they recovered, and the plans made in it by length, as of the latest run (the negotiation
    marts are rebuilt by every run for its date)."""
    missing = [name for name in NEGOTIATION_MARTS if not mart_exists(connection, name)]
    if missing:
        return _missing(", ".join(f"marts.{name}" for name in missing))
    # rebuilt together by every run: the latest date any of them holds is the run's
    dates = " union all ".join(f"select as_of_date from marts.{name}" for name in NEGOTIATION_MARTS)
    as_of = _one(connection, f"select max(as_of_date) from ({dates})")
    if as_of is None:
        return _empty("The negotiation marts hold no offer, settlement or plan yet.")
    if as_of < first:
        return _empty(
            f"The latest run ({as_of}) is before {first:%Y-%m}: no negotiation facts for the month."
        )
    month = [f"{first:%Y-%m}"]
    offers = _negotiation_rows(
        connection,
        """
        select
            offer_kind, segment, accounts_offered, offers_made, accounts_accepted,
            offers_accepted, offers_kept, offers_broken, offers_active, offers_cancelled,
            offers_lapsed, acceptance_rate, kept_rate
        from marts.fct_offer_outcomes
        where offer_month = ?
        order by offer_kind, segment nulls last
        """,
        month,
    )
    settlements = _negotiation_rows(
        connection,
        """
        select
            currency, settlements, settlements_kept, settlements_broken, settlements_active,
            settlements_cancelled, settlements_written_off, balance_at_agreement,
            settlement_amount, paid_amount, forgiven_amount, written_off_amount, recovery_rate
        from marts.fct_settlement_recovery_by_month
        where agreed_month = ?
        order by currency
        """,
        month,
    )
    plans = _negotiation_rows(
        connection,
        """
        select
            currency, plan_source, plan_kind, plan_length, plans_started, plans_active,
            plans_kept, plans_broken, plans_cancelled, kept_rate, scheduled_amount,
            paid_amount, share_paid
        from marts.fct_plan_performance
        where created_month = ?
        order by currency, plan_source, plan_kind, plan_length
        """,
        month,
    )
    found = bool(offers or settlements or plans)
    return {
        "available": found,
        "note": None if found else f"No offer, settlement or plan was made in {first:%Y-%m}.",
        "as_of_date": as_of.isoformat(),
        "offers": offers,
        "settlements": settlements,
        "plans": plans,
    }


def _negotiation_rows(
    connection: duckdb.DuckDBPyConnection, sql: str, parameters: list
) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: money as two-decimal strings, rates as floats (or None)."""
    result = connection.execute(sql, parameters)
    names = [column[0] for column in result.description]
    return [
        {
            name: money_text(value) if isinstance(value, Decimal) else value
            for name, value in zip(names, values, strict=True)
        }
        for values in result.fetchall()
    ]


def _accounts(count: int) -> str:
    return f"{count:,} account was" if count == 1 else f"{count:,} accounts were"


def _missing(names: str) -> dict[str, Any]:
    return _empty(
        f"The warehouse has no {names}: build it with `recoup run` (dbt builds the marts)."
    )


def _empty(note: str) -> dict[str, Any]:
    return {"available": False, "note": note}


def _relation_exists(connection: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        _one(
            connection,
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        )
    )


def _one(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> Any:
    rows = connection.execute(sql, parameters or []).fetchall()
    return rows[0][0] if rows else None


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


# --- charts ---------------------------------------------------------------------------------


def monthly_report_charts(report: Mapping[str, Any]) -> dict[str, str | None]:
    """Every chart of the report as SVG text (None where a section has no data)."""
    figures = {
        "aging_trend": aging_trend_figure(report["aging_trend"], report["month_name"]),
        "roll_rates": roll_rate_figure(report["roll_rates"]),
        "cure_rates": cure_rate_figure(report["cure_rates"]),
        "kpis": kpi_figure(report["kpis"]),
        "collections": channel_figure(report["collections"]),
    }
    return {
        name: None if figure is None else svg_of(figure, f"monthly-{name.replace('_', '-')}")
        for name, figure in figures.items()
    }


# --- what the templates show ----------------------------------------------------------------


def monthly_report_sections(
    report: Mapping[str, Any], charts: Mapping[str, str | None] | None = None
) -> list[dict[str, Any]]:
    """The sections both templates lay out: title, notes, chart (SVG or None) and tables of
    already formatted strings (header, rows, which columns are numbers)."""
    charts = charts if charts is not None else monthly_report_charts(report)
    builders = (
        ("aging_trend", "Aging trend", _aging_section),
        ("roll_rates", "Roll rates", _roll_section),
        ("cure_rates", "Cure rates by stage", _cure_section),
        ("kpis", "DSO, CEI and promise-kept rate", _kpi_section),
        ("disputes", "Disputes and their outcomes", _dispute_section),
        ("payment_plans", "Payment plans and promises", _plan_section),
        ("collections", "Collections by channel", _collection_section),
        ("agency", "Agency performance", _agency_section),
        ("servicing", "Refunds and payment discrepancies", _servicing_section),
        ("skip_tracing", "Skip tracing", _skip_tracing_section),
        ("negotiation", NEGOTIATION_TITLE, _negotiation_section),
    )
    sections = []
    for key, title, build in builders:
        data = report[key]
        notes, tables = build(report, data) if data.get("available") else ([], [])
        if data.get("note"):
            notes = [data["note"], *notes]
        sections.append(
            {
                "key": key,
                "title": title,
                "available": bool(data.get("available")),
                "notes": notes,
                "chart": charts.get(key),
                "tables": tables,
            }
        )
    return sections


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool], title: str = ""
) -> dict[str, Any]:
    return {
        "title": title,
        "header": list(header),
        "rows": [list(row) for row in rows],
        "numeric": list(numeric),
    }


def _count(value: Any) -> str:
    return f"{int(value):,}"


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def _number(value: Any, suffix: str = "") -> str:
    return "n/a" if value is None else f"{float(value):,.1f}{suffix}"


def _aging_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    dates = data["run_dates"]
    notes = [
        f"Total open per days-past-due bucket on each of the month's {len(dates)} run "
        f"date{'s' if len(dates) != 1 else ''} ({dates[0]} to {dates[-1]}), per currency, "
        "from marts.fct_account_aging. Amounts are never added across currencies."
    ]
    rows = []
    for entry in data["currencies"]:
        first, last = entry["points"][0], entry["points"][-1]
        change = Decimal(last["total_open"]) - Decimal(first["total_open"])
        past_due = Decimal(last["total_open"]) - Decimal(last["buckets"]["current"])
        over_90 = sum(
            Decimal(last["buckets"][name])
            for name in ("dpd_91_120", "dpd_121_150", "dpd_151_180", "dpd_181_plus")
        )
        total = Decimal(last["total_open"])
        rows.append(
            [
                entry["currency"],
                _count(last["accounts"]),
                amount_text(first["total_open"]),
                amount_text(last["total_open"]),
                ("+" if change > 0 else "") + amount_text(change),
                amount_text(past_due),
                _rate_decimal(over_90, total),
            ]
        )
    header = (
        "currency",
        "accounts (last run)",
        f"open on {short_date(dates[0])}",
        f"open on {short_date(dates[-1])}",
        "change",
        "past due (last run)",
        "share 90+ days",
    )
    return notes, [_table(header, rows, (False, *[True] * 6))]


def _rate_decimal(part: Decimal, whole: Decimal) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def _roll_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"From the run of {data['from_date']} to the run of {data['as_of_date']}: where the "
        "accounts of each delinquency bucket ended up (rows add up to 100 %). "
        "marts.fct_roll_rates keeps only the latest run's trailing period, so this is one "
        "period, not a trend over the month's runs.",
    ]
    rows = []
    per_currency: dict[str, dict[str, int]] = {}
    for cell in data["cells"]:
        entry = per_currency.setdefault(
            cell["currency"], {"accounts": 0, "worse": 0, "same": 0, "better": 0, "settled": 0}
        )
        entry["accounts"] += cell["accounts"]
        entry[_roll_direction(cell["from_bucket"], cell["to_bucket"])] += cell["accounts"]
    for currency, entry in sorted(per_currency.items()):
        whole = entry["accounts"]
        rows.append(
            [
                currency,
                _count(whole),
                _rate(entry["worse"], whole),
                _rate(entry["same"], whole),
                _rate(entry["better"], whole),
                _rate(entry["settled"], whole),
            ]
        )
    header = ("currency", "accounts at start", "rolled worse", "same bucket", "improved", "settled")
    return notes, [_table(header, rows, (False, *[True] * 5))]


def _roll_direction(start: str, end: str) -> str:
    if end in ("settled", "no_balance"):
        return "settled" if start not in ("settled", "no_balance") else "same"
    ladder = ROLL_BUCKETS[:8]
    if start not in ladder or end not in ladder:
        return "same" if start == end else "worse"
    before, after = ladder.index(start), ladder.index(end)
    return "worse" if after > before else "better" if after < before else "same"


def _cure_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"Of the accounts in each stage on {data['from_date']}, the share cured by "
        f"{data['as_of_date']}: settled, or back to stage none, not held and nothing past due "
        "(marts.fct_stage_cure_rates; latest run's period only)."
    ]
    rows = [
        [
            row["stage"].replace("_", " "),
            row["currency"],
            _count(row["accounts"]),
            _count(row["cured"]),
            _rate(row["cured"], row["accounts"]),
        ]
        for row in data["rows"]
    ]
    header = ("stage", "currency", "accounts", "cured", "cure rate")
    return notes, [_table(header, rows, (False, False, True, True, True))]


def _kpi_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    dates = data["dates"]
    period = data["rows"][0]["period_days"]
    covers = (
        f"the {len(dates)} run dates it holds in the month ({dates[0]} to {dates[-1]})"
        if len(dates) > 1
        else f"one run date, {dates[0]}: marts.fct_collection_kpis keeps only the latest run, "
        "so there is no trend over the month yet"
    )
    notes = [
        f"Each figure is over the trailing {period} days before its run date, per currency. "
        f"This covers {covers}. DSO: ending receivables / credit sales x days; CEI: share of "
        "what could be collected that was; promise-kept rate: kept / (kept + broken) plans "
        "and promises created in the period."
    ]
    if any(row["collection_effectiveness_index"] is None for row in data["rows"]):
        notes.append(
            "CEI is n/a where no run was on or before the start of the period: it needs the "
            "receivables at the start."
        )
    if any(row["promise_kept_rate"] is None for row in data["rows"]):
        notes.append(
            "The promise-kept rate is n/a where no plan or promise made in the period has been "
            "kept or broken yet."
        )
    rows = [
        [
            row["as_of_date"],
            row["currency"],
            _number(row["dso_days"]),
            _number(row["best_possible_dso_days"]),
            _number(row["average_days_delinquent"]),
            _number(row["collection_effectiveness_index"], " %"),
            _number(row["promise_kept_rate"], " %"),
            f"{row['promises_kept']:,} / {row['promises_broken']:,}",
        ]
        for row in data["rows"]
    ]
    header = (
        "run date",
        "currency",
        "DSO",
        "best DSO",
        "days delinquent",
        "CEI",
        "promise-kept rate",
        "kept / broken",
    )
    return notes, [_table(header, rows, (False, False, *[True] * 6))]


def _dispute_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"Disputes opened or resolved in {report['month']}, and those still open at its end, "
        f"by their status at the month end (marts.fct_disputes as of the run of "
        f"{data['as_of_date']}; a resolution dated after the month end counts as open). "
        "Amounts are the disputed amounts per currency; a dispute without an amount counts its "
        "whole invoice. Disputes of a whole account balance have no amount of their own: "
        + (
            ", ".join(
                f"{row['whole_balance_open']} open in {row['currency']}"
                for row in data["rows"]
                if row.get("whole_balance_open")
            )
            or "none open"
        )
        + "."
    ]
    rows = [
        [
            row["currency"],
            row["status"],
            _count(row["opened"]),
            amount_text(row["opened_amount"]),
            _count(row["resolved"]),
            _number(row["days_to_resolve"]) if row["resolved"] else "",
            _count(row["open_at_month_end"]),
            amount_text(row["open_amount"]) if row["open_at_month_end"] else "",
        ]
        for row in data["rows"]
    ]
    header = (
        "currency",
        "status at month end",
        "opened",
        "amount opened",
        "resolved",
        "days to resolve",
        "open at month end",
        "amount open",
    )
    return notes, [_table(header, rows, (False, False, *[True] * 6))]


def _plan_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"Plans and promises made in {report['month']}, with their status on the run of "
        f"{data['as_of_date']} (marts.fct_payment_plans), and those broken or cancelled in the "
        "month whenever they were made. The kept rate is kept / (kept + broken) of those "
        "made in the month. Plan performance by length is in the negotiation section."
    ]
    rows = [
        [
            row["currency"],
            row["plan_kind"].replace("_", " "),
            _count(row["created"]),
            _count(row["kept"]),
            _count(row["broken"]),
            _count(row["active"]),
            _rate(row["kept"], row["kept"] + row["broken"]),
            amount_text(row["promised_amount"]),
            amount_text(row["paid_amount"]),
            _count(row["broken_in_month"]),
        ]
        for row in data["rows"]
    ]
    header = (
        "currency",
        "kind",
        "made",
        "kept",
        "broken",
        "active",
        "kept rate",
        "promised",
        "paid so far",
        "broken in month",
    )
    return notes, [_table(header, rows, (False, False, *[True] * 8))]


def _collection_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"Contacts planned by the runs of {report['month']} (marts.fct_contact_log, by the run "
        "that last planned each contact), by channel and status."
    ]
    tables = [
        _table(
            ("channel", "status", "contacts"),
            [[row["channel"], row["status"], _count(row["contacts"])] for row in data["statuses"]],
            (False, False, True),
            title="Contacts by channel and status",
        )
    ]
    paid = data["paid_after_contact"]
    if paid:
        notes.append(
            f"Paid after contact: for the accounts a contact went out to in the month, the "
            f"payments (net of reversals) received in the {PAID_WINDOW_DAYS} days after their "
            "first contact through that channel, from staging.stg_billing__payments (the marts "
            "have no payment fact yet). It says what came in after a contact, not that the "
            "contact caused it; an account reached through two channels counts under both, so "
            f"channels do not add up. Windows that run past the last run "
            f"({data['data_through']}) are not over yet; the newest payment in the warehouse "
            f"is dated {data['payments_through'] or 'nowhere (no payment yet)'}."
        )
        tables.append(
            _table(
                (
                    "channel",
                    "currency",
                    "accounts contacted",
                    "accounts that paid",
                    "share",
                    "paid within 30 days",
                    "windows not over",
                ),
                [
                    [
                        row["channel"],
                        row["currency"],
                        _count(row["accounts"]),
                        _count(row["accounts_paid"]),
                        _rate(row["accounts_paid"], row["accounts"]),
                        amount_text(row["paid_amount"]),
                        _count(row["windows_open"]),
                    ]
                    for row in paid
                ],
                (False, False, True, True, True, True, True),
                title=f"Paid within {PAID_WINDOW_DAYS} days of a contact",
            )
        )
    elif not data.get("note"):
        notes.append("No contact went out in the month, so nothing was paid after one.")
    return notes, tables


def _servicing_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"The queues billing ops work, as the run of {data['as_of_date']} left them "
        "(out/servicing/ and marts.fct_refund_queue, marts.fct_payment_discrepancies)."
    ]
    tables = [
        _table(
            ("currency", "refunds due", "amount"),
            [
                [row["currency"], _count(row["accounts"]), amount_text(row["amount"])]
                for row in data["refunds"]
            ],
            (False, True, True),
            "Refund queue",
        ),
        _table(
            ("reason", "items", "oldest, days"),
            [
                [row["reason"].replace("_", " "), _count(row["items"]), _count(row["oldest_days"])]
                for row in data["discrepancies"]
            ],
            (False, True, True),
            "Payment discrepancies",
        ),
    ]
    return notes, [table for table in tables if table["rows"]]


def _skip_tracing_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    rate = data["found_rate"]
    notes = [
        f"{_count(data['requested'])} customers sent to skip tracing in the month"
        + (f"; the vendor found new contact details for {rate:.0%} of those answered" if rate
           is not None else "")
        + f". The queue the run of {data['as_of_date']} left: {_count(data['open_now'])} open"
        + (f", the oldest {data['oldest_open_days']} days" if data["oldest_open_days"] else "")
        + " (marts.fct_skip_trace_requests)."
    ]  # fmt: skip
    tables = [
        _table(
            ("reason", "customers"),
            [
                [row["reason"].replace("_", " "), _count(row["customers"])]
                for row in data["reasons"]
            ],
            (False, True),
            "Why they were requested (a customer can have several reasons)",
        ),
        _table(
            ("status now", "requests", "median days"),
            [
                [
                    row["status"].replace("_", " "),
                    _count(row["requests"]),
                    "" if row["median_days"] is None else f"{row['median_days']:.0f}",
                ]
                for row in data["statuses"]
            ],
            (False, True, True),
            "The month's requests",
        ),
        _table(
            ("details updated", "customers"),
            [[row["field_group"], _count(row["customers"])] for row in data["updated"]],
            (False, True),
            "What accepted results changed",
        ),
    ]
    return notes, [table for table in tables if table["rows"]]


def _agency_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    notes = [
        f"Each agency's placement cohorts up to {report['last_day']}, by placement month and "
        f"currency, as of the run of {data['as_of_date']} (marts.fct_agency_performance). "
        "Net recovery = (collected - commission) / placed."
    ]
    rows = [
        [
            row["agency_id"],
            row["placement_month"],
            row["currency"],
            _count(row["accounts_placed"]),
            amount_text(row["placed_balance"]),
            amount_text(row["collected_amount"]),
            amount_text(row["commission_amount"]),
            _number(
                None if row["net_recovery_rate"] is None else 100 * row["net_recovery_rate"], " %"
            ),
            _count(row["accounts_recalled"]),
        ]
        for row in data["rows"]
    ]
    header = (
        "agency", "placed in", "currency", "accounts", "placed", "collected", "commission",
        "net recovery", "recalled",
    )  # fmt: skip
    numeric = (False, False, False, True, True, True, True, True, True)
    return notes, [_table(header, rows, numeric)]


def _negotiation_section(report: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[list, list]:
    month = report["month"]
    notes = [
        f"Offers made, settlements agreed and plans made in {month}, with their status on the "
        f"run of {data['as_of_date']} (marts.fct_offer_outcomes, "
        "marts.fct_settlement_recovery_by_month, marts.fct_plan_performance). Kept rates are "
        "kept / (kept + broken); amounts per currency."
    ]
    tables = []
    if data["offers"]:
        notes.append(
            "Offers: an account offered a plan gets one offer per allowed length, so the "
            "acceptance rate is per account (accounts that took up an offer / accounts "
            "offered); kept, broken and running count the agreements that took the offers up."
        )
        tables.append(
            _table(
                OFFER_HEADER,
                [
                    [
                        row["offer_kind"].replace("_", " "),
                        row["segment"] or "",
                        _count(row["accounts_offered"]),
                        _count(row["offers_made"]),
                        _count(row["accounts_accepted"]),
                        _count(row["offers_kept"]),
                        _count(row["offers_broken"]),
                        _count(row["offers_active"]),
                        _count(row["offers_lapsed"]),
                        _share(row["acceptance_rate"]),
                        _share(row["kept_rate"]),
                    ]
                    for row in data["offers"]
                ],
                (False, False, *[True] * 9),
                "Offers made, accepted and kept",
            )
        )
    else:
        notes.append(f"No offer was made in {month}.")
    if data["settlements"]:
        notes.append(
            "Settlements: recovery rate = paid / balance at agreement, over every settlement "
            "agreed in the month (broken ones too); forgiven is what the agreements forgive, "
            "written off what was recommended to billing once a settlement was paid."
        )
        tables.append(
            _table(
                SETTLEMENT_HEADER,
                [
                    [
                        row["currency"],
                        _count(row["settlements"]),
                        _count(row["settlements_kept"]),
                        _count(row["settlements_broken"]),
                        amount_text(row["balance_at_agreement"]),
                        amount_text(row["settlement_amount"]),
                        amount_text(row["paid_amount"]),
                        amount_text(row["forgiven_amount"]),
                        amount_text(row["written_off_amount"]),
                        _share(row["recovery_rate"]),
                    ]
                    for row in data["settlements"]
                ],
                (False, *[True] * 9),
                "Settlement recovery",
            )
        )
    else:
        notes.append(f"No settlement was agreed in {month}.")
    if data["plans"]:
        tables.append(
            _table(
                PLAN_LENGTH_HEADER,
                [
                    [
                        row["currency"],
                        f"{row['plan_source']} {row['plan_kind'].replace('_', ' ')}",
                        _count(row["plan_length"]),
                        _count(row["plans_started"]),
                        _count(row["plans_active"]),
                        _count(row["plans_kept"]),
                        _count(row["plans_broken"]),
                        _count(row["plans_cancelled"]),
                        _share(row["kept_rate"]),
                        amount_text(row["scheduled_amount"]),
                        amount_text(row["paid_amount"]),
                        _share(row["share_paid"]),
                    ]
                    for row in data["plans"]
                ],
                (False, False, *[True] * 10),
                "Plan performance by length (billing's plans and promises, recoup's agreements)",
            )
        )
    else:
        notes.append(f"No plan or promise was made in {month}.")
    return notes, tables


def _share(rate: float | None) -> str:
    """A rate from 0 to 1 as a percentage; n/a when there is none."""
    return "n/a" if rate is None else f"{100 * rate:.1f} %"


# --- rendering ------------------------------------------------------------------------------


def render_monthly_report_html(
    report: Mapping[str, Any], charts: Mapping[str, str | None] | None = None
) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script)."""
    sections = monthly_report_sections(report, charts)
    for section in sections:
        if section["chart"] is not None:
            section["chart"] = markupsafe.Markup(section["chart"])  # SVG drawn by us
    return report_environment().get_template(HTML_TEMPLATE).render(report=report, sections=sections)


def month_end_timestamp(report: Mapping[str, Any]) -> dt.datetime:
    """The PDF's creation date: the end of the reported month (UTC), never the clock."""
    last = dt.date.fromisoformat(report["last_day"])
    return dt.datetime.combine(last, dt.time(23, 59, 59), tzinfo=dt.UTC)


def monthly_report_pdf(
    report: Mapping[str, Any], charts: Mapping[str, str | None] | None = None
) -> bytes:
    """The report as PDF: the sections as JSON for `monthly_report.typ`, DejaVu fonts only,
    the creation date at the month end, so the same report gives the same bytes."""
    data = {
        "month": report["month"],
        "month_name": report["month_name"],
        "company": report.get("company"),
        "latest_run_date": report.get("latest_run_date"),
        "sections": monthly_report_sections(report, charts),
    }
    inputs = {"data": json.dumps(data, ensure_ascii=False)}
    with _COMPILE_LOCK:
        try:
            pdf, warnings = _compiler().compile_with_warnings(
                format="pdf", sys_inputs=inputs, timestamp=month_end_timestamp(report)
            )
        except typst.TypstError as error:
            raise MonthlyReportError(_explain(error)) from error
    if warnings:
        raise MonthlyReportError(_explain(*warnings))
    if not isinstance(pdf, bytes):
        raise MonthlyReportError(f"report_templates/{PDF_TEMPLATE}: Typst returned no PDF")
    return pdf


@functools.cache
def _compiler() -> typst.Compiler:
    fonts = typst.Fonts(
        include_system_fonts=False, include_embedded_fonts=False, font_paths=[str(FONTS_DIR)]
    )
    return typst.Compiler(
        REPORT_TEMPLATES_DIR / PDF_TEMPLATE, root=REPORT_TEMPLATES_DIR, font_paths=fonts
    )


def _explain(*problems: typst.TypstError | typst.TypstWarning) -> str:
    lines = [f"report_templates/{PDF_TEMPLATE} did not compile:"]
    for problem in problems:
        lines.append(f"  {getattr(problem, 'message', '') or problem}")
        lines += [f"  hint: {hint}" for hint in getattr(problem, "hints", None) or ()]
    return "\n".join(lines)


def monthly_report_markdown(report: Mapping[str, Any], paths: Sequence[Path] = ()) -> str:
    """A short markdown summary for the Prefect artifact: each section's first note."""
    lines = [f"# Monthly report for {report['month_name']}", ""]
    if paths:
        lines += [f"- `{path}`" for path in paths] + [""]
    for section in monthly_report_sections(report, charts=dict.fromkeys(CHART_KEYS)):
        state = "" if section["available"] else " (no data)"
        first_note = section["notes"][0] if section["notes"] else ""
        lines.append(f"**{section['title']}**{state}: {_md(first_note)}")
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")


def write_monthly_report(report: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write `<YYYY-MM>.html` and `<YYYY-MM>.pdf` into `folder` (atomically, owner-only)."""
    charts = monthly_report_charts(report)  # drawn once for both
    html = render_monthly_report_html(report, charts)
    pdf = monthly_report_pdf(report, charts)
    return [
        write_atomically(folder / f"{report['month']}.html", html.encode("utf-8")),
        write_atomically(folder / f"{report['month']}.pdf", pdf),
    ]
