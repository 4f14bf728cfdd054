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
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError, ReplenishError, SourceUnavailable
from forecasting.source.forecast_cache import cache_dir, read_cache
from serving.counts import CountsWatcher
from serving.engine import Engine, ModelRef, build_state, hourly_profiles
from serving.source import SourceReader

log = logging.getLogger("bentoml.replenishment.lifecycle")
MLMODEL_DIR = "mlflow_model"  # inside a BentoML model: the MLflow model files
CACHE_DIR = "forecasts"  # inside a BentoML model: a forecast cache root (<version>/<data date>/)


_REFUSED: list = []


def refused_counter():
    """``replenishment_model_refused_total{model_version}``, created on first use.

    Why lazily: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in the worker after the service module is imported, and a
    metric created before that is invisible on ``/metrics``.
    """
    if not _REFUSED:
        from prometheus_client import Counter

        _REFUSED.append(Counter("replenishment_model_refused", "Model versions refused at load (validation failed)",
                                ["model_version"]))
    return _REFUSED[0]


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def model_dir(ref: ModelRef, settings: Settings, tmp: str) -> Path | None:
    """A local folder with the candidate's MLflow model files (downloaded from the registry into ``tmp``)."""
    if ref.source == "bentoml":
        local = Path(ref.cache_root).parent / MLMODEL_DIR
        return local if (local / "MLmodel").exists() else None
    if ref.uri is None:
        return None
    import mlflow

    from training.tracking import resolve_tracking_uri

    uri, _ = resolve_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_tracking_uri(uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=tmp))


def check_loadable(ref: ModelRef, settings: Settings) -> None:
    """Load the candidate as the batch job would and predict its own input example; raise DataError saying why not.

    Why load and predict rather than read metadata: a corrupt ``MLmodel``, a truncated pickle or a model whose
    predictions are NaN all pass a metadata check and would be served. Runs in the watcher thread (off the request
    path); every failure, whatever its type, becomes a one-line reason.
    """
    import os
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in the service log
    with tempfile.TemporaryDirectory(prefix="replenish-validate-") as tmp:
        try:
            local = model_dir(ref, settings, tmp)
            if local is None:
                return
            import mlflow
            import numpy as np
            import pandas as pd
            from mlflow.models import Model

            model = mlflow.pyfunc.load_model(str(local))
            example = Model.load(str(local)).load_input_example(str(local))
        except Exception as exc:  # noqa: BLE001 - anything a broken model raises is a refusal, never a crash
            raise DataError(f"{ref.uri} cannot be loaded: {_first_line(exc)}") from None
        if example is None or len(example) == 0:
            raise DataError(f"{ref.uri} has no input example to validate it on")
        try:
            out = pd.DataFrame(model.predict(example))
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{ref.uri} fails to predict its input example: {_first_line(exc)}") from None
        num = out.select_dtypes("number").drop(columns=["store_id", "product_id"], errors="ignore")
        if len(out) != len(example) or "mean" not in num:
            raise DataError(f"{ref.uri} predicts {len(out)} rows without a numeric 'mean' for the "
                            f"{len(example)} rows of its input example")
        values = num.to_numpy(float)
        if not np.isfinite(values).all() or (values < 0).any():
            bad = int((~np.isfinite(values) | (values < 0)).any(axis=1).sum())
            raise DataError(f"{ref.uri} predicts non-finite or negative demand on {bad} of {len(out)} rows of its "
                            "input example")


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
    _failed: dict[tuple, tuple[str, float]] = field(default_factory=dict)  # key -> (reason, when refused)
    counts: CountsWatcher | None = None  # started with the poll when the counts are kept in memory
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def retry_refused_s(self) -> float:
        """A refused version is tried again after this long (a registry hiccup must not refuse it for good)."""
        return max(60.0, 20 * self.settings.serving.poll_interval_s)

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
        """One step; True when a new state was installed. Never raises: the watcher must outlive any fault."""
        try:
            return self._poll()
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable cache folder; the next poll tries again
            self._note(f"model watcher: {_first_line(exc)}"
                       + (f"; still serving {self.engine.state.model_version}" if self.engine.state else ""))
            return False

    def _poll(self) -> bool:
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
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[1] < self.retry_refused_s:
            self.engine.last_error = failed[0]
            return False
        try:
            state = self.load(ref, day, key)
        except SourceUnavailable as exc:  # transient: retried on the next poll
            self._note(f"model {ref.version}: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - whatever a bad version raises, it is refused, never fatal
            reason = str(exc) if isinstance(exc, ReplenishError) else _first_line(exc)
            msg = f"model {ref.version} (data date {day}) rejected: {reason}" + (
                f"; still serving {st.model_version}" if st else "")
            self._failed[key] = (msg, time.monotonic())
            self.engine.refused[ref.version] = reason
            refused_counter().labels(model_version=ref.version).inc()
            self._note(msg)
            return False
        self.engine.swap(state)
        self._failed.pop(key, None)
        self.engine.refused.pop(ref.version, None)
        log.info("serving model %s (%s) data date %s: %d order dates, loaded in %.1f s", state.model_version,
                 state.model_source, state.data_date, len(state.windows), state.load_seconds)
        return True

    def load(self, ref: ModelRef, day: date, key: tuple):
        check_loadable(ref, self.settings)
        cached = read_cache(ref.cache_root, ref.version, day)
        master = self.engine.source.master()
        hourly = hourly_profiles(str(resolve_path(self.settings.features.out_dir)), self.settings.training.hourly)
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
                try:
                    self.poll_once()
                except Exception as exc:  # noqa: BLE001 - last resort: even a logging fault must not end it
                    log.error("model watcher step failed: %s", _first_line(exc))
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
    source = SourceReader(source_url(settings), settings.source.tables, s.source_timeout_s,
                          s.source_query_timeout_s, s.source_recycle_s)
    engine = Engine(settings, source)
    watcher = ModelWatcher(engine, settings)
    watcher.start()
    return engine, watcher
