"""Configuration: YAML files in ``configs/`` validated by pydantic, overridable by environment variables.

Why environment overrides: URLs and secrets differ per deployment (SQLite for the demo, MySQL in production) and
must never be committed, so ``REPLENISH__SECTION__KEY`` replaces any value and ``REPLENISH_DB_URL`` the source URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "REPLENISH__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    url: str = "sqlite:///data/luckin.db"
    connect_timeout_s: int = Field(5, ge=1, le=60)
    tables: dict[str, str] = Field(default_factory=dict)


class GeneratorConfig(_Section):
    seed: int = 42
    catalog: str = "configs/catalog.yaml"
    scenario: str = "configs/scenarios/default.yaml"


class FeaturesConfig(_Section):
    out_dir: str = "data/features"


class MlflowConfig(_Section):
    tracking_uri: str = "mlruns"


class Settings(_Section):
    source: SourceConfig = Field(default_factory=SourceConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        node = over
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts:
            node[parts[-1]] = value
    if environ.get("REPLENISH_DB_URL"):
        over.setdefault("source", {})["url"] = environ["REPLENISH_DB_URL"]
    return over


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line naming the first wrong field, e.g. ``scenario.yaml: events.0.date: invalid date``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{origin}: {loc}: {err['msg']}{more}"


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load ``configs/default.yaml`` (or ``path`` / ``$REPLENISH_CONFIG`` merged over it) plus env overrides."""
    env = dict(os.environ if environ is None else environ)
    data = read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else {}
    extra = path or env.get("REPLENISH_CONFIG")
    if extra:
        data = _deep_merge(data, read_yaml(extra))
    data = _deep_merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "configuration")) from None


def resolve_path(path: str | Path) -> Path:
    """Config paths are relative to the project root, so commands work from any working directory."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p
