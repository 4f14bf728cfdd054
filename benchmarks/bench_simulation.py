"""Benchmark the replenishment policies on the last 8 weeks of the default history (``replenish simulate``).

Seeds the default scenario into a temporary SQLite file and builds its feature store (or uses ``--db URL`` and
``--features DIR``), replays ``ours``, ``incumbent``, ``seasonal_naive`` and ``oracle`` on the same sampled demand,
prints the table, checks the targets, and writes the JSON and a chart (``--out``, default benchmarks/results/).

Targets: unit fill rate >= 97%; waste <= 0.75 x the incumbent's at equal or better fill rate; stockout hours
<= 0.5 x the incumbent's; total cost <= 1.3 x the oracle's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _prepare(tmp: Path) -> tuple[str, str]:
    from features.job import build_features
    from forecasting.config import load_settings
    from forecasting.db import make_engine
    from forecasting.schema import build_schema
    from generator.api import generate

    url = f"sqlite:///{tmp / 'luckin.db'}"
    schema = build_schema()
    engine = make_engine(url, schema)
    t0 = time.perf_counter()
    generate(engine, schema, None, seed=42)
    build_features(engine, schema, str(tmp / "features"), config=load_settings().features)
    print(f"seeded the default history and built its features in {time.perf_counter() - t0:.0f} s", flush=True)
    return url, str(tmp / "features")


def targets(pol: dict) -> list[tuple[str, bool, str]]:
    ours, inc, orc = pol["ours"], pol["incumbent"], pol["oracle"]
    return [
        ("unit fill rate >= 97%", ours["fill_rate"] >= 0.97, f"{ours['fill_rate']:.2%}"),
        ("waste <= 0.75 x incumbent at equal or better fill",
         ours["waste_pct"] <= 0.75 * inc["waste_pct"] and ours["fill_rate"] >= inc["fill_rate"],
         f"{ours['waste_pct']:.2%} vs {inc['waste_pct']:.2%} (x{ours['waste_pct'] / max(inc['waste_pct'], 1e-9):.2f}),"
         f" fill {ours['fill_rate']:.2%} vs {inc['fill_rate']:.2%}"),
        ("stockout hours <= 0.5 x incumbent", ours["stockout_hours"] <= 0.5 * inc["stockout_hours"],
         f"{ours['stockout_hours']:,.0f} vs {inc['stockout_hours']:,.0f} "
         f"(x{ours['stockout_hours'] / max(inc['stockout_hours'], 1e-9):.2f})"),
        ("total cost <= 1.3 x oracle", ours["total_cost"] <= 1.3 * orc["total_cost"],
         f"${ours['total_cost']:,.0f} vs ${orc['total_cost']:,.0f} (x{ours['total_cost'] / orc['total_cost']:.2f})"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="source URL with a generated history (default: seed one in a temp dir)")
    ap.add_argument("--features", help="its feature store (required with --db)")
    ap.add_argument("--config", help="a YAML file merged over configs/default.yaml")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    from forecasting.config import load_settings
    from forecasting.db import open_source
    from planning.simulate import run_simulation, write_chart

    settings = load_settings(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        url, features = (args.db, args.features) if args.db else _prepare(Path(tmp))
        engine, schema = open_source(url, settings.source.tables)
        t0 = time.perf_counter()
        res = run_simulation(settings, engine, schema, features_dir=features,
                             progress=lambda m: print(f"  [{time.perf_counter() - t0:5.0f} s] {m}", flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulation.json").write_text(json.dumps(res, indent=2))
    chart = write_chart(res, out / "simulation.png")
    p = res["period"]
    print(f"\nreplay {p['start']}..{p['end']} ({p['days']} days, {p['stores']} stores, {p['series']} series; "
          f"demand: {p['demand']}) in {res['seconds']:.0f} s")
    cols = [("fill_rate", "fill", "{:.2%}"), ("cycle_service_level", "CSL", "{:.2%}"),
            ("stockout_hours", "stockout h", "{:,.0f}"), ("waste_pct", "waste", "{:.2%}"),
            ("days_of_cover", "cover d", "{:.1f}"), ("holding_cost", "holding $", "{:,.0f}"),
            ("waste_cost", "waste $", "{:,.0f}"), ("lost_margin_cost", "lost $", "{:,.0f}"),
            ("total_cost", "total $", "{:,.0f}"), ("seconds", "s", "{:.0f}")]
    print(f"{'policy':<15}" + "".join(f"{c[1]:>12}" for c in cols))
    for name, m in res["policies"].items():
        print(f"{name:<15}" + "".join(f"{c[2].format(m[c[0]]):>12}" for c in cols))
    check = res["policies"].get("ours", {}).get("calibration_check")
    if check:
        print(f"\nours' window calibration, held-out coverage and level: {check}")
    if all(k in res["policies"] for k in ("ours", "incumbent", "oracle")):
        print("\ntargets:")
        for label, ok, detail in targets(res["policies"]):
            print(f"  [{'ok' if ok else 'MISSED'}] {label}: {detail}")
    print(f"\nwrote {out / 'simulation.json'} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
