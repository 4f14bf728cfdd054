"""Replay of ready food through the day on the source history: the daily-only plan vs the intraday plan vs the
oracle, on the same demand draws (``forecasting.evaluation.intraday`` walks each day).

Why these three: ``daily_only`` is what stores do without the thaw and bake plan (the day's newsvendor quantity out
at opening), ``intraday`` is the plan ``POST /bake-plan`` serves (``inventory.bake.plan_day`` on the daily forecast
spread by the store's hourly profile), ``oracle`` is the same planner on the true hourly means: the gap
daily-only -> intraday is the value of releasing through the day, intraday -> oracle what a better forecast could
still add.

Inputs, all as of the day before each replayed day (no look-ahead):

* daily forecast: ``ours`` of the policy replay (``planning.simulate.OurForecasts``: the registered model's predict
  path ``DemandForecaster.forecast``, refit every ``simulation.refit_days``, re-forecast every day from the newest
  data, dispersion and window calibration fitted before the period), read from / written to the forecast cache;
* hourly profile: the hour-level model the API and the bake plan use (``forecasting.inventory.hourly_demand``:
  store x product x weekday shares shrunk towards the store's and the product's shapes), fitted on every product's
  hourly sales of the ``training.hourly.lookback_days`` before the day only;
* truth: ``t_demand_truth.expected_qty`` x the store-day's ``t_demand_truth_hourly`` shares; demand per seed is drawn
  from it with the daily replay's dispersion (``simulation.truth_dispersion``) and seeds (``simulation.seed`` ..).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError
from forecasting.evaluation.intraday import (
    DayPlan,
    ReplayItem,
    daily_only_plan,
    draw_day,
    like_items,
    release_plan,
    replay_day,
)
from forecasting.evaluation.metrics import mean_interval
from forecasting.inventory.bake import BakeItem, parse_hhmm
from forecasting.inventory.hourly_demand import fit_configured
from forecasting.source.schema import SourceSchema
from planning.inputs import read, read_table, with_truth_dispersion
from planning.simulate import default_period, paired

PLANS = ("daily_only", "intraday", "oracle")
SUMS = ("released", "demand", "sold", "sold_as_substitute", "lost", "wasted", "stockout_hours", "unmet_hours",
        "waste_usd", "lost_margin_usd")
INTERVAL_KEYS = ("fill_rate", "wasted", "waste_pct", "stockout_hours", "unmet_hours", "lost", "waste_usd",
                 "lost_margin_usd", "total_cost")
PAIRED_KEYS = ("wasted", "waste_usd", "stockout_hours", "unmet_hours", "fill_rate", "lost", "total_cost")
Progress = Callable[[str], None]


def _master(engine: Engine, schema: SourceSchema):
    from serving.source import MasterData

    return MasterData(*(read_table(engine, schema, t) for t in ("stores", "materials", "bom", "suppliers")),
                      read_table(engine, schema, "products"))


def _forecasts(settings: Settings, engine: Engine, schema: SourceSchema, start: date, name: str,
               say: Progress) -> Callable[[date], pd.DataFrame]:
    """The daily forecast provider of the policy replay, through its forecast cache (``simulation.forecast_cache``,
    else ``data/intraday_fc``): forecasts depend on the data, model code and training settings only."""
    from planning.simulate import OurForecasts, SeasonalNaiveForecasts, _CachedForecasts, forecast_key
    from training.pipeline import load_frame

    frame = load_frame(settings.features.out_dir, settings.training)
    bom = read_table(engine, schema, "bom")
    makers = {"ours": lambda: OurForecasts(settings, frame, start, say, bom),
              "seasonal_naive": lambda: SeasonalNaiveForecasts(settings, frame, start, say)}
    if name not in makers:
        raise DataError(f"unknown forecaster {name!r}: ours or seasonal_naive")
    root = resolve_path(settings.planning.simulation.forecast_cache or "data/intraday_fc")
    cached = _CachedForecasts(root, forecast_key(name, settings, frame, start), makers[name])
    say(f"{name}: daily forecasts cached under {cached.root / cached.key}")
    return cached


def _hourly_inputs(settings: Settings, start: date, end: date):
    """Every product's hourly sales from ``training.hourly.lookback_days`` before ``start`` (the hour-level model
    pools the store's and the product's shapes, so it is fitted on all products, as the API's is) and the feature
    store's planned calendar (``training.future.PlannedCalendar``: the model's day inputs, as
    ``serving.engine.hourly_profiles`` reads them)."""
    from features.store import FeatureStore
    from training.future import PlannedCalendar

    fs = FeatureStore(str(resolve_path(settings.features.out_dir)))
    lb = settings.training.hourly.lookback_days
    h = fs.read("hourly", start=start - timedelta(days=lb), end=end,
                columns=["store_id", "product_id", "date", "local_hour", "qty", "censored"])
    h["date"] = pd.to_datetime(h["date"]).dt.date
    return h, PlannedCalendar.from_manifest(fs.manifest())


def _metrics(acc: dict[str, float]) -> dict[str, float]:
    m = {k: round(float(acc[k]), 4) for k in SUMS}
    m["fill_rate"] = round(1.0 - acc["lost"] / acc["demand"], 6) if acc["demand"] > 0 else 1.0
    m["waste_pct"] = round(acc["wasted"] / acc["released"], 6) if acc["released"] > 0 else 0.0
    m["total_cost"] = round(float(acc["waste_usd"] + acc["lost_margin_usd"]), 4)
    return m


def run_intraday(settings: Settings, engine: Engine, schema: SourceSchema, start: date | None = None,
                 end: date | None = None, *, period: str = "reported", days: int | None = None,
                 seeds: int | None = None, forecaster: str = "ours", release_times: list[str] | None = None,
                 cover: str | None = None, rule: str | None = None, search: bool | None = None,
                 waste_weight: float | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Replay ready food hour by hour over the period (default: the daily replay's reported period, the last
    ``simulation.weeks`` weeks; ``period='selection'``: the same number of weeks before it, the only period on which
    settings such as ``release_times`` or ``cover`` may be chosen); ``days`` keeps the period's first days."""
    say = progress or (lambda _m: None)
    settings = with_truth_dispersion(settings, engine, schema)
    sim, bake = settings.planning.simulation, settings.planning.bake
    t0 = time.perf_counter()
    start, end = default_period(engine, schema, sim.weeks, start, end)
    if period == "selection":
        span = (end - start).days + 1
        start, end = start - timedelta(days=span), start - timedelta(days=1)
    elif period != "reported":
        raise DataError(f"period {period!r}: reported or selection")
    if days is not None:
        end = min(end, start + timedelta(days=days - 1))
    times = [parse_hhmm(x) for x in (release_times or bake.release_times)]
    cover = cover or bake.cover
    rule = rule or bake.rule
    search = bake.search_targets if search is None else search
    weight = bake.waste_weight if waste_weight is None else waste_weight
    n_seeds = seeds or sim.seeds
    seed_list = [sim.seed + k for k in range(n_seeds)]
    slot_h = bake.slot_minutes / 60
    alpha = sim.truth_dispersion
    share = bake.substitution_share

    from serving.bakeplan import hourly_means, ready_food

    master = _master(engine, schema)
    food = ready_food(master, settings).set_index("product_id")
    if food.empty:
        raise DataError("the source has no ready-food items (planning.bake.food_classes)")
    pids = set(food.index.astype(int))
    t_d, t_h = schema["demand_truth"], schema["demand_truth_hourly"]
    truth = read(engine, select(t_d.c.store_id, t_d.c.product_id, t_d.c.date, t_d.c.expected_qty)
                 .where(t_d.c.date >= start, t_d.c.date <= end))
    if truth.empty:
        raise DataError("the intraday replay needs t_demand_truth (generator ground truth) for the period")
    truth["date"] = pd.to_datetime(truth["date"]).dt.date
    truth = truth[truth["product_id"].isin(pids)]
    shares = read(engine, select(t_h).where(t_h.c.date >= start, t_h.c.date <= end))
    shares["date"] = pd.to_datetime(shares["date"]).dt.date
    share_of = {k: (g["local_hour"].to_numpy(int), g["share"].to_numpy(float))
                for k, g in shares.groupby(["store_id", "date"])}
    popularity = truth.groupby(["store_id", "product_id"])["expected_qty"].mean().to_dict()
    hourly, calendar = _hourly_inputs(settings, start, end)
    provider = _forecasts(settings, engine, schema, start, forecaster, say)
    stores = master.stores.set_index("store_id")
    # with a waste weight, the daily-only plan at the same weight beside (a diagnostic: how much of the change is the
    # weight rather than releasing through the day); the targets compare with today's daily-only plan
    names = PLANS + (("daily_only_same_weight",) if abs(weight - 1.0) > 1e-9 else ())
    acc = {(p, s): dict.fromkeys(SUMS, 0.0) for p in names for s in seed_list}
    by_cat: dict[tuple[str, str], dict[str, float]] = {}  # (plan, category) summed over the seeds
    counts = {"store_days": 0, "item_days": 0, "item_days_without_forecast": 0}
    hcfg = settings.training.hourly
    lb = hcfg.lookback_days
    day = start
    while day <= end:
        fc = provider(day)
        fc = fc[(pd.to_datetime(fc["date"]).dt.date == day) & fc["product_id"].isin(pids)]
        fc_of = {(int(r.store_id), int(r.product_id)): (float(r.mean), float(r.dispersion))
                 for r in fc.itertuples(index=False)}
        past = hourly[(hourly["date"] < day) & (hourly["date"] >= day - timedelta(days=lb))]
        # the API's hour-level model, with the day inputs (forecast temperature, campaigns) known the day before
        prof = fit_configured(past, hcfg, calendar.hour_inputs(day - timedelta(days=1))) if len(past) else None
        for sid, g in truth[truth["date"] == day].groupby("store_id"):
            sid = int(sid)
            sh = share_of.get((sid, day))
            if sh is None or sid not in stores.index:
                continue
            open_h, close_h = int(stores.at[sid, "open_hour"]), int(stores.at[sid, "close_hour"])
            g = g.sort_values("product_id")
            ids = g["product_id"].astype(int).tolist()
            meta = food.loc[ids]
            true_h = [hourly_means(float(q), sh, open_h, close_h) for q in g["expected_qty"]]
            fc_items, true_items = [], []
            for pid, th, r in zip(ids, true_h, meta.itertuples(), strict=True):
                mean, disp = fc_of.get((sid, pid), (0.0, 0.0))
                counts["item_days_without_forecast"] += int((sid, pid) not in fc_of)
                pr = prof.on_day(sid, pid, day) if prof is not None else None
                fc_items.append(BakeItem(pid, r.name, hourly_means(mean, pr, open_h, close_h), disp,
                                         float(r.shelf_hours), float(r.unit_cost), float(r.price)))
                true_items.append(BakeItem(pid, r.name, th, alpha, float(r.shelf_hours), float(r.unit_cost),
                                           float(r.price)))
            cats = [str(c) for c in meta["category"]]
            like = like_items(cats, [popularity.get((sid, p), 0.0) for p in ids])
            items = [ReplayItem(pid, float(r.shelf_hours), float(r.unit_cost), float(r.price), lk)
                     for pid, r, lk in zip(ids, meta.itertuples(), like, strict=True)]
            pseed = bake.seed + sid * 10_007 + day.toordinal()
            kw = {"n_samples": bake.n_samples, "seed": pseed, "slot_minutes": bake.slot_minutes}
            plans: dict[str, DayPlan] = {
                "daily_only": daily_only_plan(fc_items, open_h, close_h, **kw),
                "intraday": release_plan(fc_items, times, open_h, close_h, cover=cover, rule=rule, search=search,
                                         waste_weight=weight, **kw),
                "oracle": release_plan(true_items, times, open_h, close_h, cover=cover, rule=rule, search=search,
                                       waste_weight=weight, **kw),
            }
            if "daily_only_same_weight" in names:
                plans["daily_only_same_weight"] = daily_only_plan(fc_items, open_h, close_h, waste_weight=weight, **kw)
            for s in seed_list:
                draw = draw_day(true_h, alpha, open_h, close_h, slot_h, seed=s * 1_000_003 + sid * 10_007
                                + day.toordinal())
                for name, plan in plans.items():
                    out = replay_day(items, plan, draw, open_h, close_h, slot_h, share)
                    a = acc[(name, s)]
                    for k in SUMS:
                        v = getattr(out, k)
                        a[k] += float(v.sum())
                        for c, x in zip(cats, v, strict=True):
                            cell = by_cat.setdefault((name, c), dict.fromkeys(SUMS, 0.0))
                            cell[k] += float(x) / len(seed_list)
            counts["store_days"] += 1
            counts["item_days"] += len(ids)
        say(f"{day}: done ({time.perf_counter() - t0:.0f} s)")
        day += timedelta(days=1)
    policies: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = [_metrics(acc[(name, s)]) | {"seed": s} for s in seed_list]
        m: dict[str, Any] = {k: round(float(np.mean([r[k] for r in runs])), 5) for k in runs[0] if k != "seed"}
        if len(runs) > 1:
            m["ci95"] = {k: [round(i["lo"], 5), round(i["hi"], 5)] for k in INTERVAL_KEYS
                         for i in [mean_interval(np.array([r[k] for r in runs]))]}
        m["by_seed"] = runs
        policies[name] = m
    report: dict[str, Any] = {
        "period": {"name": period, "start": start.isoformat(), "end": end.isoformat(),
                   "days": (end - start).days + 1, "stores": int(truth["store_id"].nunique()),
                   "ready_food_items": len(pids)} | counts,
        "protocol": {
            "demand_seeds": seed_list, "truth_dispersion": alpha, "slot_minutes": bake.slot_minutes,
            "release_times": release_times or bake.release_times, "cover": cover, "rule": rule,
            "search_targets": search, "waste_weight": weight,
            "substitution_share": share,
            "forecaster": forecaster,
            "plans": {"daily_only": "daily newsvendor on the day's forecast (critical ratio margin/price), all out "
                                    "at opening",
                      "daily_only_same_weight": "(only with a waste weight) the daily-only plan at the same waste "
                                                "weight: a diagnostic, the targets compare with daily_only",
                      "intraday": "inventory.bake.plan_day on the forecast x the store's hourly profile of the "
                                  f"{settings.training.hourly.lookback_days} days before the day "
                                  "(forecasting.inventory.hourly_demand, as the API's); the store "
                                  + ("fills the shelf up to each release's target" if rule == "top_up" else
                                     "puts out the planned pieces") + (", targets searched" if search else "")
                                  + f", waste weight {weight:g}",
                      "oracle": "inventory.bake.plan_day on the true hourly means and dispersion"},
        },
        "units": "pieces and hours summed over stores x ready-food items x days; costs in $ (waste at unit cost + "
                 "lost margin); fill rate in units (substituted units served); stockout hours: opening-hour slots "
                 "with an empty shelf or unmet own demand",
        "policies": policies,
        "by_category": {c: {name: _metrics(by_cat[(name, c)]) for name in names if (name, c) in by_cat}
                        for c in sorted({c for _, c in by_cat})},
    }
    if len(seed_list) > 1:
        report["paired"] = paired(policies, "intraday", PAIRED_KEYS) | paired(policies, "oracle", PAIRED_KEYS)
    report["targets"] = targets(report)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _ratio(report: dict[str, Any], key: str) -> dict[str, float]:
    pair = report.get("paired", {}).get("intraday_vs_daily_only", {}).get(key)
    if pair:
        return pair["ratio"]
    p = report["policies"]
    v = p["intraday"][key] / max(p["daily_only"][key], 1e-12)
    return {"mean": v, "lo": v, "hi": v}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #16 part 4: ready-food waste <= 0.7 x and stockout hours <= 0.7 x the daily-only plan's, at equal or
    better fill, total cost no worse; each met or not by the mean over the seeds, with the paired 95% interval."""
    p = report["policies"]
    out = []
    for key, words in (("wasted", "waste (pieces) <= 0.7 x daily-only"),
                       ("stockout_hours", "stockout hours <= 0.7 x daily-only")):
        r = _ratio(report, key)
        out.append({"target": words, "met": bool(r["mean"] <= 0.7), "ratio": r,
                    "whole_interval": bool(r["hi"] <= 0.7)})
    d = report.get("paired", {}).get("intraday_vs_daily_only", {}).get("fill_rate", {}).get("difference")
    fd = p["intraday"]["fill_rate"] - p["daily_only"]["fill_rate"]
    out.append({"target": "fill rate >= daily-only", "met": bool(fd >= -1e-9), "difference": d or {"mean": fd}})
    r = _ratio(report, "total_cost")
    out.append({"target": "total cost <= daily-only", "met": bool(r["mean"] <= 1.0), "ratio": r,
                "whole_interval": bool(r["hi"] <= 1.0)})
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The replay in words: each plan's means with 95% intervals, the paired ratios, the targets."""
    pr = report["period"]
    out = [f"Intraday replay ({pr['name']}) {pr['start']}..{pr['end']}: {pr['days']} days, {pr['store_days']} "
           f"store-days, {pr['item_days']:,} item-days; means over {len(report['protocol']['demand_seeds'])} seeds, "
           "95% interval in brackets."]
    for name, m in report["policies"].items():
        ci = m.get("ci95", {})

        def f(k: str, fmt: str, m=m, ci=ci) -> str:
            lo_hi = f" ({format(ci[k][0], fmt)}..{format(ci[k][1], fmt)})" if k in ci else ""
            return format(m[k], fmt) + lo_hi
        out.append(f"  {name}: fill {f('fill_rate', '.2%')}; waste {f('wasted', ',.0f')} pc ({f('waste_pct', '.1%')}"
                   f" of released); stockout {f('stockout_hours', ',.0f')} h "
                   f"(unmet demand {f('unmet_hours', ',.0f')} h); lost {f('lost', ',.0f')} units; cost "
                   f"${f('total_cost', ',.0f')}")
    for pair, d in report.get("paired", {}).items():
        parts = [f"{k} x{d[k]['ratio']['mean']:.3f} ({d[k]['ratio']['lo']:.3f}..{d[k]['ratio']['hi']:.3f})"
                 for k in PAIRED_KEYS if k in d]
        out.append(f"  {pair} (ratio, paired): " + "; ".join(parts))
    for t in report["targets"]:
        out.append(f"  target {t['target']}: {'MET' if t['met'] else 'not met'}")
    return out
