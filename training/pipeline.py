"""The jobs behind ``replenish train | backtest | promote | tune`` as plain functions (the CLI only parses options).

Each job logs one MLflow run. ``train`` backtests first (the evidence ``promote`` compares), then fits the final
model on all data with the uncertainty fitted on the backtest's out-of-sample rows, and registers it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml

from forecasting.config import Settings, TrainingConfig, resolve_path
from forecasting.errors import ConfigError, DataError
from training import tracking
from training.backtest import Backtester, BacktestResult, lgbm_params, per_series
from training.calibration import fit_calibration
from training.data import ModelFrame, UnconstrainRule, load_feature_store, to_model_frame
from training.forecaster import DemandForecaster
from training.future import calendar_of
from training.hourly_eval import hourly_backtest
from training.source import EvalSources, load_eval_sources

Progress = Callable[[str], None]


def load_frame(features_dir: str | Path, cfg: TrainingConfig | None = None) -> ModelFrame:
    """The model frame of a feature store; ``cfg`` gives the censoring rule (``training.censored_min_share`` /
    ``censored_weight``; the defaults otherwise)."""
    daily, manifest = load_feature_store(resolve_path(features_dir))
    rule = None if cfg is None else UnconstrainRule(min_share=cfg.censored_min_share, weight=cfg.censored_weight)
    return to_model_frame(daily, manifest, rule)


def load_hourly_panel(features_dir: str | Path, since: pd.Timestamp | None = None) -> pd.DataFrame | None:
    """The feature store's hourly panel from ``since`` (exclusive) on, for the backtest's hour-level scores; None
    when the store has none."""
    from features.store import FeatureStore

    fs = FeatureStore(resolve_path(features_dir))
    if not fs.exists() or "hourly" not in fs.datasets():
        return None
    start = None if since is None else (since + pd.Timedelta(days=1)).date()
    h = fs.read("hourly", start=start, columns=["store_id", "product_id", "date", "local_hour", "qty", "censored"])
    return h if len(h) else None


def eval_sources(db: str | None, settings: Settings, since: pd.Timestamp | None = None,
                 features_dir: str | Path | None = None) -> EvalSources:
    """BOM, truth and incumbent records (and, with ``features_dir``, the hourly panel from ``lookback_days``
    before ``since``); none when the default SQLite file does not exist (no source to read)."""
    out = _db_sources(db, settings, since)
    if features_dir is not None and settings.training.hourly.score:
        back = None if since is None else since - pd.Timedelta(days=settings.training.hourly.lookback_days)
        out.hourly = load_hourly_panel(features_dir, back)
    return out


def _db_sources(db: str | None, settings: Settings, since: pd.Timestamp | None = None) -> EvalSources:
    from sqlalchemy.engine import make_url

    from forecasting.source.db import open_source

    url = db or settings.source.url
    if db is None:
        u = make_url(url)
        if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
            if not (resolve_path(u.database)).exists():
                return EvalSources()
            url = f"sqlite:///{resolve_path(u.database)}"
    engine, schema = open_source(url, settings.source.tables, settings.source.connect_timeout_s, readonly=True)
    try:
        return load_eval_sources(engine, schema, since)
    finally:
        engine.dispose()


def read_tuned(cfg: TrainingConfig) -> dict[str, Any]:
    """LightGBM parameters a person applied with ``replenish tune apply RUN_ID`` (empty when none were).

    Why the provenance check: a file without the MLflow run it came from (an older ``tune`` wrote one on its own)
    would change training silently; it is refused with what to do instead.
    """
    doc = tuned_doc(cfg)
    return dict(doc["lgbm"]) if doc else {}


def tuned_doc(cfg: TrainingConfig) -> dict[str, Any] | None:
    """The applied tuning file (``training.tuned_params``) with its provenance, or None when none is applied."""
    if not cfg.tuned_params:
        return None
    p = resolve_path(cfg.tuned_params)
    if not p.is_file():
        return None
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("lgbm"), dict):
        raise ConfigError(f"{p}: expected a mapping with an 'lgbm' section (written by `replenish tune apply`)")
    if not data.get("run_id"):
        raise ConfigError(f"{p} names no tuning run: apply one with `replenish tune apply RUN_ID`, or delete the file "
                          "to train with training.lgbm")
    return data


def params_origin(cfg: TrainingConfig) -> str:
    """Where the LightGBM parameters come from, in words (``train`` and ``backtest`` print it)."""
    doc = tuned_doc(cfg)
    if doc is None:
        return "training.lgbm in the configuration (no tuning applied)"
    return (f"training.lgbm overridden by {cfg.tuned_params} (MLflow tuning run {doc['run_id']}, applied "
            f"{doc.get('applied_at', '?')})")


def fingerprint(frame: ModelFrame, result: BacktestResult) -> str:
    """Same data and same origins/horizon -> same backtest: what makes two runs' metrics comparable."""
    h = hashlib.sha1(pd.util.hash_pandas_object(frame.df[["unique_id", "ds", "y"]], index=False).to_numpy())
    h.update(repr((result.metrics["origins"], result.metrics["horizon"])).encode())
    return h.hexdigest()[:16]


