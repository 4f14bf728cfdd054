"""``replenish forecast | plan | override | simulate | nightly``: the planners' daily proposal and the policy replay."""

from __future__ import annotations

import sys
from datetime import date

import typer

from forecasting.errors import ConfigError
from replenish.common import (
    CONFIG,
    DB,
    ENGINE,
    FEATURES,
    console,
    emit_json,
    err_console,
    example,
    json_flag,
    plural,
    settings,
    source,
)

FORECASTS = typer.Option(None, "--forecasts", metavar="DIR",
                         help="Forecast cache folder (default: planning.forecasts_dir).")
STORES = typer.Option(None, "--store", metavar="STORE_ID", help="Plan only this store id, a whole number "
                      "(repeatable: --store 1 --store 4; default: every open store).")
POLICY = typer.Option(None, "--policy", metavar="NAME", help="ours | incumbent | seasonal_naive | oracle (repeatable; "
                      "default: all).")
DATE = "YYYY-MM-DD"


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
    day: str = typer.Option(None, "--date", metavar=DATE, help="Data date: forecasts start the day after (default: "
                            "the feature store's last day)."),
    features: str = FEATURES,
    forecasts: str = FORECASTS,
    as_json: bool = json_flag(),
    config: str = CONFIG,
    engine: str = ENGINE,
) -> None:
    """Batch forecasts with the registry's champion into the forecast cache: units per store x product x day
    for the next 14 days (training.horizon), with quantiles; the plan and the API read them."""
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

    tab = Table("store", "state", "materials to order", "final packs", "exceptions to review",
                title=f"proposal for {res.order_date} (model {res.model_version}, data through {res.data_date})")
    for sp in res.stores:
        o = sp.lines[sp.lines["final_packs"] > 0]
        tab.add_row(f"{sp.store_id} {sp.store_name}", sp.status + (" (stale counts)" if sp.stale else ""),
                    f"{len(o):,}", f"{int(o['final_packs'].sum()):,}", f"{len(sp.exceptions):,}")
    console.print(tab)
    if res.written is not None:
        w = res.written
        console.print(f"proposal table: {plural(w['inserted'], 'line')} written, {w['deleted']:,} replaced, "
                      f"{plural(w['overrides_kept'], 'override')} kept"
                      + (f"; {plural(w['held'], 'approved or released line')} kept as they are "
                         f"({w['held_changed']:,} where the engine now differs: see their re-plan exceptions)"
                         if w.get("held") else ""),
                      highlight=False)
        names = {(sp.store_id, int(m)): n for sp in res.stores if "material_name" in sp.lines
                 for m, n in zip(sp.lines["material_id"], sp.lines["material_name"], strict=False)}
        for store, material, packs in w.get("held_new", []):
            what = names.get((store, material)) or f"material {material}"
            console.print(f"store {store} is approved or released: its new line {what} "
                          f"({plural(int(packs or 0), 'pack')}) was not added; reopen the store in the workbench "
                          f"and plan again to take it", highlight=False)
    for sp in res.stores:  # whole paths on their own lines: a table column would cut them mid-word
        if sp.html_path:
            console.print(f"report, store {sp.store_id}: {sp.html_path}", highlight=False, soft_wrap=True)
    if res.index_path:
        console.print(f"index: {res.index_path}", highlight=False, soft_wrap=True)


