"""Flow `monthly-bureau`: the Metro 2 credit-bureau file of one month.

Under the run lock (one writer per RECOUP_HOME), it decides, renders and validates the
period's file (`flows.lib.bureau_file`) and publishes it to `out/credit_bureau/<YYYY-MM>/`
only when every record passes the validator; the error of a failing file names its record and
field. The default period is the previous calendar month in the company's time zone, so the
scheduled run on the second of the month reports the month just ended. A markdown artifact
`monthly-bureau` carries the counts (never a name, SSN or amount of a consumer).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.lib.bureau_file import BureauOutcome, generate_bureau_file
from flows.lib.config import load_settings
from flows.lib.monthly_report import parse_month, previous_month
from flows.lib.run_lock import run_lock
from flows.lib.warehouse import connect_warehouse


@flow(name="monthly-bureau")
def monthly_bureau(period: str | None = None) -> BureauOutcome:
    """Write the Metro 2 file for `period` (YYYY-MM; default: last month)."""
    settings = load_settings()
    today = settings.today()
    period = period if period is not None else previous_month(today)
    parse_month(period)  # a bad period fails here, before the warehouse is opened
    with run_lock(settings.path("state"), "bureau", settings.ingest.lock_wait_seconds):
        connection = connect_warehouse(settings)
        try:
            outcome = generate_bureau_file(connection, settings, period, today=today)
        finally:
            connection.close()
    get_run_logger().info("%s", outcome)
    create_markdown_artifact(
        key="monthly-bureau",
        markdown=_markdown(outcome),
        description=f"Metro 2 credit-bureau file for {outcome.period}",
    )
    return outcome


def _markdown(outcome: BureauOutcome) -> str:
    lines = [
        f"# Metro 2 file for {outcome.period}",
        "",
        f"As of {outcome.date_of_account_information}: {outcome.records:,} accounts reported, "
        f"sha256 `{outcome.file_sha256[:12]}`.",
        "",
        "| account status | accounts |",
        "|---|---:|",
        *[f"| {code} | {count:,} |" for code, count in sorted(outcome.by_status.items())],
    ]
    if outcome.not_reported:
        lines += ["", "| not reported because | accounts |", "|---|---:|"]
        lines += [f"| {why} | {n:,} |" for why, n in sorted(outcome.not_reported.items())]
    return "\n".join(lines) + "\n"
