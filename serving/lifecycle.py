"""Model lifecycle: find the champion, load and validate its cached forecasts off the request path, swap, repeat.

Why a poll: the registry has no push; every ``serving.poll_interval_s`` a background thread asks the MLflow registry
which version holds the ``champion`` alias (or, in a self-contained Bento, which ``replenishment-forecaster``
model the BentoML store holds) and which data date its newest forecast cache has. A new (version, data date) is
loaded and validated completely before it replaces the state; on any failure the previous model keeps serving and
``/status`` says why. The same loop retries a first load the source database was down for. A second thread
(``serving.counts.CountsWatcher``) keeps every store's latest counts current; a load reads them for the new order
dates before the swap, so a new model never starts without them.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError, ReplenishError, SourceUnavailable
from forecasting.forecast_cache import cache_dir, read_cache
from serving.counts import CountsWatcher
from serving.engine import Engine, ModelRef, build_state, hourly_profiles
from serving.source import SourceReader

log = logging.getLogger("bentoml.replenishment.lifecycle")
MLMODEL_DIR = "mlflow_model"  # inside a BentoML model: the MLflow model files
CACHE_DIR = "forecasts"  # inside a BentoML model: a forecast cache root (<version>/<data date>/)


def model_label(version: int | str) -> str:
    """The cache's model_version for a registry version (``training.batch.model_label``: ``v<version>``)."""
    return f"v{version}"


def source_url(settings: Settings) -> str:
    """The source URL; a relative SQLite path is taken from the project root (the service may run elsewhere)."""
    url = settings.source.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(resolve_path(url[len(prefix):]))
    return url


def cache_root(settings: Settings) -> Path:
    return resolve_path(settings.serving.forecast_cache or settings.planning.forecasts_dir)


def newest_data_date(root: str | Path, label: str) -> date | None:
    """Newest data date cached for one model label (reads only the small meta files)."""
    dates = []
    for meta in Path(root).glob(f"{label}/*/meta.json"):
        try:
            dates.append(date.fromisoformat(json.loads(meta.read_text())["data_date"]))
        except (ValueError, KeyError, OSError):
            continue
    return max(dates) if dates else None


