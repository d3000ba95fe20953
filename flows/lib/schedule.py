"""When the daily run next fires: the `daily-dunning` deployment's cron in prefect.yaml."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import yaml
from cronsim import CronSim

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def next_scheduled_run(now: dt.datetime | None = None, deployment: str = "daily-dunning") -> str:
    """The next time the deployment's first schedule fires, in its time zone, as text; or
    why there is none. (It fires only where a Prefect server and worker serve it.)"""
    try:
        document = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        return f"unknown ({PREFECT_YAML.name}: {error})"
    for each in document.get("deployments", []):
        if each.get("name") == deployment and each.get("schedules"):
            schedule = each["schedules"][0]
            zone = zoneinfo.ZoneInfo(schedule.get("timezone", "UTC"))
            start = (now or dt.datetime.now(dt.UTC)).astimezone(zone)
            fires = next(iter(CronSim(schedule["cron"], start)))
            return f"{fires:%Y-%m-%d %H:%M} {zone.key} ({deployment}, cron {schedule['cron']!r})"
    return f"none: the {deployment} deployment has no schedule"
