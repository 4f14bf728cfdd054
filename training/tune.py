"""``replenish tune``: Optuna (seeded TPE + median pruner) over LightGBM parameters, scored by the selection loss.

The objective is the one the final blend and ``promote`` use (``training.blend``: scaled pinball of protection-window
totals at the policy's service levels, ``training.selection``), not WAPE, which rewards under-forecasting. Each trial
walks the tuning origins oldest first and reports the running loss after each, so the pruner stops weak
trials early. Only LightGBM is fitted (no baselines, no calibration): tuning targets the point forecast.

Why the origins sit before the backtest's: parameters chosen on the windows the backtest later scores would make the
backtest (and the promotion rule built on it) flatter the tuned model. The tuning windows therefore end on or before
the first backtest origin. The current parameters run first (an enqueued trial).

Why tuning never changes training by itself: a three-trial search once won 2.2% on its own origins and the next
training used it without a word. A search is an MLflow run (the best parameters as its ``tuned_lgbm.json``); a
person applies it with ``replenish tune apply RUN_ID``, which writes ``training.tuned_params`` (a file to commit)
with the run it came from, and ``train`` prints which parameters it used and where they came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml

from forecasting.config import Settings, resolve_path
from forecasting.errors import ConfigError, DataError
from training import tracking
from training.backtest import MIN_TRAIN_DAYS, Backtester, lgbm_params, selection_loss
from training.data import ModelFrame
from training.pipeline import Progress, read_tuned

SPACE = ("num_leaves", "learning_rate", "n_estimators", "min_child_samples", "colsample_bytree", "subsample",
         "reg_lambda", "tweedie_variance_power")


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "tweedie_variance_power": trial.suggest_float("tweedie_variance_power", 1.05, 1.5),
    }


def tuning_cutoffs(settings: Settings, frame: ModelFrame) -> list[pd.Timestamp]:
    """Tuning origins, a step apart, whose windows all end on or before the backtest's first origin."""
    cfg = settings.training
    h = cfg.horizon
    first_bt = Backtester(cfg, {}, with_stats=False).cutoffs(frame, cfg.origins, cfg.step_days, h)[0]
    cuts = [first_bt - pd.Timedelta(days=h + cfg.step_days * k) for k in range(cfg.tune.origins - 1, -1, -1)]
    if (cuts[0] - frame.df["ds"].min()).days + 1 < MIN_TRAIN_DAYS:
        raise DataError(
            f"too little history before the backtest's first origin {first_bt.date()} for {cfg.tune.origins} tuning "
            "origins: reduce tune.origins or training.origins"
        )
    return cuts


def _current(params: dict[str, Any]) -> dict[str, Any]:
    """The current parameters restricted to the search space, so they can run as the first (enqueued) trial."""
    return {k: params[k] for k in SPACE if k in params}


