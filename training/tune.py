"""``replenish tune``: Optuna (seeded TPE + median pruner) over LightGBM parameters, scored by backtest WAPE.

Each trial walks the tuning origins oldest first and reports the running WAPE after each, so the pruner stops weak
trials early. Only LightGBM is fitted (no baselines, no calibration): tuning targets the point forecast. The best
parameters go to a YAML file that ``train`` and ``backtest`` merge over ``training.lgbm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import yaml

from forecasting.config import Settings, resolve_path
from training import tracking
from training.backtest import Backtester, lgbm_params
from training.data import ModelFrame
from training.pipeline import Progress, read_tuned


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


def tune_job(
    settings: Settings,
    frame: ModelFrame,
    trials: int | None = None,
    out: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    cfg = settings.training
    tcfg = cfg.tune
    trials = trials or tcfg.trials
    out_path = resolve_path(out or tcfg.out)
    base = lgbm_params(cfg, read_tuned(cfg))
    h = cfg.horizon
    cuts = Backtester(cfg, base, with_stats=False).cutoffs(frame, tcfg.origins, cfg.step_days, h)
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **suggest(trial)}
        bt = Backtester(cfg, params, with_stats=False)
        abs_err = total = 0.0
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(params)
            for i, c in enumerate(cuts):
                p = bt.forecast_at(frame, c, h)
                p = p[~p["censored"]]
                abs_err += float((p["lightgbm"] - p["y"]).abs().sum())
                total += float(p["y"].sum())
                wape = abs_err / total if total > 0 else float("nan")
                mlflow.log_metric("wape", wape, step=i)
                trial.report(wape, i)
                if trial.should_prune():
                    mlflow.set_tag("pruned", "true")
                    raise optuna.TrialPruned()
            if progress:
                progress(f"trial {trial.number}: WAPE {wape:.4f}")
        return wape

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    with mlflow.start_run(run_name="tune"):
        mlflow.set_tag("job", "tune")
        mlflow.log_dict(frame.manifest or {}, "features/manifest.json")
        mlflow.log_params({"trials": trials, "origins": tcfg.origins, "horizon": h})
        study.optimize(objective, n_trials=trials, timeout=tcfg.timeout_s)
        best = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in study.best_params.items()}
        mlflow.log_metric("best_wape", study.best_value)
        mlflow.log_dict(best, "tuned_lgbm.json")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    doc = {"lgbm": best, "best_wape": float(study.best_value), "trials": len(study.trials),
           "origins": [str(c.date()) for c in cuts], "horizon": h}
    Path(out_path).write_text(
        "# Written by `replenish tune`; merged over training.lgbm by train and backtest.\n"
        + yaml.safe_dump(doc, sort_keys=False),
        encoding="utf-8",
    )
    return {"best_value": float(study.best_value), "best_params": best, "trials": len(study.trials),
            "out": str(out_path)}
