"""The dbt models and tests follow the house SQL style (sqlfluff, duckdb dialect), and recoup's
own SQL matches key sets with semi-joins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
FLOWS = Path(__file__).resolve().parents[1] / "flows"


def test_sqlfluff_finds_nothing() -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "sqlfluff"), "lint", "models", "tests"],
        cwd=DBT_PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]


# A key set given as a parameter (the run's action keys, accounts, referral ids) is matched
# with a semi-join, `key in (select unnest($keys::varchar[]))`, which DuckDB hashes. With
# `list_contains($keys, key)` it walks the whole list for every row: in a benchmark of the
# 1M-account first day's shape (111,000 keys, 700,000 rows), one such `not` took 44 s.
KEY_SET_SCAN = re.compile(
    r"list_contains\(\s*(\$\w+|\?)[^,()]*,\s*(\w+\.)?(action_key|\w+_id)\s*\)"
)


def test_key_sets_are_semi_joins_not_list_scans() -> None:
    offenders = [
        f"{path.relative_to(FLOWS.parent)}:{number}: {line.strip()}"
        for path in sorted(FLOWS.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if KEY_SET_SCAN.search(line)
    ]
    assert offenders == []


def test_the_key_set_rule_catches_a_list_scan() -> None:
    assert KEY_SET_SCAN.search("where list_contains($keys, action_key)")
    assert KEY_SET_SCAN.search("and not list_contains(?, ledger.account_id)")
    assert KEY_SET_SCAN.search("list_contains($accounts::varchar[], account_id)")
    assert not KEY_SET_SCAN.search("list_contains(?, status)")  # a handful of statuses
    assert not KEY_SET_SCAN.search("list_contains(stages.hold_reasons, 'deceased')")
