"""Benchmark the replenishment policies on the last 8 weeks of the default (realistic) history (``replenish simulate``).

Seeds the default scenario into a temporary SQLite file and builds its feature store (or uses ``--db URL`` and
``--features DIR``), replays ``ours``, ``incumbent``, ``seasonal_naive`` and ``oracle`` on ``simulation.seeds``
demand seeds (5: 101..105) with late and short deliveries at the source's rates, prints the means with their 95%
intervals and the paired comparisons, checks the targets, and writes the JSON and a chart (``--out``, default
benchmarks/results/).

``--period selection`` replays the ``weeks`` before the reported period instead: the only period on which policy
settings may be chosen (the reported figures come from a period no setting was chosen on).

Targets (means over the seeds, each with its paired 95% interval): unit fill rate >= 97%; stockout hours <= 0.5 x
the incumbent's and waste <= 0.75 x the incumbent's at once; total cost <= 1.10 x the oracle's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _prepare(tmp: Path) -> tuple[str, str]:
    from features.job import build_features
    from forecasting.config import load_settings
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema
    from generator.api import generate

    url = f"sqlite:///{tmp / 'luckin.db'}"
    schema = build_schema()
    engine = make_engine(url, schema)
    t0 = time.perf_counter()
    generate(engine, schema, None, seed=42)
    build_features(engine, schema, str(tmp / "features"), config=load_settings().features)
    print(f"seeded the default history and built its features in {time.perf_counter() - t0:.0f} s", flush=True)
    return url, str(tmp / "features")


def _ratio(res: dict, other: str, key: str) -> tuple[float, float, float]:
    """(mean, lo, hi) of ours / other over the seeds (paired), or of the single run's ratio."""
    pair = res.get("paired", {}).get(f"ours_vs_{other}", {}).get(key)
    if pair:
        r = pair["ratio"]
        return r["mean"], r["lo"], r["hi"]
    pol = res["policies"]
    v = pol["ours"][key] / max(pol[other][key], 1e-9)
    return v, v, v


