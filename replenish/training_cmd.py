"""``replenish train | backtest | promote | tune``: models, rolling-origin evidence, the champion, tuning.

Every command that logs an MLflow run prints its run id, and ``train`` / ``backtest`` say which LightGBM parameters
they used and where those came from (configuration, or a tuning run a person applied).
"""

from __future__ import annotations

import typer

from replenish.common import CONFIG, FEATURES, console, emit_json, err_console, example, json_flag, settings

DB = typer.Option(None, "--db", metavar="URL",
                  help="Source database URL, read only, for recipes (BOM), ground truth, incumbent records and store "
                       "and product names; e.g. sqlite:///data/luckin.db (default: source.url in configs/; the "
                       "backtest runs without it).")


def _inputs(
    db: str | None, features: str | None, config: str | None, horizon: int | None = None,
    origins: int | None = None, step: int | None = None, until: str | None = None,
):
    """Settings, the model frame (cut at ``until``, inclusive, when given) and the evaluation sources
    (truth/incumbent read only for the scored dates)."""
    from datetime import date

    import pandas as pd

    from forecasting.errors import ConfigError, DataError
    from training.pipeline import eval_sources, load_frame

    cfg = settings(config)
    cut = None
    if until is not None:
        try:
            cut = pd.Timestamp(date.fromisoformat(until))
        except ValueError:
            raise ConfigError(f"--until: not a date (YYYY-MM-DD): {until!r}") from None
    frame = load_frame(features or cfg.features.out_dir, cfg.training)
    if cut is not None:
        if cut < frame.df["ds"].min():
            raise DataError(f"--until {until}: before the history's first day {frame.df['ds'].min().date()}")
        frame = frame.until(cut)
    t = cfg.training
    days = (horizon or t.horizon) * (1 + t.calib_windows) + (step or t.step_days) * max(origins or 0, t.origins) + 1
    return cfg, frame, eval_sources(db, cfg, frame.last_date - pd.Timedelta(days=days),
                                    features or cfg.features.out_dir)


def _say(msg: str) -> None:
    err_console.print(f"[dim]{msg}[/]", highlight=False)


def _params(cfg, quiet: bool = False) -> None:
    """Which LightGBM parameters a job uses and where they came from (stderr, so --json stays clean)."""
    from training.backtest import lgbm_params
    from training.pipeline import params_origin, read_tuned

    p = lgbm_params(cfg.training, read_tuned(cfg.training))
    keys = ("num_leaves", "learning_rate", "n_estimators", "min_child_samples")
    shown = ", ".join(f"{k} {p[k]:g}" if isinstance(p.get(k), float) else f"{k} {p.get(k)}" for k in keys if k in p)
    if not quiet:
        err_console.print(f"LightGBM parameters: {shown} — from {params_origin(cfg.training)}", highlight=False,
                          soft_wrap=True)


def _table(models: dict) -> None:
    from rich.table import Table

    tab = Table("model", "WAPE", "WAPE of mean", "MASE", "bias", "80% interval held", "95% interval held",
                "scaled pinball",
                title="Backtest, store x product x day (WAPE: share of units mis-forecast by the predictive median; "
                      "lower is better)")

    def f(v, pct: bool = False):
        return "" if v is None else (f"{v:.1%}" if pct else f"{v:.3f}")

    for name, m in models.items():
        label = f"final ({m['model']})" if name == "final" else name
        tab.add_row(label, f(m.get("wape")), f(m.get("wape_mean")), f(m.get("mase")), f(m.get("bias")),
                    f(m.get("coverage_80"), True), f(m.get("coverage_95"), True), f(m.get("spl")))
    console.print(tab)


def _headline(head: dict[str, float], label: str) -> None:
    """The headline in plain words under the table."""
    from training.tracking import HEADLINE, describe_headline

    if f"{HEADLINE}.final_wape" in head:
        console.print(describe_headline(head, label, details=False), highlight=False)


