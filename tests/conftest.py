from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flows.lib.warehouse import open_warehouse


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Prefect test API for the session, started by the first test that runs a flow
    (it takes seconds, so unit tests do not pay for it)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def served_api_url(prefect_api) -> str:
    """The session's test API, for `recoup` subprocesses: starting Prefect's ephemeral API
    costs each process 10-15 CPU-seconds, so only the tests of that default start one."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture
def recoup_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RECOUP_HOME with no recoup.yaml: built-in defaults."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RECOUP_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("RECOUP_") and name != "RECOUP_HOME":
            monkeypatch.delenv(name)
    # the key SSNs and dates of birth are encrypted with (flows/lib/pii.py): a test key
    monkeypatch.setenv("RECOUP_PII_KEY", "aqQ/wM+q1KL3A0h4JL/LfLBd+YHl3BN3+vHw55aE55Q=")
    # the flows' own tests build without dbt's data tests (a third of a build's time); the
    # warehouse tests, which call build_warehouse, and the `recoup` subprocesses run them
    monkeypatch.setenv("RECOUP_GATES__DBT_DATA_TESTS", "false")
    return home


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "warehouse" / "recoup.duckdb")
    yield connection
    connection.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files in tests/fixtures/golden/ from the current output; "
        "review the diff before committing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True under `pytest --update-golden`: golden-file tests rewrite their files."""
    return bool(request.config.getoption("--update-golden"))


# the slowest files first: the test workers take whole files in collection order, so a long
# file collected last would run alone at the end
SLOW_FIRST = (
    "test_crash_safety.py", "test_warehouse_stages.py", "test_agencies_flow.py",
    "test_operations.py", "test_flows.py", "test_skip_tracing.py", "test_cli.py",
    "test_warehouse_aging.py", "test_warehouse_integrity.py", "test_bench_harness.py",
    "test_data_protection.py", "test_settlements.py", "test_contacting.py",
    "test_warehouse_servicing.py", "test_hostile_input.py", "test_provider_faults.py",
    "test_legal_referral.py", "test_offers.py", "test_plan_servicing.py", "test_remittances.py",
    "test_gates.py", "test_sql_style.py", "test_negotiation_marts.py", "test_credit_holds.py",
    "test_monthly_report.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order