def plan(
    day: str = typer.Option(..., "--date", metavar=DATE, help="Order date (the counts of the evening before are "
                            "used)."),
    store: list[int] = STORES,
    db: str = DB,
    out: str = typer.Option(None, "--out", metavar="DIR", help="Reports folder (default: "
                            "planning.reports_dir/<date>)."),
    forecasts: str = FORECASTS,
    features: str = FEATURES,
    no_write: bool = typer.Option(False, "--no-write", help="Do not write the proposal table."),
    as_json: bool = json_flag(),
    allow_stale: bool = typer.Option(False, "--allow-stale", help="Exit 0 even when a store's newest count is older "
                                                                  "than planning.stale_count_days (days)."),
    config: str = CONFIG,
) -> None:
    """Order proposal per store: whole packs per material (and the same in the material's unit: g, ml or pcs),
    each line with its reasons, from the cached forecasts and the latest counts and open orders. Writes a CSV and
    an HTML report per store (exceptions first) and the proposal table (a re-run replaces the date's draft lines;
    approved and released ones are kept and flagged when the engine's number moved). Stale counts: one banner,
    every line flagged, exit 1 unless --allow-stale."""
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
    day: str = typer.Option(None, "--date", metavar=DATE, help="Order date of the proposal line."),
    store: int = typer.Option(None, "--store", metavar="STORE_ID", help="Store id, a whole number."),
    material: int = typer.Option(None, "--material", metavar="MATERIAL_ID", help="Material id, a whole number."),
    qty: str = typer.Option(None, "--qty", metavar="PACKS", help="The planner's number of packs (whole, >= 0)."),
    reason: str = typer.Option(None, "--reason", metavar="TEXT", help="Why (kept with the line, up to 500 "
                               "characters)."),
    import_csv: str = typer.Option(None, "--import", metavar="FILE", help="A plan CSV with planner_qty and "
                                   "override_reason filled in on the lines to change."),
    user: str = typer.Option(None, "--by", metavar="NAME", help="Who overrides (default: $REPLENISH_USER or $USER)."),
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
    console.print(f"{plural(n, 'override')} recorded (engine numbers kept)"
                  + (f"; {same:,} unchanged" if same else ""), highlight=False)


def simulate(
    start: str = typer.Option(None, "--start", metavar=DATE, help="First day replayed (default: 8 weeks before the "
                              "history's end)."),
    end: str = typer.Option(None, "--end", metavar=DATE, help="Last day replayed (default: the history's last day)."),
    policy: list[str] = POLICY,
    db: str = DB,
    features: str = FEATURES,
    chart: str = typer.Option(None, "--chart", metavar="FILE.png", help="Write a comparison chart (PNG) here."),
    as_json: bool = json_flag("{'policies': {...}}"),
    config: str = CONFIG,
) -> None:
    """Replay policies day by day on realised demand: fill rate, cycle service level, stockout hours, waste %,
    days of cover, total cost, each the mean over the demand seeds with its 95% interval, then ours against each
    other policy seed by seed; and the overrides' forecast value added when there are overrides."""
    from planning.simulate import POLICIES, run_simulation, summary_lines, write_chart

    cfg = settings(config)
    names = policy or cfg.planning.simulation.policies
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ConfigError(f"--policy {bad[0]!r}: choose from {', '.join(POLICIES)}")
    engine, schema = source(db, cfg, readonly=True)
    res = run_simulation(cfg, engine, schema, _date(start, "--start"), _date(end, "--end"), names,
                         features_dir=features, progress=_say)
    if chart:
        write_chart(res, chart)
    if as_json:
        emit_json(res)
        return
    for line in summary_lines(res):
        console.print(line, highlight=False, soft_wrap=True)
    if res.get("overrides"):
        console.print(f"overrides: {res['overrides']}", highlight=False)


def nightly(
    day: str = typer.Option(..., "--date", metavar=DATE, help="Order date: features through the day before, "
                            "forecast, plan."),
    db: str = DB,
    features: str = FEATURES,
    forecasts: str = FORECASTS,
    out: str = typer.Option(None, "--out", metavar="DIR", help="Reports folder (default: planning.reports_dir)."),
    as_json: bool = json_flag(),
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
    app.command("forecast", epilog=example("replenish forecast", "replenish forecast --date 2026-02-12 --json"))(
        forecast)
    app.command("plan", epilog=example("replenish plan --date 2026-02-13",
                                       "replenish plan --date 2026-02-13 --store 1 --store 4 --no-write"))(plan)
    app.command("override", epilog=example(
        "replenish override --date 2026-02-13 --store 1 --material 12 --qty 3 --reason 'street fair'",
        "replenish override --import reports/2026-02-13/store_1.csv"))(override)
    app.command("simulate", epilog=example("replenish simulate", "replenish simulate --start 2026-01-05 --end "
                                           "2026-02-01 --policy ours --policy incumbent --chart sim.png"))(simulate)
    app.command("nightly", epilog=example("replenish nightly --date 2026-02-13"))(nightly)


