"""The dbt models and tests follow the house SQL style (sqlfluff, duckdb dialect)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"


def test_sqlfluff_finds_nothing() -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "sqlfluff"), "lint", "models", "tests"],
        cwd=DBT_PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
