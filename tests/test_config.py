"""recoup.yaml, RECOUP_* overrides and secrets: a wrong setting fails at start, by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.lib.config import ConfigError, default_settings_document, load_settings

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]


def settings_with(home: Path, text: str | None = None, **env: str):
    if text is not None:
        (home / "recoup.yaml").write_text(text, encoding="utf-8")
    return load_settings({"RECOUP_HOME": str(home), **env})


def test_defaults_work_without_a_file(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert settings.home == tmp_path.resolve()
    assert settings.warehouse_path == tmp_path.resolve() / "warehouse" / "recoup.duckdb"
    assert settings.path("outbox") == tmp_path.resolve() / "outbox"
    assert settings.collector_type == "first_party"
    assert settings.sendgrid_api_key is None


def test_the_committed_recoup_yaml_documents_exactly_the_defaults() -> None:
    committed = yaml.safe_load((REPO / "recoup.yaml").read_text(encoding="utf-8"))
    assert committed == default_settings_document()


def test_file_values_and_environment_overrides(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        "company: {timezone: America/New_York}\ningest: {lock_wait_seconds: 5}\n",
        RECOUP_INGEST__LOCK_WAIT_SECONDS="90",
        RECOUP_COLLECTOR_TYPE="third_party",
    )
    assert settings.company.timezone == "America/New_York"
    assert settings.ingest.lock_wait_seconds == 90  # the environment wins over the file
    assert settings.collector_type == "third_party"


def test_recoup_config_points_at_another_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("demo: {accounts: 500}\n", encoding="utf-8")
    settings = load_settings({"RECOUP_HOME": str(tmp_path), "RECOUP_CONFIG": str(other)})
    assert settings.demo.accounts == 500


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        pytest.param(
            "ingest: {lock_wait: 5}\n",
            {},
            "'ingest.lock_wait' is not a setting; allowed here: lock_wait_seconds",
            id="unknown key in file",
        ),
        pytest.param(
            "colour: blue\n", {}, "'colour' is not a setting", id="unknown section in file"
        ),
        pytest.param(
            "company: {timezone: Mars/Olympus}\n",
            {},
            "company.timezone is 'Mars/Olympus'; 'Mars/Olympus' is not an IANA time zone",
            id="bad time zone",
        ),
        pytest.param(
            "collector_type: debt_buyer\n",
            {},
            "collector_type is 'debt_buyer'; Input should be 'first_party' or 'third_party'",
            id="bad choice",
        ),
        pytest.param(
            "ingest: {lock_wait_seconds: -1}\n",
            {},
            "ingest.lock_wait_seconds is -1",
            id="negative wait",
        ),
        pytest.param(
            "sendgrid_api_key: SG.x\n",
            {},
            "secrets come from the environment only",
            id="secret in file",
        ),
        pytest.param("- a list\n", {}, "the top level must be a mapping", id="not a mapping"),
        pytest.param("company: [\n", {}, "not valid YAML", id="broken yaml"),
        pytest.param(
            None,
            {"RECOUP_COLOUR": "blue"},
            "RECOUP_COLOUR is not a recoup setting",
            id="unknown env section",
        ),
        pytest.param(
            None,
            {"RECOUP_INGEST__WAIT": "5"},
            "RECOUP_INGEST__WAIT: 'ingest' has no key 'wait'; keys are lock_wait_seconds",
            id="unknown env key",
        ),
        pytest.param(
            None,
            {"RECOUP_INGEST__LOCK_WAIT_SECONDS": "soon"},
            "ingest.lock_wait_seconds is 'soon'",
            id="env value of the wrong type",
        ),
        pytest.param(
            None,
            {"RECOUP_CONFIG": "/nowhere/recoup.yaml"},
            "RECOUP_CONFIG names /nowhere/recoup.yaml, which is not a file",
            id="missing config file",
        ),
    ],
)
def test_a_wrong_setting_fails_with_its_name(
    tmp_path: Path, text: str | None, env: dict, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(tmp_path, text, **env)
    assert message in str(raised.value)


def test_the_api_key_comes_from_the_environment_and_never_prints(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, SENDGRID_API_KEY="SG.secret-value")
    assert settings.sendgrid_api_key is not None
    assert settings.sendgrid_api_key.get_secret_value() == "SG.secret-value"
    assert "secret-value" not in repr(settings) and "secret-value" not in str(settings)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    with pytest.raises(Exception, match="frozen"):
        settings.collector_type = "third_party"  # type: ignore[misc]


def test_the_warehouse_opens_with_the_duckdb_limits(tmp_path) -> None:
    """`duckdb:` reaches recoup's own connection: the memory limit, and the spill folder,
    created owner-only (spilled pages hold the warehouse's rows). The connection checkpoints
    at 256MB of log, not DuckDB's 16MB (the send steps commit once per request)."""
    from flows.lib.warehouse import connect_warehouse

    settings = load_settings({"RECOUP_HOME": str(tmp_path), "RECOUP_DUCKDB__MEMORY_LIMIT": "1GB"})
    connection = connect_warehouse(settings)
    try:
        limit = connection.execute("select current_setting('memory_limit')").fetchone()[0]
        spill = connection.execute("select current_setting('temp_directory')").fetchone()[0]
        threshold = connection.execute("select current_setting('checkpoint_threshold')").fetchone()[
            0
        ]
    finally:
        connection.close()
    assert limit in ("1.0 GB", "953.6 MiB", "1000.0 MB"), limit
    assert Path(spill) == tmp_path / "state" / "duckdb_tmp"
    assert (Path(spill).stat().st_mode & 0o777) == 0o700
    assert threshold in ("256.0 MB", "244.1 MiB"), threshold


def test_a_memory_limit_duckdb_cannot_read_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="memory_limit"):
        load_settings({"RECOUP_HOME": str(tmp_path), "RECOUP_DUCKDB__MEMORY_LIMIT": "lots"})
