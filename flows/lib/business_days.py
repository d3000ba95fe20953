"""Business days from the warehouse's calendar (marts.dim_calendar: weekends and the holidays of
its holiday country excluded), so every step counts them the same way dbt does."""

from __future__ import annotations

import datetime as dt

import duckdb


def business_day_after(
    connection: duckdb.DuckDBPyConnection, day: dt.date, days: int
) -> dt.date | None:
    """The `days`-th business day after `day` (at least the next one); None when the
    calendar does not reach it."""
    rows = connection.execute(
        """
        select min(later.calendar_date)
        from marts.dim_calendar as later, marts.dim_calendar as given
        where
            given.calendar_date = ?
            and later.is_business_day
            and later.calendar_date > given.calendar_date
            and later.business_day_index >= given.business_day_index + ?
        """,
        [day, max(days, 1)],
    ).fetchall()
    return rows[0][0] if rows else None
