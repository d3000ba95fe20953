"""Task: the run report (JSON, HTML with charts, and a Prefect artifact), after every run."""

from __future__ import annotations

from pathlib import Path

import duckdb
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.lib.config import Settings
from flows.lib.run_report import build_run_report, run_report_markdown, write_run_report


@task(name="run-report", cache_policy=NO_CACHE)  # inputs hold a live connection
def write_the_run_report(
    connection: duckdb.DuckDBPyConnection, settings: Settings, summary: dict[str, object]
) -> list[str]:
    """Write the run's report to out/reports/<as-of>/ and leave it as a Prefect artifact."""
    report = build_run_report(connection, summary)
    paths: list[Path] = write_run_report(
        report, settings.path("out") / "reports" / str(summary["as_of"])
    )
    dry = bool(summary.get("dry_run"))
    create_markdown_artifact(
        # a dry run keeps its own history, apart from the runs that sent
        key="daily-dunning-dry-run-summary" if dry else "daily-dunning-summary",
        markdown=run_report_markdown(report),
        description=f"daily-dunning{' dry run' if dry else ''} for {summary['as_of']}: "
        f"{summary['status']}",
    )
    return [str(path) for path in paths]
