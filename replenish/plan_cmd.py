"""``replenish forecast | plan | override | simulate | nightly``: the planners' daily proposal and the policy replay."""

from __future__ import annotations

import sys
from datetime import date

import typer

from forecasting.errors import ConfigError
from replenish.common import console, emit_json, err_console, settings, source

DB = typer.Option(None, "--db", help="Source database URL (default: configs/, or $REPLENISH_DB_URL).")
CONFIG = typer.Option(None, "--config", help="A YAML file merged over configs/default.yaml.")
FEATURES = typer.Option(None, "--features", help="Feature store directory (default: features.out_dir).")
FORECASTS = typer.Option(None, "--forecasts", help="Forecast cache directory (default: planning.forecasts_dir).")
STORES = typer.Option(None, "--store", help="Plan only this store (repeatable).")
POLICY = typer.Option(None, "--policy", help="ours | incumbent | seasonal_naive | oracle (repeatable; default: all).")


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option}: not a date (YYYY-MM-DD): {value!r}") from None


def _say(msg: str) -> None:
    err_console.print(f"[dim]{msg}[/]", highlight=False)


def forecast(
    day: str = typer.Option(None, "--date", help="Data date: forecasts start the day after (default: the feature "
                                                 "store's last day)."),
    features: str = FEATURES,
    forecasts: str = FORECASTS,
    as_json: bool = typer.Option(False, "--json", help="Print the summary object on stdout."),
    config: str = CONFIG,
    engine: str = typer.Option(None, "--engine", help="local | dask (default: cluster.engine in configs/)."),
) -> None:
    """Batch forecasts (14 days) with the registry's champion into the forecast cache."""
    from forecasting.cluster import resolve_engine
    from training.batch import run_batch

    cfg = settings(config)
    if resolve_engine(engine, cfg.cluster) == "dask":  # same cache: series partitions scored on Dask
        from training.distributed import run_batch_dask as run_batch
    out = run_batch(cfg, features, forecasts, _date(day, "--date"))
    if as_json:
        emit_json(out)
    else:
        console.print(f"{out['model_version']} ({out['kind']}): {out['rows']:,} rows for {out['series']} series, "
                      f"{out['first_date']}..{out['last_date']} -> {out['path']} ({out['seconds']:.1f} s)",
                      highlight=False)


def _print_plan(res) -> None:
    from rich.table import Table

    tab = Table("store", "state", "order lines", "final packs", "exceptions", "report",
                title=f"proposal {res.order_date} (model {res.model_version}, data {res.data_date})")
    for sp in res.stores:
        o = sp.lines[sp.lines["final_packs"] > 0]
        tab.add_row(f"{sp.store_id} {sp.store_name}", sp.status + (" (stale counts)" if sp.stale else ""),
                    str(len(o)), str(int(o["final_packs"].sum())), str(len(sp.exceptions)), str(sp.html_path or ""))
    console.print(tab)
    if res.written is not None:
        w = res.written
        console.print(f"proposal table: {w['inserted']} lines written, {w['deleted']} replaced, "
                      f"{w['overrides_kept']} overrides kept"
                      + (f"; {w['held']} approved or released lines kept as they are ({w['held_changed']} where the "
                         "engine now differs: see their re-plan exceptions)" if w.get("held") else ""),
                      highlight=False)
    if res.index_path:
        console.print(f"index: {res.index_path}", highlight=False)


