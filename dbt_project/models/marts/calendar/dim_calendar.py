"""dim_calendar: one row per day from 2015 to 2040 with the business-day count used by
escalation thresholds in business days (weekends and the `holiday_country` holidays off).

A Python model because the holiday calendar comes from the `holidays` package, which keeps
every country's rules (observed dates, one-off holidays) current.
"""

import datetime as dt

import holidays
import pandas as pd


def model(dbt, session):
    dbt.config(materialized="table")
    country = dbt.config.get("holiday_country") or "US"
    first, last = dt.date(2015, 1, 1), dt.date(2040, 12, 31)
    days = pd.date_range(first, last, freq="D")
    calendar = holidays.country_holidays(country, years=range(first.year, last.year + 1))
    frame = pd.DataFrame({"calendar_date": days.date})
    frame["is_weekend"] = days.dayofweek >= 5
    frame["holiday_name"] = [calendar.get(day) for day in frame["calendar_date"]]
    frame["is_business_day"] = ~frame["is_weekend"] & frame["holiday_name"].isna()
    frame["business_day_index"] = frame["is_business_day"].cumsum().astype("int64")
    frame["holiday_country"] = country
    return frame