def run_backtest(
    frame: ModelFrame,
    cfg: TrainingConfig,
    sources: EvalSources | None = None,
    params: dict[str, Any] | None = None,
    origins: int | None = None,
    step: int | None = None,
    horizon: int | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    params = params if params is not None else lgbm_params(cfg, read_tuned(cfg))
    t0 = time.perf_counter()
    result = Backtester(cfg, params, sources, progress).run(frame, origins, step, horizon)
    if cfg.hourly.score and sources is not None and sources.hourly is not None:
        t1 = time.perf_counter()
        if progress:
            progress("hour-level scores (the final model split over the hours)")
        result.metrics["hourly"] = hourly_backtest(result.preds, sources.hourly, cfg.hourly, cfg.quantiles,
                                                   sources.truth_hourly, sources.truth_alpha, calendar_of(frame))
        result.timings["hourly"] = time.perf_counter() - t1
    result.timings["total"] = time.perf_counter() - t0
    result.metrics["fingerprint"] = fingerprint(frame, result)
    result.metrics["params"] = params
    return result


def log_per_series(result: BacktestResult) -> None:
    """Per-series backtest results (``training.backtest.per_series``) as ``backtest/per_series.parquet``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_series.parquet"
        per_series(result.preds, [*result.models, "final"]).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), "backtest")


def _log_run_common(settings: Settings, frame: ModelFrame, params: dict[str, Any], job: str) -> None:
    cfg = settings.training
    tracking.log_common(
        settings.model_dump(mode="json")["training"],
        frame.manifest,
        {**{f"lgbm.{k}": v for k, v in params.items()}, "job": job, "strategy": cfg.strategy,
         "horizon": cfg.horizon, "series": frame.df["unique_id"].nunique(), "rows": len(frame.df),
         "exog": frame.exog, "static": frame.static, "last_date": str(frame.last_date.date())},
    )


def backtest_job(
    settings: Settings, frame: ModelFrame, sources: EvalSources, origins: int | None = None, step: int | None = None,
    horizon: int | None = None, progress: Progress | None = None, log: bool = True, started_ms: int | None = None,
) -> BacktestResult:
    cfg = settings.training
    started = started_ms or tracking.now_ms()  # the run starts when the job did (the caller's loading included)
    params = lgbm_params(cfg, read_tuned(cfg))
    result = run_backtest(frame, cfg, sources, params, origins, step, horizon, progress)
    if log:
        tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
        with tracking.start_run("backtest", started) as run:
            _log_run_common(settings, frame, params, "backtest")
            result.metrics["headline"] = tracking.log_backtest(result, sources=sources)
            log_per_series(result)
            mlflow.set_tags({"job": "backtest", "backtest_fingerprint": result.metrics["fingerprint"],
                             "final_model": result.metrics["final"]})
            mlflow.log_metrics({f"time.{k}": v for k, v in result.timings.items()})
            result.metrics["run_id"] = run.info.run_id
    return result


def train_job(
    settings: Settings, frame: ModelFrame, sources: EvalSources, progress: Progress | None = None,
    register: bool = True, started_ms: int | None = None,
) -> dict[str, Any]:
    """Backtest, fit the final model on all data, log everything and register the model version."""
    cfg = settings.training
    started = started_ms or tracking.now_ms()  # the run starts when the job did (the caller's loading included)
    params = lgbm_params(cfg, read_tuned(cfg))
    train_fp = tracking.train_fingerprint(frame, settings.model_dump(mode="json")["training"], params)
    result = run_backtest(frame, cfg, sources, params, progress=progress)
    kind = "blend"  # the backtest's final (a blend, or one model when training.final forces it) = these weights
    label = result.metrics["final"]
    (progress or (lambda _m: None))(f"fitting final model ({label}) on all data")
    t0 = time.perf_counter()
    model = DemandForecaster(cfg, kind, params, result.uncertainty.get(result.final), result.weights).fit(frame)
    if cfg.calibration.enabled:  # window calibration from the backtest's out-of-sample rows of the final model
        raw = result.preds.assign(final=result.preds["final_raw"])  # the blend before any calibration
        model.calibration = fit_calibration(raw, frame.df, "final", model.uncertainty, cfg.calibration, sources.bom)
    fit_s = time.perf_counter() - t0
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
    with tracking.start_run(f"train-{label}", started) as run:
        _log_run_common(settings, frame, params, "train")
        head = tracking.log_backtest(result, sources=sources)
        log_per_series(result)
        mlflow.log_metrics({f"time.{k}": v for k, v in result.timings.items()} | {"time.final_fit": fit_s})
        imp = model.feature_importance()
        if imp is not None:
            mlflow.log_dict({k: float(v) for k, v in imp.items()}, "model/feature_importance.json")
            mlflow.log_figure(_importance_figure(imp), "plots/feature_importance.png")
        mlflow.log_dict({k: list(v) for k, v in model.uncertainty.items()}, "model/uncertainty.json")
        mlflow.log_dict(model.weights, "model/blend_weights.json")
        if model.calibration is not None:
            mlflow.log_dict(model.calibration.to_dict(), "model/calibration.json")
            mlflow.log_metric("calibration.store_dispersion", model.calibration.store_dispersion)
        info, example, expected = tracking.log_forecaster(model, cfg.registry_name if register else None)
        mlflow.set_tags({"job": "train", "backtest_fingerprint": result.metrics["fingerprint"], "final_model": label,
                         "train_fingerprint": train_fp})
        out = {
            "headline": head,
            "train_fingerprint": train_fp,
            "run_id": run.info.run_id,
            "model_uri": info.model_uri,
            "version": getattr(info, "registered_model_version", None),
            "final": label,
            "metrics": result.metrics["models"],
            "fingerprint": result.metrics["fingerprint"],
            "timings": {**result.timings, "final_fit": fit_s},
        }
    out["example"], out["expected"], out["forecaster"] = example, expected, model
    return out


def _importance_figure(imp: pd.Series):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = imp.head(20)[::-1]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.barh(top.index, top.to_numpy())
    ax.set_title("What the LightGBM model relies on (top 20 features)", fontsize=10)
    ax.set_xlabel("total split gain (LightGBM)")
    fig.tight_layout()
    plt.close(fig)
    return fig


PROMOTE_KEYS = ("window_spl", "window_bias", "wape", "wape_mean", "coverage_80", "coverage_95")


def _same_wape(ch: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    """The challenger's WAPE as the champion's run scored it: a run logged before ``wape_mean`` existed scored
    ``wape`` on the mean, newer runs on the predictive median (``wape_mean`` beside)."""
    if np.isfinite(base.get("wape_mean", np.nan)) or not np.isfinite(ch.get("wape_mean", np.nan)):
        return ch
    return {**ch, "wape": ch["wape_mean"]}


def _run_metrics(client, run_id: str, model: str) -> dict[str, float]:
    m = client.get_run(run_id).data.metrics
    return {k: m.get(f"bt.models.{model}.{k}", float("nan")) for k in PROMOTE_KEYS}


def promote_job(
    settings: Settings,
    version: int | None = None,
    frame: ModelFrame | None = None,
    sources: EvalSources | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Give the challenger (``version`` or the newest) the ``champion`` alias when the configured rule holds.

    Same backtest: the challenger's logged metrics are compared with the champion's when their backtest
    fingerprints match; otherwise the champion's configuration is backtested again on ``frame`` (needed then).
    ``force`` promotes anyway (recorded as such). The decision and its reason are tagged on the challenger's run
    and model version.
    """
    from mlflow import MlflowClient

    cfg = settings.training
    rule = cfg.promote
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
    client = MlflowClient()
    name = cfg.registry_name
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise DataError(f"no registered model {name!r}: run `replenish train` first")
    if version is None:
        chall = max(versions, key=lambda v: int(v.version))
    else:
        match = [v for v in versions if int(v.version) == int(version)]
        if not match:
            raise DataError(f"{name!r} has no version {version}")
        chall = match[0]
    champ = tracking.champion_version(client, name)
    ch = _run_metrics(client, chall.run_id, rule.metric_model)
    ch_fp = client.get_run(chall.run_id).data.tags.get("backtest_fingerprint")
    in_band = (rule.coverage_80[0] <= ch["coverage_80"] <= rule.coverage_80[1]
               and rule.coverage_95[0] <= ch["coverage_95"] <= rule.coverage_95[1])
    key = rule.metric
    if key == "window_spl" and not np.isfinite(ch.get("window_spl", np.nan)):
        key = "wape"  # a run logged before the window loss existed
    unbiased = key != "window_spl" or abs(ch.get("window_bias", 0.0)) <= rule.max_bias
    guard = "" if unbiased else (f"; window totals biased {ch['window_bias']:+.1%}, outside the "
                                 f"+-{rule.max_bias:.0%} guard")
    decision = {"challenger": int(chall.version), "challenger_metrics": ch, "coverage_in_band": bool(in_band),
                "metric": key, "bias_ok": bool(unbiased)}
    if champ is None:
        ok = in_band and unbiased
        reason = f"no champion yet; coverage {'in' if in_band else 'out of'} band{guard}"
    elif int(champ.version) == int(chall.version):
        ok, reason = False, "challenger already is the champion"
    else:
        champ_fp = client.get_run(champ.run_id).data.tags.get("backtest_fingerprint")
        if champ_fp == ch_fp:
            base = _run_metrics(client, champ.run_id, rule.metric_model)
            how = "logged metrics (same backtest)"
        else:
            if frame is None:
                raise DataError("champion was backtested on other data: pass the feature store to re-run it")
            champ_cfg = TrainingConfig.model_validate(_champion_cfg(client, champ))
            champ_params = _champion_params(client, champ)
            res = run_backtest(frame, champ_cfg, sources, champ_params, progress=progress)
            if res.metrics["fingerprint"] != ch_fp:
                raise DataError("challenger was backtested on other data: re-run `replenish train` first")
            base = {k: res.metrics["models"]["final"].get(k, float("nan")) for k in PROMOTE_KEYS}
            how = "champion re-backtested on the challenger's data"
        if not np.isfinite(base.get(key, np.nan)):
            key = "wape"
        if key == "wape":
            ch = _same_wape(ch, base)
        gain = (base[key] - ch[key]) / base[key] if base[key] > 0 else 0.0
        decision.update(champion=int(champ.version), champion_metrics=base, rel_improvement=gain, compared_by=how,
                        metric=key)
        ok = gain >= rule.min_rel_improvement and in_band and unbiased
        loss_name = {"window_spl": "window pinball loss", "wape": "WAPE"}[key]
        reason = (f"{loss_name} {ch[key]:.4f} vs champion {base[key]:.4f} ({gain:+.2%}, need >= "
                  f"{rule.min_rel_improvement:.0%}); coverage {'in' if in_band else 'out of'} band{guard}")
    if force and not ok:
        ok, reason = True, f"forced ({reason})"
    decision.update(promoted=ok, reason=reason)
    tags = {"promote.decision": "promoted" if ok else "rejected", "promote.reason": reason}
    for k, v in tags.items():
        client.set_tag(chall.run_id, k, v)
        client.set_model_version_tag(name, chall.version, k, v)
    if ok:
        client.set_registered_model_alias(name, tracking.CHAMPION, chall.version)
    return decision


def _champion_cfg(client, version) -> dict[str, Any]:
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="config/training.json")
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _champion_params(client, version) -> dict[str, Any]:
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="backtest/metrics.json")
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")).get("params", {})
