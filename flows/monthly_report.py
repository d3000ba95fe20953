"""Flow `monthly-report`: one month of collections as HTML and PDF with charts.

Reads the warehouse read-only, under the run lock (it waits for a daily run to finish: a
reader holding the file would stop the run's dbt build), builds the report of
`flows.lib.monthly_report`, writes `out/reports/monthly/<YYYY-MM>.html` and `.pdf`, and
leaves a markdown artifact under the key `monthly-report`. The default month is the previous
calendar month in the company's time zone, so the scheduled run on the second of the month
reports the month just ended.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.lib.config import load_settings
from flows.lib.monthly_report import (
    build_monthly_report,
    monthly_report_markdown,
    parse_month,
    previous_month,
    write_monthly_report,
)
from flows.lib.run_lock import run_lock
from flows.lib.warehouse import connect_warehouse


@flow(name="monthly-report")
def monthly_report(month: str | None = None) -> list[Path]:
    """Write the monthly report (HTML and PDF) for `month` (YYYY-MM; default: last month)."""
    settings = load_settings()
    month = month if month is not None else previous_month(settings.today())
    parse_month(month)  # a bad month fails here, before the warehouse is opened
    with run_lock(settings.path("state"), "report", settings.ingest.lock_wait_seconds):
        connection = connect_warehouse(settings, read_only=True)
        try:
            report = build_monthly_report(connection, month, company=settings.company.name)
        finally:
            connection.close()
    paths = write_monthly_report(report, settings.path("out") / "reports" / "monthly")
    create_markdown_artifact(
        key="monthly-report",
        markdown=monthly_report_markdown(report, paths),
        description=f"Monthly collections report for {report['month']}",
    )
    return paths
