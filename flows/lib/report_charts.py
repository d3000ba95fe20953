"""The charts of the run report and the monthly report: matplotlib figures rendered to
self-contained SVG.

Each `*_figure` function takes one section of a report dict (as `build_run_report` or
`build_monthly_report` made it) and returns a matplotlib `Figure`, or None when the section has
nothing to show. `svg_of(figure, name)` turns a figure into an `<svg>` element to inline in HTML
or hand to Typst: glyphs as paths (no font needed), no metadata or date, ids prefixed by `name`,
so the same data gives the same bytes and several charts can share a page. One palette and one
`chart_style()` for every chart, so both reports look alike. Counts of accounts add up across
currencies; amounts never do, so a chart of money has one panel per currency.

The few definitions that both the charts and the reports' tables use live here as well, so the
reports import from this module and never the other way round: the aging and roll-rate buckets
with their labels, what became of a contact by its status, and `amount_text`, `stage_label` and
`short_date`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from flows.lib.report_formats import (
    AGING_BUCKETS,
    CONTACT_OUTCOME,
    OUTCOME_LABELS,
    OUTCOME_ORDER,
    ROLL_BUCKETS,
    amount_text,
    short_date,
    stage_label,
)

ROLL_LABELS = {
    "current": "Current",
    "1_30": "1-30",
    "31_60": "31-60",
    "61_90": "61-90",
    "91_120": "91-120",
    "121_150": "121-150",
    "151_180": "151-180",
    "181_plus": "181+",
    "no_balance": "No balance",
    "settled": "Settled",
}

# One palette for every chart of both reports.
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
PRIMARY = "#1f5f8b"
LIGHT = "#a9c6de"
# current (green) to 181+ (dark red): the older, the hotter
BUCKET_COLOURS = (
    "#3f8f5f",
    "#9cbf5a",
    "#e8c547",
    "#f09a48",
    "#e0663f",
    "#c2423a",
    "#93262e",
    "#5e1622",
)
# one colour per currency (Okabe-Ito, readable for colour-blind readers)
SERIES_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000")
# what became of a contact (CONTACT_OUTCOME), in the channel chart
OUTCOME_COLOURS = {
    "went_out": PRIMARY,
    "planned": LIGHT,
    "held_back": "#e8c547",
    "failed": "#c2423a",
    "other": MUTED,
}
CHART_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 8,
    "axes.labelsize": 9,
    "axes.labelcolor": MUTED,
    "axes.edgecolor": GRID,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.facecolor": "white",
    "svg.fonttype": "path",  # glyphs as paths: the SVG needs no font on the reader's machine
    "svg.hashsalt": "recoup-report",  # stable ids: the same data gives the same bytes
}

_SVG_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)


# --- the house style ------------------------------------------------------------------------


@contextlib.contextmanager
def chart_style() -> Iterator[None]:
    """The house style of report charts, for building and saving a figure."""
    with matplotlib.rc_context(CHART_STYLE):
        yield


def svg_of(figure: Figure, name: str) -> str:
    """The figure as an `<svg>` element to inline in HTML or hand to Typst: no XML prolog, no
    metadata or date, ids salted the same way every time (the same figure gives the same
    text) and prefixed with `name`, so several charts on one page never share an id."""
    buffer = io.StringIO()
    with chart_style():
        figure.savefig(buffer, format="svg", metadata={"Date": None}, facecolor="white")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = _SVG_METADATA.sub("", text)
    text = text.replace(' id="', f' id="{name}-')
    text = text.replace("url(#", f"url(#{name}-").replace('href="#', f'href="#{name}-')
    return text


def thousands(value: float, _position: object = None) -> str:
    """A tick label with thousands separators and no decimals: 1,250,000."""
    return f"{value:,.0f}"


def money_ticks(axis: Any) -> None:
    """Money on `axis` (ax.yaxis or ax.xaxis) with thousands separators, at round steps."""
    axis.set_major_formatter(FuncFormatter(thousands))
    axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))


# --- the run report -------------------------------------------------------------------------


def stage_funnel_figure(funnel: Sequence[Mapping[str, Any]], as_of: str) -> Figure | None:
    """Accounts per stage, in ladder order (top to bottom), the held ones apart."""
    if not funnel:
        return None
    with chart_style():
        labels = [stage_label(row["stage"]) for row in funnel]
        free = [row["accounts"] - row["held"] for row in funnel]
        held = [row["held"] for row in funnel]
        figure = Figure(figsize=(7.2, 0.42 * len(funnel) + 1.3), layout="constrained")
        ax = figure.subplots()
        positions = range(len(funnel))
        ax.barh(positions, free, color=PRIMARY, height=0.66, label="not held")
        ax.barh(positions, held, left=free, color=LIGHT, height=0.66, label="held")
        ax.set_yticks(list(positions), labels)
        ax.invert_yaxis()  # the first stage on top
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        widest = max(row["accounts"] for row in funnel) or 1
        ax.set_xlim(0, widest * 1.14)
        for position, row in zip(positions, funnel, strict=True):
            ax.text(
                row["accounts"] + widest * 0.01,
                position,
                f"{row['accounts']:,}",
                va="center",
                fontsize=8.5,
                color=INK,
            )
        ax.set_xlabel("Accounts (all currencies)")
        ax.set_title(f"Accounts per escalation stage on {as_of}")
        if any(held):
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)
    return figure


def aging_distribution_figure(aging: Sequence[Mapping[str, Any]], as_of: str) -> Figure | None:
    """Open amount per days-past-due bucket, one panel per currency (each in its own money)."""
    if not aging:
        return None
    with chart_style():
        columns = 1 if len(aging) == 1 else 2
        rows = math.ceil(len(aging) / columns)
        figure = Figure(figsize=(7.2, 2.5 * rows + 0.5), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        labels = [label for _, label in AGING_BUCKETS]
        for index, entry in enumerate(aging):
            ax = axes[index // columns][index % columns]
            values = [float(Decimal(entry["buckets"][name])) for name, _ in AGING_BUCKETS]
            ax.bar(range(len(values)), values, color=BUCKET_COLOURS, width=0.72)
            ax.set_xticks(range(len(labels)), labels)
            if columns > 1:  # half-width panels: slanted labels keep clear of each other
                ax.tick_params(axis="x", labelrotation=35, labelsize=8)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
                    label.set_rotation_mode("anchor")
            ax.grid(axis="x", visible=False)
            money_ticks(ax.yaxis)
            ax.set_ylim(bottom=0)
            ax.set_title(entry["currency"])
            ax.set_title(
                f"{amount_text(entry['total_open'])} open · {entry['accounts']:,} accounts",
                loc="right",
                fontsize=8,
                fontweight="normal",
                color=MUTED,
            )
            ax.set_ylabel(f"Open amount ({entry['currency']})")
            if index // columns == rows - 1:
                ax.set_xlabel("Days past due")
        for index in range(len(aging), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        figure.suptitle(
            f"Aging distribution on {as_of}, per currency",
            x=0.01,
            ha="left",
            fontsize=10.5,
            fontweight="bold",
        )
    return figure


# --- the monthly report ---------------------------------------------------------------------


def _currency_colours(currencies: Sequence[str]) -> dict[str, str]:
    known = ("USD", "EUR", "GBP", "CAD")
    ordered = [c for c in known if c in currencies] + sorted(
        c for c in currencies if c not in known
    )
    palette = {c: SERIES_COLOURS[known.index(c)] for c in known if c in currencies}
    spare = iter(SERIES_COLOURS[len(known) :])
    for currency in ordered:
        palette.setdefault(currency, next(spare, MUTED))
    return palette


def aging_trend_figure(trend: Mapping[str, Any], month_name: str) -> Figure | None:
    """Stacked open amount per bucket on each run date, one panel per currency."""
    if not trend.get("available"):
        return None
    currencies = trend["currencies"]
    with chart_style():
        columns = 1 if len(currencies) == 1 else 2
        rows = math.ceil(len(currencies) / columns)
        figure = Figure(figsize=(7.2, 2.45 * rows + 0.9), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        for index, entry in enumerate(currencies):
            ax = axes[index // columns][index % columns]
            points = entry["points"]
            positions = np.arange(len(points))
            bottom = np.zeros(len(points))
            for (name, label), colour in zip(AGING_BUCKETS, BUCKET_COLOURS, strict=True):
                values = np.array([float(Decimal(p["buckets"][name])) for p in points])
                ax.bar(positions, values, bottom=bottom, color=colour, width=0.7, label=label)
                bottom += values
            step = max(1, math.ceil(len(points) / 8))  # at most about eight date labels
            ax.set_xticks(positions[::step], [short_date(p["as_of_date"]) for p in points][::step])
            ax.grid(axis="x", visible=False)
            money_ticks(ax.yaxis)
            ax.set_ylim(0, max(bottom.max(), 1) * 1.08)
            ax.set_title(entry["currency"])
            ax.set_title(
                f"{amount_text(points[-1]['total_open'])} open on the last run",
                loc="right",
                fontsize=8,
                fontweight="normal",
                color=MUTED,
            )
            ax.set_ylabel(f"Total open ({entry['currency']})")
            if index // columns == rows - 1:
                ax.set_xlabel("Run date")
        for index in range(len(currencies), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=len(labels) + 1,
            title="Days past due:",
            title_fontsize=8.5,
            fontsize=8,
            handlelength=1.2,
            columnspacing=1.0,
            alignment="left",
        )
        figure.suptitle(
            f"Aging trend over the runs of {month_name}, per currency",
            x=0.01,
            ha="left",
            fontsize=10.5,
            fontweight="bold",
        )
    return figure


def roll_rate_figure(roll: Mapping[str, Any]) -> Figure | None:
    """Heatmap: where each bucket's accounts went, in percent of the bucket's accounts."""
    if not roll.get("available"):
        return None
    matrix, from_buckets, to_buckets = _roll_matrix(roll["cells"])
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) * 100
    with chart_style():
        figure = Figure(
            figsize=(7.2, max(2.8, 0.3 * len(from_buckets) + 1.5)), layout="constrained"
        )
        ax = figure.subplots()
        colours = LinearSegmentedColormap.from_list("recoup", ["#ffffff", PRIMARY])
        image = ax.imshow(shares, cmap=colours, vmin=0, vmax=100, aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(len(to_buckets)), [ROLL_LABELS.get(b, b) for b in to_buckets])
        ax.set_yticks(range(len(from_buckets)), [ROLL_LABELS.get(b, b) for b in from_buckets])
        ax.tick_params(length=0)
        ax.xaxis.set_ticks_position("top")
        ax.xaxis.set_label_position("top")
        for spine in ax.spines.values():
            spine.set_visible(False)
        for row in range(len(from_buckets)):
            for column in range(len(to_buckets)):
                if matrix[row, column]:
                    share = shares[row, column]
                    ax.text(
                        column,
                        row,
                        f"{share:.0f}%",
                        ha="center",
                        va="center",
                        fontsize=7.5,
                        color="white" if share > 55 else INK,
                    )
        ax.set_xlabel(f"Bucket on {roll['as_of_date']}")
        ax.set_ylabel(f"Bucket on {roll['from_date']}")
        bar = figure.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        bar.ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        bar.outline.set_visible(False)
        bar.set_label("Share of accounts", color=MUTED)
        ax.set_title("Roll rates: share of accounts per starting bucket (all currencies)", pad=10)
    return figure


def _roll_matrix(cells: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[str], list[str]]:
    """Accounts from bucket to bucket, all currencies together (a count of accounts adds up
    across currencies)."""

    def order(bucket: str) -> tuple[int, str]:
        return (ROLL_BUCKETS.index(bucket) if bucket in ROLL_BUCKETS else len(ROLL_BUCKETS), bucket)

    from_buckets = sorted({cell["from_bucket"] for cell in cells}, key=order)
    to_buckets = sorted({cell["to_bucket"] for cell in cells}, key=order)
    matrix = np.zeros((len(from_buckets), len(to_buckets)))
    for cell in cells:
        matrix[from_buckets.index(cell["from_bucket"]), to_buckets.index(cell["to_bucket"])] += (
            cell["accounts"]
        )
    return matrix, from_buckets, to_buckets


def cure_rate_figure(cure: Mapping[str, Any]) -> Figure | None:
    """Cure rate per stage, ladder order, all currencies together."""
    if not cure.get("available"):
        return None
    stages = _cure_by_stage(cure["rows"])
    with chart_style():
        figure = Figure(figsize=(7.2, 0.42 * len(stages) + 1.3), layout="constrained")
        ax = figure.subplots()
        rates = [100 * s["cured"] / s["accounts"] if s["accounts"] else 0 for s in stages]
        positions = range(len(stages))
        ax.barh(positions, [100] * len(stages), color=GRID, height=0.62)
        ax.barh(positions, rates, color="#3f8f5f", height=0.62)
        ax.set_yticks(list(positions), [s["stage"].replace("_", " ") for s in stages])
        ax.invert_yaxis()
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        ax.set_xlim(0, 100)
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        for position, stage, rate in zip(positions, stages, rates, strict=True):
            ax.text(
                min(rate, 62) + 1.5,
                position,
                f"{rate:.1f}%  ({stage['cured']:,} of {stage['accounts']:,})",
                va="center",
                fontsize=8,
                color=INK,
            )
        ax.set_xlabel(
            f"Accounts cured by {cure['as_of_date']}, of those in the stage on {cure['from_date']}"
        )
        ax.set_title("Cure rate by escalation stage (all currencies)")
    return figure


def _cure_by_stage(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    stages: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        entry = stages.setdefault(
            (row["stage_order"], row["stage"]), {"stage": row["stage"], "accounts": 0, "cured": 0}
        )
        entry["accounts"] += row["accounts"]
        entry["cured"] += row["cured"]
    return [stages[key] for key in sorted(stages)]


KPI_PANELS = (
    ("dso_days", "DSO (days)", "days"),
    ("collection_effectiveness_index", "CEI (%)", "percent"),
    ("promise_kept_rate", "Promise-kept rate (%)", "percent"),
)


def kpi_figure(kpis: Mapping[str, Any]) -> Figure | None:
    """DSO, CEI and promise-kept rate per currency: lines over the run dates when the mart
    has several in the month, bars for a single date."""
    if not kpis.get("available"):
        return None
    rows = kpis["rows"]
    currencies = sorted({row["currency"] for row in rows})
    colours = _currency_colours(currencies)
    trend = len(kpis["dates"]) > 1
    with chart_style():
        figure = Figure(figsize=(7.2, 2.7), layout="constrained")
        axes = figure.subplots(1, len(KPI_PANELS))
        for ax, (column, title, unit) in zip(axes, KPI_PANELS, strict=True):
            if trend:
                for currency in currencies:
                    series = [
                        r for r in rows if r["currency"] == currency and r[column] is not None
                    ]
                    ax.plot(
                        [dt.date.fromisoformat(r["as_of_date"]) for r in series],
                        [r[column] for r in series],
                        marker="o",
                        markersize=3.5,
                        color=colours[currency],
                        label=currency,
                    )
                dates = kpis["dates"]
                step = max(1, math.ceil(len(dates) / 4))  # about four labels per panel
                ticks = dates[::step]
                ax.set_xticks([dt.date.fromisoformat(day) for day in ticks])
                ax.set_xticklabels([short_date(day) for day in ticks])
                ax.margins(x=0.08)
            else:
                values = {r["currency"]: r[column] for r in rows}
                shown = [c for c in currencies if values.get(c) is not None]
                ax.bar(
                    range(len(shown)),
                    [values[c] for c in shown],
                    color=[colours[c] for c in shown],
                    width=0.6,
                )
                ax.set_xticks(range(len(shown)), shown)
                spare = max(0.0, (3 - len(shown)) / 2)  # a lone bar stays a bar, not a wall
                ax.set_xlim(-0.5 - spare, len(shown) - 0.5 + spare)
                ax.grid(axis="x", visible=False)
                for position, currency in enumerate(shown):
                    ax.text(
                        position,
                        values[currency],
                        f"{values[currency]:,.1f}",
                        ha="center",
                        va="bottom",
                        fontsize=7.5,
                        color=INK,
                    )
                if not shown:
                    ax.text(
                        0.5,
                        0.5,
                        "n/a (see the note)",
                        ha="center",
                        va="center",
                        color=MUTED,
                        transform=ax.transAxes,
                    )
            if unit == "percent":
                ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
                ax.set_ylim(0, 105)
            else:
                ax.yaxis.set_major_formatter(FuncFormatter(thousands))
                ax.set_ylim(bottom=0)
                ax.margins(y=0.15)
            ax.set_title(title, fontsize=9.5)
        if trend:
            handles, labels = axes[0].get_legend_handles_labels()
            figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
        subtitle = (
            f"over the runs {kpis['dates'][0]} to {kpis['dates'][-1]}"
            if trend
            else f"on {kpis['dates'][0]}, per currency"
        )
        figure.suptitle(
            f"Collection KPIs {subtitle}", x=0.01, ha="left", fontsize=10.5, fontweight="bold"
        )
    return figure


def channel_figure(collections: Mapping[str, Any]) -> Figure | None:
    """Contacts per channel in the month, stacked by what became of them."""
    if not collections.get("available"):
        return None
    groups = (*OUTCOME_ORDER, "other")
    counts: dict[str, dict[str, int]] = {}
    for row in collections["statuses"]:
        group = CONTACT_OUTCOME.get(row["status"], "other")
        per = counts.setdefault(row["channel"], dict.fromkeys(groups, 0))
        per[group] += row["contacts"]
    channels = sorted(counts)
    with chart_style():
        figure = Figure(figsize=(7.2, 0.5 * len(channels) + 1.5), layout="constrained")
        ax = figure.subplots()
        left = np.zeros(len(channels))
        for group in groups:
            values = np.array([counts[channel][group] for channel in channels])
            if values.any():
                ax.barh(
                    channels,
                    values,
                    left=left,
                    color=OUTCOME_COLOURS[group],
                    height=0.6,
                    label=OUTCOME_LABELS[group],
                )
                left += values
        ax.invert_yaxis()
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.set_xlim(0, max(left.max(), 1) * 1.12)
        for position, total in enumerate(left):
            ax.text(
                total + left.max() * 0.01,
                position,
                f"{int(total):,}",
                va="center",
                fontsize=8.5,
                color=INK,
            )
        ax.set_xlabel("Contacts planned by the month's runs")
        ax.set_title("Contacts by channel and outcome")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, borderaxespad=0.2)
    return figure
