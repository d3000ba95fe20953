"""prefect.yaml: Prefect ignores unknown keys, so this test reads it instead."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
KNOWN_DEPLOYMENT_KEYS = {
    "name",
    "description",
    "entrypoint",
    "enforce_parameter_schema",
    "parameters",
    "work_pool",
    "schedules",
    "tags",
    "version",
    "concurrency_limit",
}


def read_deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]


def test_the_deployments_the_style_guide_names_are_there() -> None:
    assert {"daily-dunning", "rerun", "ingest", "monthly-report", "monthly-bureau"} <= {
        d["name"] for d in read_deployments()
    }


@pytest.mark.parametrize("deployment", read_deployments(), ids=lambda d: d["name"])
def test_deployment_points_at_a_real_flow(
    deployment: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    assert set(deployment) <= KNOWN_DEPLOYMENT_KEYS, f"unknown keys in {deployment['name']}"
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    extra = set(deployment.get("parameters", {})) - set(inspect.signature(flow.fn).parameters)
    assert not extra, f"{deployment['name']}: {sorted(extra)} are not arguments of {flow.name}"
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises if invalid