def targets(res: dict) -> list[tuple[str, bool, str]]:
    """(target, met by the mean, detail with the 95% interval and whether the whole interval meets it)."""
    ours = res["policies"]["ours"]
    lo, hi = ours.get("ci95", {}).get("fill_rate", [ours["fill_rate"]] * 2)
    out = [("unit fill rate >= 97%", ours["fill_rate"] >= 0.97,
            f"{ours['fill_rate']:.2%} (95% CI {lo:.2%}..{hi:.2%}; whole interval {'in' if lo >= 0.97 else 'not in'})")]
    so, wa = _ratio(res, "incumbent", "stockout_hours"), _ratio(res, "incumbent", "waste_pct")
    both = so[0] <= 0.5 and wa[0] <= 0.75
    out.append(("stockout hours <= 0.5 x AND waste <= 0.75 x incumbent", both,
                f"stockout x{so[0]:.3f} (CI {so[1]:.3f}..{so[2]:.3f}), waste x{wa[0]:.3f} (CI {wa[1]:.3f}..{wa[2]:.3f})"
                f"; whole intervals {'in' if so[2] <= 0.5 and wa[2] <= 0.75 else 'not in'}"))
    tc = _ratio(res, "oracle", "total_cost")
    out.append(("total cost <= 1.10 x oracle", tc[0] <= 1.10,
                f"x{tc[0]:.3f} (CI {tc[1]:.3f}..{tc[2]:.3f}); whole interval {'in' if tc[2] <= 1.10 else 'not in'}"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="source URL with a generated history (default: seed one in a temp dir)")
    ap.add_argument("--features", help="its feature store (required with --db)")
    ap.add_argument("--config", help="a YAML file merged over configs/default.yaml")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--period", choices=("reported", "selection"), default="reported",
                    help="reported: the last simulation.weeks weeks; selection: the weeks before (choose settings "
                         "there, never on the reported period)")
    ap.add_argument("--seeds", type=int, metavar="N",
                    help="how many demand seeds, from simulation.seed on (101, 102, ...; default simulation.seeds, 5)")
    ap.add_argument("--policies", help="comma-separated subset of ours,incumbent,seasonal_naive,oracle (default all)")
    ap.add_argument("--forecast-cache", help="keep the forecasters' daily forecasts in this folder (keyed by data, "
                                             "code and settings), so a re-run with other policy settings skips refits")
    args = ap.parse_args()
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before a 20-minute replay, not after it
        ap.error(f"--out {args.out} is a file: give the folder the results go to")
    if args.seeds is not None:  # the configuration's own bounds (planning.simulation.seeds)
        from pydantic import ValidationError

        from forecasting.config import SimulationConfig
        try:
            SimulationConfig(seeds=args.seeds)
        except ValidationError as exc:
            ap.error(f"--seeds {args.seeds}: {exc.errors()[0]['msg']} (how many demand seeds to replay)")

    from forecasting.config import load_settings
    from forecasting.source.db import open_source
    from planning.simulate import run_simulation, summary_lines, write_chart

    settings = load_settings(args.config)
    upd = {k: v for k, v in (("seeds", args.seeds), ("forecast_cache", args.forecast_cache)) if v}
    if upd:
        sim = settings.planning.simulation.model_copy(update=upd)
        settings = settings.model_copy(update={"planning": settings.planning.model_copy(update={"simulation": sim})})
    policies = args.policies.split(",") if args.policies else settings.planning.simulation.policies
    with tempfile.TemporaryDirectory() as tmp:
        url, features = (args.db, args.features) if args.db else _prepare(Path(tmp))
        engine, schema = open_source(url, settings.source.tables)
        start = end = None
        if args.period == "selection":
            from planning.simulate import default_period

            weeks = settings.planning.simulation.weeks
            first, _ = default_period(engine, schema, weeks, None, None)
            end = first - timedelta(days=1)
            start = end - timedelta(days=7 * weeks - 1)
        t0 = time.perf_counter()
        res = run_simulation(settings, engine, schema, start, end, policies, features_dir=features,
                             progress=lambda m: print(f"  [{time.perf_counter() - t0:5.0f} s] {m}", flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "simulation" if args.period == "reported" else "simulation_selection"
    (out / f"{name}.json").write_text(json.dumps(res, indent=2))
    chart = write_chart(res, out / f"{name}.png")
    p = res["period"]
    print(f"\nreplay {p['start']}..{p['end']} ({p['days']} days, {p['stores']} stores, {p['series']} series; "
          f"demand: {p['demand']}) in {res['seconds']:.0f} s")
    cols = [("fill_rate", "fill", "{:.2%}"), ("cycle_service_level", "CSL", "{:.2%}"),
            ("stockout_hours", "stockout h", "{:,.0f}"), ("waste_pct", "waste", "{:.2%}"),
            ("days_of_cover", "cover d", "{:.1f}"), ("holding_cost", "holding $", "{:,.0f}"),
            ("waste_cost", "waste $", "{:,.0f}"), ("lost_margin_cost", "lost $", "{:,.0f}"),
            ("total_cost", "total $", "{:,.0f}"), ("seconds", "s", "{:.0f}")]
    print(f"{'policy':<15}" + "".join(f"{c[1]:>12}" for c in cols))
    for pname, m in res["policies"].items():
        print(f"{pname:<15}" + "".join(f"{c[2].format(m[c[0]]):>12}" for c in cols))
        ci = m.get("ci95", {})
        if ci:
            print(f"{'  95% CI':<15}" + "".join(
                f"{(c[2].format(ci[c[0]][0]) + '..' + c[2].format(ci[c[0]][1])) if c[0] in ci else '':>12}"
                for c in cols))
    proto = res["protocol"]
    print(f"\ndemand seeds {proto['demand_seeds']}; calibration days {proto['calibration_days']}; "
          f"deliveries {proto['deliveries']}")
    print("\n".join(summary_lines(res)))
    for pname, m in res["policies"].items():  # where the misses come from
        by = {}
        for r in m["by_seed"]:
            for c, v in r.get("by_class", {}).items():
                by.setdefault(c, []).append(v)
        print(f"{pname} by class, mean over seeds: " + "; ".join(
            f"{c} {np.mean([v['stockout_hours'] for v in vs]):,.0f} stockout h, "
            f"${np.mean([v['waste_cost'] for v in vs]):,.0f} wasted, "
            f"${np.mean([v['lost_margin_cost'] for v in vs]):,.0f} lost margin" for c, vs in sorted(by.items())))
    check = res["policies"].get("ours", {}).get("calibration_check")
    if check:
        print(f"\nours' window calibration, held-out coverage and level: {check}")
    if all(k in res["policies"] for k in ("ours", "incumbent", "oracle")):
        print(f"\ntargets ({args.period} period):")
        for label, ok, detail in targets(res):
            print(f"  [{'ok' if ok else 'MISSED'}] {label}: {detail}")
    print(f"\nwrote {out / (name + '.json')} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
