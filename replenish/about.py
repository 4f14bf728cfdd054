"""``replenish --version``: the version plus the model and data a command would use, without creating anything.

Why more than a number: "which model and which data?" is the first question when two people's figures differ, so
the answer reads the configuration, the registry's champion alias and the feature store's manifest, read-only and
without importing MLflow (a SQLite tracking store is queried directly; any other store is only named).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from forecasting.config import load_settings, resolve_path
from forecasting.source.db import safe_url
from forecasting.version import DIST, package_version


def _champion(tracking_uri: str, name: str) -> str:
    """``version N (champion)`` from a local SQLite tracking store, opened read-only; a description otherwise."""
    if "://" in tracking_uri or tracking_uri.startswith("file:"):
        return f"{name}@champion in {safe_url(tracking_uri) if '@' in tracking_uri else tracking_uri}"
    db = resolve_path(tracking_uri) / "mlflow.db"
    if not db.is_file():
        return f"none yet ({resolve_path(tracking_uri)} has no MLflow store: run `replenish train`)"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
                              (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"unreadable MLflow store {db}: {exc}"
    if row is None:
        return f"{name}: no champion yet (run `replenish train` then `replenish promote`)"
    return f"{name} version {row[0]} (champion) in {db.parent}"


def _features(out_dir: str) -> str:
    path = resolve_path(out_dir)
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return f"{path}: not built yet (run `replenish features build`)"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable manifest ({exc})"
    return f"{path}, through {doc.get('watermark', '?')}"


def describe() -> list[str]:
    """The lines ``--version`` prints; a broken configuration is reported on its line, never raised."""
    from forecasting.errors import ReplenishError

    lines = [f"replenish {package_version()} ({DIST})"]
    try:
        cfg = load_settings()
    except ReplenishError as exc:
        return [*lines, f"configuration: {exc}"]
    lines.append(f"model:    {_champion(cfg.mlflow.tracking_uri, cfg.training.registry_name)}")
    lines.append(f"source:   {safe_url(cfg.source.url)}")
    lines.append(f"features: {_features(cfg.features.out_dir)}")
    return lines