def tune_job(
    settings: Settings,
    frame: ModelFrame,
    trials: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Search and log every trial as a nested run of one ``tune`` run; never changes what ``train`` uses."""
    cfg = settings.training
    tcfg = cfg.tune
    trials = trials or tcfg.trials
    started = tracking.now_ms()
    base = lgbm_params(cfg, read_tuned(cfg))
    h = cfg.horizon
    cuts = tuning_cutoffs(settings, frame)
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **suggest(trial)}
        bt = Backtester(cfg, params, with_stats=False)
        seen = []
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(params)
            for i, c in enumerate(cuts):
                seen.append(bt.forecast_at(frame, c, h))
                loss = selection_loss(pd.concat(seen, ignore_index=True), "lightgbm", cfg.selection)
                mlflow.log_metric("window_spl", loss, step=i)
                trial.report(loss, i)
                if trial.should_prune():
                    mlflow.set_tag("pruned", "true")
                    if progress:
                        progress(f"trial {trial.number + 1} of {trials}: stopped early (window pinball loss "
                                 f"{loss:.4f})")
                    raise optuna.TrialPruned()
            if progress:
                progress(f"trial {trial.number + 1} of {trials}: window pinball loss {loss:.4f}")
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        # no pruning on the first window alone: one week is too noisy to judge a trial by
        pruner=optuna.pruners.MedianPruner(n_startup_trials=tcfg.startup_trials, n_warmup_steps=1),
    )
    study.enqueue_trial(_current(base))
    with tracking.start_run("tune", started) as run:
        mlflow.set_tag("job", "tune")
        mlflow.log_dict(frame.manifest or {}, "features/manifest.json")
        mlflow.log_dict(settings.model_dump(mode="json"), "config/settings.json")
        mlflow.log_params({"trials": trials, "origins": tcfg.origins, "horizon": h,
                           "tuning_origins": ",".join(str(c.date()) for c in cuts)})
        study.optimize(objective, n_trials=trials, timeout=tcfg.timeout_s)
        baseline = float(study.trials[0].value) if study.trials[0].value is not None else float("inf")
        best = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in study.best_params.items()}
        better = study.best_value <= baseline * (1 - tcfg.min_rel_improvement)
        gain = (baseline - study.best_value) / baseline if baseline > 0 and np.isfinite(baseline) else 0.0
        mlflow.log_metrics({f"{tracking.HEADLINE}.best_window_spl": study.best_value,
                            f"{tracking.HEADLINE}.current_window_spl": baseline,
                            f"{tracking.HEADLINE}.rel_improvement": gain})
        mlflow.set_tag("recommended", str(better).lower())
        mlflow.set_tag("mlflow.note.content",
                       f"Best of {len(study.trials)} trials: window pinball loss {study.best_value:.4f} vs "
                       f"{baseline:.4f} with the "
                       f"current parameters ({gain:+.1%}) on the tuning origins "
                       f"{', '.join(str(c.date()) for c in cuts)}. "
                       f"{'Worth applying' if better else 'Not worth applying'} (threshold "
                       f"{tcfg.min_rel_improvement:.0%}): `replenish tune apply {run.info.run_id}`.")
        doc = {"lgbm": best, "best_window_spl": float(study.best_value), "current_window_spl": baseline,
               "trials": len(study.trials), "origins": [str(c.date()) for c in cuts], "horizon": h}
        mlflow.log_dict(doc, "tuned_lgbm.json")
    return {"run_id": run.info.run_id, "best_value": float(study.best_value), "current_value": baseline,
            "rel_improvement": gain, "best_params": best, "trials": len(study.trials), "recommended": better}


def apply_tuned(settings: Settings, run_id: str) -> dict[str, Any]:
    """Write a tuning run's best parameters to ``training.tuned_params`` (atomically), with the run they came from;
    ``train`` and ``backtest`` use them from then on. The file is meant to be committed: a reviewed change."""
    from mlflow.exceptions import MlflowException

    cfg = settings.training
    if not cfg.tuned_params:
        raise ConfigError("training.tuned_params is null: set it to a file (e.g. configs/tuned_lgbm.yaml) to apply "
                          "tuned parameters")
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
    try:
        run = mlflow.get_run(run_id)
        doc = mlflow.artifacts.load_dict(f"runs:/{run_id}/tuned_lgbm.json")
    except MlflowException:
        raise DataError(f"no tuning run {run_id!r} in {settings.mlflow.tracking_uri}: `replenish tune` prints the "
                        "run id (or see the experiment's `tune` runs in `replenish mlflow ui`)") from None
    if run.data.tags.get("job") != "tune" or not isinstance(doc.get("lgbm"), dict):
        raise DataError(f"run {run_id} is not a tuning run (its job is {run.data.tags.get('job')!r})")
    out = {"run_id": run_id, "applied_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **doc}
    path = resolve_path(cfg.tuned_params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(
        f"# LightGBM parameters applied from MLflow tuning run {run_id} by `replenish tune apply`;\n"
        "# merged over training.lgbm by train and backtest. Delete this file to go back to training.lgbm.\n"
        + yaml.safe_dump(out, sort_keys=False),
        encoding="utf-8",
    )
    tmp.replace(path)  # atomic: train never reads half a file
    return {"path": str(path), **out}
