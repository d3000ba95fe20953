"""The environment of `recoup` subprocesses in tests."""

from __future__ import annotations

import os
from pathlib import Path


def subprocess_environment(home: Path, api_url: str | None, **env: str) -> dict[str, str]:
    """The environment of a `recoup` subprocess: no RECOUP_* or PREFECT_* from the test's
    own, RECOUP_HOME=home, and the served test API unless `api_url` is None (ephemeral)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RECOUP_", "PREFECT_"))}
    environment.update(RECOUP_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    environment["COLUMNS"] = "200"
    if api_url is not None:
        environment["PREFECT_API_URL"] = api_url
    environment.update(env)
    return environment