def plan(
    day: str = typer.Option(..., "--date", help="Order date (counts of the evening before are used)."),
    store: list[int] = STORES,
    db: str = DB,
    out: str = typer.Option(None, "--out", help="Reports folder (default: planning.reports_dir/<date>)."),
    forecasts: str = FORECASTS,
    features: str = FEATURES,
    no_write: bool = typer.Option(False, "--no-write", help="Do not write the proposal table."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary object on stdout."),
    allow_stale: bool = typer.Option(False, "--allow-stale", help="Exit 0 even when a store's newest count is older "
                                                                  "than planning.stale_count_days."),
    config: str = CONFIG,
) -> None:
    """Order proposal per store from the cached forecasts and the latest counts and open orders: CSV + HTML report
    per store (exceptions first), written to the proposal table (a re-run replaces the date's draft lines; approved
    and released ones are kept and flagged when the engine's number moved). Stale counts: one banner, every line
    flagged, exit 1 unless --allow-stale."""
    from planning.plan import run_plan

    cfg = settings(config)
    order_date = _date(day, "--date")
    engine, schema = source(db, cfg)
    res = run_plan(cfg, engine, schema, order_date, store_ids=store or None, forecasts_dir=forecasts,
                   features_dir=features, out_dir=out, write=not no_write, progress=_say)
    if as_json:
        emit_json(res.summary())
    else:
        _print_plan(res)
    stale = res.stale
    if stale and not allow_stale:
        ages = ", ".join(f"store {s}: {d} days" for s, d in sorted(stale.items()))
        err_console.print(f"[bold red]stale counts:[/] the newest counts are older than {res.stale_days} days "
                          f"({ages}); the plan was written with every line of those stores flagged. Recount, or "
                          "re-run with --allow-stale to accept it.", highlight=False, soft_wrap=True)
    if res.failures:
        for sid, msg in sorted(res.failures.items()):
            err_console.print(f"[bold red]store {sid} failed:[/] {msg}", highlight=False, soft_wrap=True)
    if res.failures or (stale and not allow_stale):
        sys.exit(1)


def override(
    day: str = typer.Option(None, "--date", help="Order date of the proposal line."),
    store: int = typer.Option(None, "--store", help="Store id."),
    material: int = typer.Option(None, "--material", help="Material id."),
    qty: str = typer.Option(None, "--qty", help="The planner's number of packs (whole, >= 0)."),
    reason: str = typer.Option(None, "--reason", help="Why (kept with the line)."),
    import_csv: str = typer.Option(None, "--import", help="A plan CSV with planner_qty and override_reason filled "
                                                          "in on the lines to change."),
    user: str = typer.Option(None, "--by", help="Who overrides (default: $REPLENISH_USER or $USER)."),
    withdraw: bool = typer.Option(False, "--withdraw", help="Withdraw the line's current override (needs --date, "
                                                            "--store, --material); the previous one counts again."),
    db: str = DB,
    config: str = CONFIG,
) -> None:
    """Record the planner's number beside the engine's (both kept, every override appended to the log); all rows
    or none. Only draft lines on an order day can be changed."""
    from planning.overrides import Override, apply_overrides, default_user, parse_packs, read_override_csv

    cfg = settings(config)
    if withdraw:
        missing = [n for n, v in (("--date", day), ("--store", store), ("--material", material)) if v is None]
        if missing or import_csv or qty is not None:
            raise ConfigError("--withdraw takes --date, --store and --material only"
                              + (f" (missing {', '.join(missing)})" if missing else ""))
        from planning.lifecycle import withdraw as withdraw_override

        engine, schema = source(db, cfg)
        now = withdraw_override(engine, schema, _date(day, "--date"), int(store), int(material),
                                (user or default_user()))
        console.print("override withdrawn; " + ("the engine's number counts again" if now is None else
                                                f"the previous override counts again: {now['packs']} packs "
                                                f"({now['reason']})"), highlight=False)
        return
    if import_csv:
        if any(v is not None for v in (day, store, material, qty, reason)):
            raise ConfigError("--import takes the lines from the file: drop --date/--store/--material/--qty/--reason")
        rows = read_override_csv(import_csv)
    else:
        missing = [n for n, v in (("--date", day), ("--store", store), ("--material", material), ("--qty", qty),
                                  ("--reason", reason)) if v is None or (isinstance(v, str) and not v.strip())]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (or use --import FILE)")
        rows = [Override(_date(day, "--date"), int(store), int(material), parse_packs(qty, "--qty"),
                         reason.strip()[:500])]
    engine, schema = source(db, cfg)
    n = apply_overrides(engine, schema, rows, user)
    same = len(rows) - n
    console.print(f"{n} override{'s' if n != 1 else ''} recorded (engine numbers kept)"
                  + (f"; {same} unchanged" if same else ""), highlight=False)


def simulate(
    start: str = typer.Option(None, "--start", help="First day replayed (default: 8 weeks before the history end)."),
    end: str = typer.Option(None, "--end", help="Last day replayed (default: the history's last day)."),
    policy: list[str] = POLICY,
    db: str = DB,
    features: str = FEATURES,
    chart: str = typer.Option(None, "--chart", help="Write a comparison chart (PNG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print {'policies': {...}} on stdout."),
    config: str = CONFIG,
) -> None:
    """Replay policies day by day on realised demand: fill rate, cycle service level, stockout hours, waste %,
    days of cover, total cost; and the overrides' forecast value added when there are overrides."""
    from planning.simulate import POLICIES, run_simulation, write_chart

    cfg = settings(config)
    names = policy or cfg.planning.simulation.policies
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ConfigError(f"--policy {bad[0]!r}: choose from {', '.join(POLICIES)}")
    engine, schema = source(db, cfg)
    res = run_simulation(cfg, engine, schema, _date(start, "--start"), _date(end, "--end"), names,
                         features_dir=features, progress=_say)
    if chart:
        write_chart(res, chart)
    if as_json:
        emit_json(res)
        return
    from rich.table import Table

    keys = [("fill_rate", "fill rate", "{:.2%}"), ("cycle_service_level", "CSL", "{:.2%}"),
            ("stockout_hours", "stockout h", "{:,.0f}"), ("waste_pct", "waste %", "{:.2%}"),
            ("days_of_cover", "cover d", "{:.1f}"), ("total_cost", "total cost $", "{:,.0f}")]
    tab = Table("policy", *[k[1] for k in keys], title=f"replay {res['period']['start']}..{res['period']['end']} "
                f"({res['period']['demand']})")
    for name, m in res["policies"].items():
        tab.add_row(name, *[k[2].format(m[k[0]]) for k in keys])
    console.print(tab)
    if res.get("overrides"):
        console.print(f"overrides: {res['overrides']}", highlight=False)


def nightly(
    day: str = typer.Option(..., "--date", help="Order date: features through the day before, forecast, plan."),
    db: str = DB,
    features: str = FEATURES,
    forecasts: str = FORECASTS,
    out: str = typer.Option(None, "--out", help="Reports folder (default: planning.reports_dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary object on stdout."),
    allow_stale: bool = typer.Option(False, "--allow-stale", help="Exit 0 even when counts are stale."),
    config: str = CONFIG,
) -> None:
    """Incremental features, batch forecasts with the champion, the plan and its write-back; safe to re-run. A
    failing store does not stop the others (listed at the end, exit 1); so do stale counts unless --allow-stale."""
    from planning.nightly import run_nightly

    cfg = settings(config)
    engine, schema = source(db, cfg)
    res = run_nightly(cfg, engine, schema, _date(day, "--date"), features_dir=features, forecasts_dir=forecasts,
                      out_dir=out, progress=_say)
    if as_json:
        emit_json(res)
    else:
        console.print(f"features {res['features']['mode']} through {res['features']['watermark']}; forecasts "
                      f"{res['forecast']['model_version']} data {res['forecast']['data_date']}; plan "
                      f"{len(res['plan']['stores'])} stores -> {res['plan']['index']}", highlight=False)
    stale = {s: v["count_age_days"] for s, v in res["plan"]["stores"].items() if v.get("stale")}
    if stale and not allow_stale:
        ages = ", ".join(f"store {s}: {d} days" for s, d in sorted(stale.items()))
        err_console.print(f"[bold red]stale counts:[/] {ages}; the plan was written with every line of those stores "
                          "flagged. Recount, or re-run with --allow-stale to accept it.", highlight=False,
                          soft_wrap=True)
    for sid, msg in sorted(res["plan"]["failures"].items()):
        err_console.print(f"[bold red]store {sid} failed:[/] {msg}", highlight=False, soft_wrap=True)
    if res["plan"]["failures"] or (stale and not allow_stale):
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("forecast")(forecast)
    app.command("plan")(plan)
    app.command("override")(override)
    app.command("simulate")(simulate)
    app.command("nightly")(nightly)