def backtest(
    db: str = DB,
    features: str = FEATURES,
    origins: int = typer.Option(None, "--origins", min=1, metavar="N",
                                help="Rolling origins, a whole number >= 1 (default: training.origins, 4)."),
    step: int = typer.Option(None, "--step", min=1, metavar="DAYS",
                             help="Days between origins (default: training.step_days, 7)."),
    horizon: int = typer.Option(None, "--horizon", min=1, metavar="DAYS",
                                help="Days forecast from each origin (default: training.horizon, 14)."),
    until: str = typer.Option(None, "--until", metavar="YYYY-MM-DD",
                              help="Cut the history after this day (inclusive): the origins end by it, so settings "
                                   "chosen on it never see the later period the standard backtest reports."),
    as_json: bool = json_flag("the metrics"),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log an MLflow run."),
    config: str = CONFIG,
) -> None:
    """Rolling-origin backtest of every model against the incumbent and the oracle: WAPE (share of units
    mis-forecast), MASE, bias, interval coverage and scaled pinball, per store x product x day, by segment and by
    days ahead, plus material level. Logs an MLflow run and prints its id. Needs the feature store (`replenish
    features build`)."""
    from training.pipeline import backtest_job
    from training.tracking import now_ms

    started = now_ms()
    cfg, frame, sources = _inputs(db, features, config, horizon, origins, step, until)
    _params(cfg)
    res = backtest_job(cfg, frame, sources, origins, step, horizon, progress=_say, log=not no_log,
                       started_ms=started)
    if as_json:
        emit_json(res.metrics)
        return
    _table(res.metrics["models"])
    _headline(res.metrics.get("headline", {}), res.metrics["final"])
    console.print(f"origins {', '.join(res.metrics['origins'])}; final = {res.metrics['final']}; "
                  f"{res.timings['total']:.0f} s", highlight=False)
    if res.metrics.get("run_id"):
        console.print(f"MLflow run {res.metrics['run_id']} (open with `replenish mlflow ui`)", highlight=False)


def train(
    db: str = DB,
    features: str = FEATURES,
    no_register: bool = typer.Option(False, "--no-register", help="Log the model without registering it."),
    if_changed: bool = typer.Option(False, "--if-changed", help="Skip when a registered version was trained on the "
                                    "same data, code and configuration (what `make demo` does)."),
    as_json: bool = json_flag("the run summary"),
    config: str = CONFIG,
) -> None:
    """Backtest, fit the final model on all data, log one MLflow run and register a model version (promote it
    with `replenish promote`). Prints the LightGBM parameters used and where they came from, the headline
    figures, the run id and the version."""
    from training.tracking import now_ms

    started = now_ms()
    cfg, frame, sources = _inputs(db, features, config)
    _params(cfg)
    if if_changed and not no_register and (known := _registered_same(cfg, frame)) is not None:
        msg = (f"nothing changed since {cfg.training.registry_name} version {known.version} (run {known.run_id}): "
               "same data, code and configuration; not retrained")
        if as_json:
            emit_json({"skipped": True, "version": int(known.version), "run_id": known.run_id, "reason": msg})
        else:
            console.print(msg, highlight=False)
        return
    from training.pipeline import train_job

    out = train_job(cfg, frame, sources, progress=_say, register=not no_register, started_ms=started)
    summary = {k: out[k] for k in ("run_id", "model_uri", "version", "final", "fingerprint", "train_fingerprint",
                                   "headline", "metrics", "timings")}
    if as_json:
        emit_json(summary)
        return
    _table(out["metrics"])
    _headline(out["headline"], out["final"])
    what = (f"{cfg.training.registry_name} version {out['version']}" if out["version"]
            else "model logged, not registered")
    console.print(f"MLflow run {out['run_id']}: {what} ({out['final']})", highlight=False)


def _registered_same(cfg, frame):
    """The registered version trained on this data, code and configuration, or None."""
    from training import tracking
    from training.backtest import lgbm_params
    from training.pipeline import read_tuned

    t = cfg.training
    fp = tracking.train_fingerprint(frame, cfg.model_dump(mode="json")["training"], lgbm_params(t, read_tuned(t)))
    tracking.setup(cfg.mlflow.tracking_uri, t.experiment)
    return tracking.registered_with_fingerprint(t.registry_name, fp)


