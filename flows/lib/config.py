"""recoup settings: `recoup.yaml`, then `RECOUP_*` environment overrides, then validation.

This module is the only place that reads the environment. Everything else receives a frozen
`Settings`. Rules:

- The file is found at `$RECOUP_CONFIG`, else `$RECOUP_HOME/recoup.yaml`, else the built-in
  defaults are used (they work on a fresh machine).
- A nested key is overridden by `RECOUP_<SECTION>__<KEY>`, like
  `RECOUP_INGEST__LOCK_WAIT_SECONDS=5`.
- An unknown key, in the file or the environment, fails with its name and the allowed names.
- Secrets (the SendGrid API key) come from the environment only; a secret in the file fails.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

CONFIG_FILE_NAME = "recoup.yaml"
ENV_PREFIX = "RECOUP_"
# Environment variables that are not settings inside recoup.yaml.
ENV_NOT_SETTINGS = {"RECOUP_HOME", "RECOUP_CONFIG"}
SECRET_ENV_VARS = ("SENDGRID_API_KEY",)


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanySettings(_Section):
    name: str = Field("Acme Utilities", description="Name customers know you by.")
    timezone: str = Field(
        "America/Chicago",
        description="IANA time zone of the company: the default as-of date and the cron run here.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone; use one like America/Chicago")
        return value


class PathSettings(_Section):
    """Folders and files, relative to RECOUP_HOME unless absolute."""

    warehouse: str = "warehouse/recoup.duckdb"
    out: str = "out"
    outbox: str = "outbox"
    inbox: str = "inbox"
    state: str = "state"


class IngestSettings(_Section):
    lock_wait_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="How long a second ingest or run waits for the running one before refusing.",
    )


class GateSettings(_Section):
    freshness_days: int = Field(
        7, ge=0, le=366, description="Gate 1 fails when the newest payment is older than this."
    )
    volume_factor: float = Field(
        3.0, gt=1, le=100, description="A channel's planned contacts above this x median halt."
    )
    volume_min_actions: int = Field(
        50, ge=0, description="Spikes smaller than this many contacts never halt a run."
    )
    volume_trailing_runs: int = Field(7, ge=3, le=90, description="Runs in the median.")


class DemoSettings(_Section):
    accounts: int = Field(20_000, ge=10, le=5_000_000)
    seed: int = Field(42, ge=0)


class Settings(_Section):
    home: Path = Field(description="RECOUP_HOME: the working folder; set from the environment.")
    company: CompanySettings = CompanySettings()
    collector_type: Literal["first_party", "third_party"] = "first_party"
    paths: PathSettings = PathSettings()
    ingest: IngestSettings = IngestSettings()
    gates: GateSettings = GateSettings()
    demo: DemoSettings = DemoSettings()
    sendgrid_api_key: SecretStr | None = Field(
        None, description="From SENDGRID_API_KEY only; without it emails go to the outbox folder."
    )

    def path(self, name: Literal["warehouse", "out", "outbox", "inbox", "state"]) -> Path:
        """The absolute location of one of the configured paths."""
        configured = Path(getattr(self.paths, name))
        return configured if configured.is_absolute() else self.home / configured

    @property
    def warehouse_path(self) -> Path:
        return self.path("warehouse")

    def today(self) -> dt.date:
        """Today's date in the company's time zone (the default as-of date)."""
        return dt.datetime.now(zoneinfo.ZoneInfo(self.company.timezone)).date()


def default_settings_document() -> dict[str, Any]:
    """The file-level defaults, as `recoup.yaml` would hold them."""
    defaults = Settings(home=Path("."))
    return defaults.model_dump(mode="json", exclude={"home", "sendgrid_api_key"})


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read recoup.yaml and the environment into one validated, frozen Settings."""
    env = os.environ if environ is None else environ
    home = Path(env.get("RECOUP_HOME") or Path.cwd()).expanduser().resolve()
    config_path = _config_path(env, home)
    document = _read_document(config_path) if config_path else {}
    source = str(config_path) if config_path else "built-in defaults"
    for forbidden in ("home", "sendgrid_api_key"):
        if forbidden in document:
            raise ConfigError(
                f"{source}: '{forbidden}' cannot be set in the file; "
                + (
                    "set RECOUP_HOME instead."
                    if forbidden == "home"
                    else "secrets come from the environment only: set SENDGRID_API_KEY."
                )
            )
    document = _apply_env_overrides(document, env)
    document["home"] = home
    api_key = env.get("SENDGRID_API_KEY")
    document["sendgrid_api_key"] = api_key or None
    try:
        return Settings.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def _config_path(env: Mapping[str, str], home: Path) -> Path | None:
    explicit = env.get("RECOUP_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"RECOUP_CONFIG names {path}, which is not a file.")
        return path
    candidate = home / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def _read_document(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, like 'company:'.")
    return loaded


def _apply_env_overrides(document: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {
        key: dict(value) if isinstance(value, dict) else value for key, value in document.items()
    }
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if name not in ("home", "sendgrid_api_key")
    }
    for variable, value in sorted(env.items()):
        if not variable.startswith(ENV_PREFIX) or variable in ENV_NOT_SETTINGS:
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        section = parts[0]
        if section not in sections:
            allowed = ", ".join(sorted(f"RECOUP_{name.upper()}" for name in sections))
            raise ConfigError(
                f"{variable} is not a recoup setting; sections are {allowed} "
                "(nested keys as RECOUP_SECTION__KEY), plus RECOUP_HOME and RECOUP_CONFIG."
            )
        model = sections[section]
        if len(parts) == 1:
            if isinstance(model, type) and issubclass(model, BaseModel):
                raise ConfigError(
                    f"{variable} names a whole section; set one key, like "
                    f"{variable}__{next(iter(model.model_fields)).upper()}."
                )
            merged[section] = value
            continue
        if len(parts) != 2 or not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"{variable} is not a recoup setting (use RECOUP_SECTION__KEY).")
        key = parts[1]
        if key not in model.model_fields:
            allowed = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"{variable}: '{section}' has no key '{key}'; keys are {allowed}.")
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), key: value}
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            parent = _model_at(problem["loc"][:-1])
            allowed = ", ".join(sorted(parent.model_fields)) if parent else "see recoup.yaml"
            lines.append(f"{source}: '{where}' is not a setting; allowed here: {allowed}.")
        else:
            got = problem.get("input")
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where} is {got!r}; {message}.")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type)):
            return None
        model = field.annotation
    return model if issubclass(model, BaseModel) else None
