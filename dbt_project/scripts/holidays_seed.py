"""Write seeds/holidays.csv: the public holidays of each country recoup's calendar supports,
2015-2040, from the pinned `holidays` package (the day's name as the package gives it, several
holidays on one day joined by "; ").

Run it after upgrading `holidays` or to add a country (`python dbt_project/scripts/holidays_seed.py
US CA GB`); tests/test_calendar.py fails when the seed and the installed package disagree.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import holidays

FIRST_YEAR, LAST_YEAR = 2015, 2040
COUNTRIES = ("US", "CA", "GB")
SEED = Path(__file__).resolve().parents[1] / "seeds" / "holidays.csv"


def holiday_rows(countries: tuple[str, ...] = COUNTRIES) -> list[tuple[str, str, str]]:
    rows = []
    for country in countries:
        calendar = holidays.country_holidays(country, years=range(FIRST_YEAR, LAST_YEAR + 1))
        rows += [(country, day.isoformat(), calendar.get(day)) for day in sorted(calendar)]
    return rows


def main(countries: list[str]) -> None:
    with SEED.open("w", encoding="utf-8", newline="") as seed:
        writer = csv.writer(seed, lineterminator="\n")
        writer.writerow(("holiday_country", "holiday_date", "holiday_name"))
        writer.writerows(holiday_rows(tuple(countries) or COUNTRIES))


if __name__ == "__main__":
    main(sys.argv[1:])
