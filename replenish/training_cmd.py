"""``replenish train | backtest | promote | tune``: models, rolling-origin evidence, the champion, tuning."""

from __future__ import annotations

import typer

from replenish.common import console, emit_json, err_console, settings

DB = typer.Option(None, "--db", help="Source database URL (BOM, ground truth, incumbent records; optional).")
FEATURES = typer.Option(None, "--features", help="Feature store directory (default: features.out_dir).")
CONFIG = typer.Option(None, "--config", help="A YAML file merged over configs/default.yaml.")


def _inputs(
    db: str | None, features: str | None, config: str | None, horizon: int | None = None,
    origins: int | None = None, step: int | None = None,
):
    """Settings, the model frame and the evaluation sources (truth/incumbent read only for the scored dates)."""
    import pandas as pd

    from training.pipeline import eval_sources, load_frame

    cfg = settings(config)
    frame = load_frame(features or cfg.features.out_dir)
    t = cfg.training
    days = (horizon or t.horizon) * (1 + t.calib_windows) + (step or t.step_days) * max(origins or 0, t.origins) + 1
    return cfg, frame, eval_sources(db, cfg, frame.last_date - pd.Timedelta(days=days))


def _say(msg: str) -> None:
    err_console.print(f"[dim]{msg}[/]", highlight=False)


def _table(models: dict) -> None:
    from rich.table import Table

    tab = Table("model", "WAPE", "MASE", "bias", "cov80", "cov95", "SPL")

    def f(v):
        return "" if v is None else f"{v:.3f}"

    for name, m in models.items():
        label = f"final ({m['model']})" if name == "final" else name
        tab.add_row(label, *(f(m.get(k)) for k in ("wape", "mase", "bias", "coverage_80", "coverage_95", "spl")))
    console.print(tab)


def backtest(
    db: str = DB,
    features: str = FEATURES,
    origins: int = typer.Option(None, "--origins", min=1, help="Rolling origins (default from configs: 4)."),
    step: int = typer.Option(None, "--step", min=1, help="Days between origins (default 7)."),
    horizon: int = typer.Option(None, "--horizon", min=1, help="Days forecast from each origin (default 14)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics object on stdout."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log an MLflow run."),
    config: str = CONFIG,
) -> None:
    """Rolling-origin backtest of every model (WAPE, MASE, bias, scaled pinball, coverage) at product and material
    level, by segment and horizon; oracle and incumbent entries when the source has them."""
    from training.pipeline import backtest_job

    cfg, frame, sources = _inputs(db, features, config, horizon, origins, step)
    res = backtest_job(cfg, frame, sources, origins, step, horizon, progress=_say, log=not no_log)
    if as_json:
        emit_json(res.metrics)
    else:
        _table(res.metrics["models"])
        console.print(f"origins {', '.join(res.metrics['origins'])}; final = {res.metrics['final']}; "
                      f"{res.timings['total']:.0f} s")


def train(
    db: str = DB,
    features: str = FEATURES,
    no_register: bool = typer.Option(False, "--no-register", help="Log the model without registering it."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary on stdout."),
    config: str = CONFIG,
) -> None:
    """Backtest, fit the final model on all data, log the run to MLflow and register a model version."""
    from training.pipeline import train_job

    cfg, frame, sources = _inputs(db, features, config)
    out = train_job(cfg, frame, sources, progress=_say, register=not no_register)
    summary = {k: out[k] for k in ("run_id", "model_uri", "version", "final", "fingerprint", "metrics", "timings")}
    if as_json:
        emit_json(summary)
    else:
        _table(out["metrics"])
        console.print(f"run {out['run_id']}: {cfg.training.registry_name} version {out['version']} ({out['final']})")


def promote(
    version: int = typer.Option(None, "--version", help="Model version to consider (default: the newest)."),
    db: str = DB,
    features: str = FEATURES,
    force: bool = typer.Option(False, "--force", help="Promote even if the rule does not hold (recorded)."),
    as_json: bool = typer.Option(False, "--json"),
    config: str = CONFIG,
) -> None:
    """Set the `champion` alias when the challenger beats the champion on the same backtest (rule in configs)."""
    from pathlib import Path

    from forecasting.config import resolve_path
    from training.pipeline import eval_sources, load_frame, promote_job
    from training.source import EvalSources

    cfg = settings(config)
    fdir = resolve_path(features or cfg.features.out_dir)
    frame = load_frame(fdir) if Path(fdir).exists() else None
    sources = eval_sources(db, cfg) if frame is not None else EvalSources()
    out = promote_job(cfg, version, frame, sources, progress=_say, force=force)
    if as_json:
        emit_json(out)
    else:
        verdict = "[green]promoted[/]" if out["promoted"] else "[yellow]not promoted[/]"
        console.print(f"version {out['challenger']}: {verdict}: {out['reason']}")


def tune(
    trials: int = typer.Option(None, "--trials", min=1, help="Optuna trials (default from configs)."),
    db: str = DB,
    features: str = FEATURES,
    out: str = typer.Option(None, "--out", help="Where to write the best parameters (default tune.out)."),
    config: str = CONFIG,
) -> None:
    """Optuna search of LightGBM parameters on a short backtest (each trial a nested MLflow run)."""
    from training.tune import tune_job

    cfg, frame, sources = _inputs(db, features, config)
    res = tune_job(cfg, frame, trials=trials, out=out, progress=_say)
    head = f"best WAPE {res['best_value']:.4f} vs current {res['current_value']:.4f} after {res['trials']} trials"
    if res["written"]:
        console.print(f"{head} -> {res['out']}")
    else:
        console.print(f"{head}: not better by tune.min_rel_improvement, current parameters kept")


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
    app.command("train")(train)
    app.command("promote")(promote)
    app.command("tune")(tune)