def promote(
    version: int = typer.Option(None, "--version", min=1, metavar="N",
                                help="Registered model version to consider (default: the newest)."),
    db: str = DB,
    features: str = FEATURES,
    force: bool = typer.Option(False, "--force", help="Promote even if the rule does not hold (recorded on the run "
                               "and the version as forced)."),
    as_json: bool = json_flag("the decision (challenger, champion, metrics, reason)"),
    config: str = CONFIG,
) -> None:
    """Give the newest (or --version) model the `champion` alias when it beats the current champion on the same
    backtest: WAPE better by training.promote.min_rel_improvement (1%) and 80% / 95% interval coverage in band.
    The decision and its reason are tagged on the version's MLflow run."""
    from pathlib import Path

    from forecasting.config import resolve_path
    from training.pipeline import eval_sources, load_frame, promote_job
    from training.source import EvalSources

    cfg = settings(config)
    fdir = resolve_path(features or cfg.features.out_dir)
    frame = load_frame(fdir, cfg.training) if Path(fdir).exists() else None
    sources = eval_sources(db, cfg) if frame is not None else EvalSources()
    out = promote_job(cfg, version, frame, sources, progress=_say, force=force)
    if as_json:
        emit_json(out)
    else:
        verdict = "[green]promoted[/]" if out["promoted"] else "[yellow]not promoted[/]"
        console.print(f"version {out['challenger']}: {verdict}: {out['reason']}", highlight=False)


tune_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring


@tune_app.callback(epilog=example("replenish tune --trials 20",
                                  "replenish tune apply 3f2c9a1e5b7d4c0e8a6f1b2d3c4e5f60"))
def tune(
    ctx: typer.Context,
    trials: int = typer.Option(None, "--trials", min=1, metavar="N",
                               help="Optuna trials, a whole number >= 1 (default: training.tune.trials, 20)."),
    db: str = DB,
    features: str = FEATURES,
    config: str = CONFIG,
) -> None:
    """Search LightGBM parameters with Optuna on origins before the backtest's (no leak), the current parameters
    as trial 0; one MLflow run with a nested run per trial. Changes nothing by itself: prints the run id to apply
    with `replenish tune apply RUN_ID`."""
    if ctx.invoked_subcommand is not None:
        return
    from training.tune import tune_job

    cfg, frame, _sources = _inputs(db, features, config)
    _params(cfg)
    res = tune_job(cfg, frame, trials=trials, progress=_say)
    console.print(f"best window pinball loss {res['best_value']:.4f} vs {res['current_value']:.4f} with the current "
                  "parameters "
                  f"({res['rel_improvement']:+.1%}) after {res['trials']} trials; MLflow run {res['run_id']}",
                  highlight=False)
    if res["recommended"]:
        console.print(f"worth applying: `replenish tune apply {res['run_id']}`, then commit "
                      f"{cfg.training.tuned_params}", highlight=False)
    else:
        console.print(f"not better by {cfg.training.tune.min_rel_improvement:.0%}: keep the current parameters "
                      "(nothing was changed)", highlight=False)


@tune_app.command("apply", epilog=example("replenish tune apply 3f2c9a1e5b7d4c0e8a6f1b2d3c4e5f60"))
def tune_apply(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="The tuning run's id, printed by `replenish tune`."),
    config: str = CONFIG,
) -> None:
    """Write a tuning run's best parameters to training.tuned_params (configs/tuned_lgbm.yaml) with the run they
    came from; train and backtest use them from then on and say so. Commit the file; delete it to undo."""
    from training.tune import apply_tuned

    cfg = settings(config)
    out = apply_tuned(cfg, run_id)
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in out["lgbm"].items())
    console.print(f"applied run {run_id} (window pinball loss {out['best_window_spl']:.4f} vs "
                  f"{out['current_window_spl']:.4f}) -> "
                  f"{out['path']}: {shown}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("backtest", epilog=example("replenish backtest", "replenish backtest --origins 2 --horizon 7 --json",
                                           "replenish backtest --db sqlite:///data/luckin.db --no-log",
                                           "replenish backtest --until 2025-12-31 --no-log"))(backtest)
    app.command("train", epilog=example("replenish train", "replenish train --if-changed --json"))(train)
    app.command("promote", epilog=example("replenish promote", "replenish promote --version 3 --force"))(promote)
    app.add_typer(tune_app, name="tune")
