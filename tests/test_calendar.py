"""The holiday seed behind marts.dim_calendar agrees with the pinned `holidays` package."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
SCRIPT = Path(__file__).resolve().parents[1] / "dbt_project" / "scripts" / "holidays_seed.py"


def seed_script():
    spec = importlib.util.spec_from_file_location("holidays_seed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_holds_what_the_installed_holidays_package_says() -> None:
    script = seed_script()
    with script.SEED.open(encoding="utf-8", newline="") as seed:
        rows = [tuple(row.values()) for row in csv.DictReader(seed)]
    assert rows == script.holiday_rows(), "run dbt_project/scripts/holidays_seed.py"
    countries = {country for country, _, _ in rows}
    assert countries == set(script.COUNTRIES)
    assert ("US", "2026-07-03", "Independence Day (observed)") in rows  # observed dates kept
    assert ("US", "2026-11-26", "Thanksgiving Day") in rows


def test_the_default_holiday_country_is_in_the_seed() -> None:
    import yaml

    project = yaml.safe_load((SCRIPT.parents[1] / "dbt_project.yml").read_text(encoding="utf-8"))
    assert project["vars"]["holiday_country"] in seed_script().COUNTRIES
