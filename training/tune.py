"""``replenish tune``: Optuna (seeded TPE + median pruner) over LightGBM parameters, scored by the selection loss.

The objective is the one the final blend and ``promote`` use (``training.blend``: scaled pinball of protection-window
totals at the policy's service levels, ``training.selection``), not WAPE, which rewards under-forecasting. Each trial
walks the tuning origins oldest first and reports the running loss after each, so the pruner stops weak
trials early. Only LightGBM is fitted (no baselines, no calibration): tuning targets the point forecast.

Why the origins sit before the backtest's: parameters chosen on the windows the backtest later scores would make the
backtest (and the promotion rule built on it) flatter the tuned model. The tuning windows therefore end on or before
the first backtest origin. The current parameters run first (an enqueued trial), and the best parameters are written
to the YAML file that ``train`` and ``backtest`` merge over ``training.lgbm`` only when they beat the current ones by
``tune.min_rel_improvement``; otherwise the file is left as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError
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
    out: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Search, log every trial as a nested run, and write the winner only when it beats the current parameters."""
    cfg = settings.training
    tcfg = cfg.tune
    trials = trials or tcfg.trials
    out_path = resolve_path(out or tcfg.out)
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
                    raise optuna.TrialPruned()
            if progress:
                progress(f"trial {trial.number}: window pinball loss {loss:.4f}")
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        # no pruning on the first window alone: one week is too noisy to judge a trial by
        pruner=optuna.pruners.MedianPruner(n_startup_trials=tcfg.startup_trials, n_warmup_steps=1),
    )
    study.enqueue_trial(_current(base))
    with mlflow.start_run(run_name="tune"):
        mlflow.set_tag("job", "tune")
        mlflow.log_dict(frame.manifest or {}, "features/manifest.json")
        mlflow.log_dict(settings.model_dump(mode="json"), "config/settings.json")
        mlflow.log_params({"trials": trials, "origins": tcfg.origins, "horizon": h,
                           "tuning_origins": ",".join(str(c.date()) for c in cuts)})
        study.optimize(objective, n_trials=trials, timeout=tcfg.timeout_s)
        baseline = float(study.trials[0].value) if study.trials[0].value is not None else float("inf")
        best = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in study.best_params.items()}
        improved = study.best_value <= baseline * (1 - tcfg.min_rel_improvement)
        mlflow.log_metrics({"best_window_spl": study.best_value, "current_window_spl": baseline})
        mlflow.set_tag("written", str(improved).lower())
        mlflow.log_dict(best, "tuned_lgbm.json")
    if improved:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        doc = {"lgbm": best, "best_window_spl": float(study.best_value), "current_window_spl": baseline,
               "trials": len(study.trials), "origins": [str(c.date()) for c in cuts], "horizon": h}
        tmp = Path(out_path).with_suffix(".tmp")
        tmp.write_text(
            "# Written by `replenish tune`; merged over training.lgbm by train and backtest.\n"
            + yaml.safe_dump(doc, sort_keys=False),
            encoding="utf-8",
        )
        tmp.replace(out_path)  # atomic: train never reads half a file
    return {"best_value": float(study.best_value), "current_value": baseline, "best_params": best,
            "trials": len(study.trials), "written": improved, "out": str(out_path)}
