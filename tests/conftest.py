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