def mlflow_champion(settings: Settings) -> ModelRef:
    """The registry's champion (one cheap registry query: this runs on every poll)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.tracking import CHAMPION, resolve_tracking_uri

    uri, _ = resolve_tracking_uri(settings.mlflow.tracking_uri)
    name = settings.training.registry_name
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise DataError(f"no {CHAMPION!r} alias on {name!r} in the MLflow registry ({exc.error_code})") from None
    return ModelRef(model_label(mv.version), "mlflow", str(cache_root(settings)), f"models:/{name}/{mv.version}")


def check_loadable(ref: ModelRef, settings: Settings) -> None:
    """A registry model must be loadable (its MLmodel file is read) before its forecasts are served."""
    if ref.source != "mlflow" or ref.uri is None:
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.tracking import resolve_tracking_uri

    uri, _ = resolve_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.models.get_model_info(ref.uri)
    except (MlflowException, OSError) as exc:
        raise DataError(f"{ref.uri} cannot be loaded: {str(exc).splitlines()[0]}") from None


def bentoml_model(settings: Settings) -> ModelRef:
    """The newest model of that name in the BentoML store (what `replenish serve import-model` put there)."""
    import bentoml
    from bentoml.exceptions import NotFound as BentoNotFound

    name = settings.serving.bentoml_model
    try:
        m = bentoml.models.get(f"{name}:latest")
    except BentoNotFound:
        raise DataError(f"no {name!r} model in the BentoML store: run `replenish serve import-model`") from None
    label = str(m.info.metadata.get("model_version") or model_label(m.tag.version))
    return ModelRef(label, "bentoml", str(Path(m.path) / CACHE_DIR), str(m.tag))


@dataclass
class ModelWatcher:
    """Polls for the champion and swaps the engine's state; ``poll_once`` is the whole step (tests call it)."""

    engine: Engine
    settings: Settings
    _failed: dict[tuple, str] = field(default_factory=dict)
    counts: CountsWatcher | None = None  # started with the poll when the counts are kept in memory
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def resolve(self) -> ModelRef:
        how = self.settings.serving.model_source
        st = self.engine.state
        if how == "mlflow" or (how == "auto" and st is not None and st.model_source == "mlflow"):
            return mlflow_champion(self.settings)
        if how == "bentoml":
            return bentoml_model(self.settings)
        try:
            return mlflow_champion(self.settings)
        except (DataError, OSError) as first:
            try:
                return bentoml_model(self.settings)
            except (DataError, ImportError):
                raise first from None

    def poll_once(self) -> bool:
        """One step; True when a new state was installed."""
        self.engine.last_poll_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            ref = self.resolve()
        except Exception as exc:  # noqa: BLE001 - a registry outage must never stop the loop
            self._note(f"cannot resolve the champion: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return False
        day = newest_data_date(ref.cache_root, ref.version)
        st = self.engine.state
        if day is None:
            self._note(f"model {ref.version}: no cached forecasts under {ref.cache_root} (run `replenish forecast`)"
                       + (f"; still serving {st.model_version}" if st else ""))
            return False
        path = cache_dir(ref.cache_root, ref.version, day) / "meta.json"
        key = (ref.version, ref.source, day, path.stat().st_mtime if path.exists() else 0.0)
        if st is not None and st.cache_key == key:
            return False
        if key in self._failed:
            self.engine.last_error = self._failed[key]
            return False
        try:
            state = self.load(ref, day, key)
        except SourceUnavailable as exc:  # transient: retried on the next poll
            self._note(f"model {ref.version}: {exc}")
            return False
        except (ReplenishError, ValueError, KeyError, OSError) as exc:
            msg = f"model {ref.version} (data date {day}) rejected: {exc}" + (
                f"; still serving {st.model_version}" if st else "")
            self._failed[key] = msg
            self._note(msg)
            return False
        self.engine.swap(state)
        log.info("serving model %s (%s) data date %s: %d order dates, loaded in %.1f s", state.model_version,
                 state.model_source, state.data_date, len(state.windows), state.load_seconds)
        return True

    def load(self, ref: ModelRef, day: date, key: tuple):
        check_loadable(ref, self.settings)
        cached = read_cache(ref.cache_root, ref.version, day)
        master = self.engine.source.master()
        hourly = hourly_profiles(str(resolve_path(self.settings.features.out_dir)),
                                 self.settings.serving.hourly_lookback_days)
        state = build_state(ref, cached.frame, day, master, self.settings, hourly)
        state = state.__class__(**{**state.__dict__, "cache_key": key})
        if self.settings.serving.inventory_ttl_s > 0:  # the counts for the new order dates, before it serves
            self.engine.counts.refresh(state, also=self.engine.state)
        return state

    def _note(self, msg: str) -> None:
        if msg != self.engine.last_error:
            log.warning("%s", msg)
        self.engine.last_error = msg

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.settings.serving.poll_interval_s)

        self._thread = threading.Thread(target=loop, name="model-watcher", daemon=True)
        self._thread.start()
        ttl = self.settings.serving.inventory_ttl_s
        if ttl > 0:
            self.counts = CountsWatcher(self.engine.counts, lambda: self.engine.state, ttl)
            self.counts.start()

    def stop(self) -> None:
        if self.counts is not None:
            self.counts.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start(settings: Settings) -> tuple[Engine, ModelWatcher]:
    """An engine with its watcher running (the first load happens in the background; /readyz waits for it)."""
    s = settings.serving
    engine = Engine(settings, SourceReader(source_url(settings), settings.source.tables, s.source_timeout_s))
    watcher = ModelWatcher(engine, settings)
    watcher.start()
    return engine, watcher
