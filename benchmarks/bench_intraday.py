"""Benchmark the ready-food plans through the day (issue #16 part 4): daily-only vs intraday vs oracle.

Reads the configured source (``source.url``, default the embedded SQLite of ``replenish seed``) and its feature
store (``replenish features build``), replays every store x ready-food item x day of the period hour by hour
(``planning.intraday``, ``forecasting.evaluation.intraday``) on ``simulation.seeds`` demand seeds (5: 101..105),
prints the means with 95% intervals and the paired ratios intraday / daily-only, checks the targets and writes
``benchmarks/results/intraday.json`` and ``intraday.png`` (``--period selection``: ``intraday_selection.*``).

Targets (means over the seeds, paired 95% intervals beside): ready-food waste <= 0.7 x and stockout hours <= 0.7 x
the daily-only plan's, fill rate >= the daily-only plan's, total cost (waste + lost margin) <= the daily-only plan's.

Period: the daily replay's reported period (the last ``simulation.weeks`` weeks); ``--period selection`` is the
same number of weeks before it, the only period on which settings (``--release-times``, ``--cover``) may be
chosen. ``--days N`` keeps the period's first N days (a quick run).

Release times: by default ``planning.bake.release_times``, what the bake plan serves (07:00, 11:00, 15:00, chosen
on the selection period among eight candidates, ``benchmarks/results/intraday_selection.json``; the earlier 06:00,
10:30, 14:00: ``intraday_default.json``). Forecasts come from the forecast cache (``data/intraday_fc`` unless
``planning.simulation.forecast_cache`` is set): the first run of a period fits ``ours`` (~12 min), later ones ~2 min.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_chart(report: dict, path: Path) -> Path:
    """Four panels: waste (pieces), stockout hours, fill rate and total cost per plan, mean and 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plans = list(report["policies"])
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, title) in zip(axes, (("wasted", "wasted pieces"), ("stockout_hours", "stockout hours"),
                                       ("fill_rate", "fill rate"), ("total_cost", "total cost ($)")), strict=True):
        m = [report["policies"][p][key] for p in plans]
        ci = [report["policies"][p].get("ci95", {}).get(key, [v, v]) for p, v in zip(plans, m, strict=True)]
        err = [[v - c[0] for v, c in zip(m, ci, strict=True)], [c[1] - v for v, c in zip(m, ci, strict=True)]]
        ax.bar(plans, m, yerr=err, color=["#999999", "#1f77b4", "#2ca02c", "#cccccc"][: len(plans)], capsize=4)
        ax.set_title(title)
        if key == "fill_rate":
            ax.set_ylim(min(m) - 0.05, 1.0)
        ax.tick_params(axis="x", labelsize=8)
    p = report["period"]
    fig.suptitle(f"Ready food through the day, {p['start']}..{p['end']} ({p['name']} period), "
                 f"{len(report['protocol']['demand_seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="settings file (default configs/default.yaml + REPLENISH__ overrides)")
    ap.add_argument("--db", help="source URL (default: source.url)")
    ap.add_argument("--period", choices=("reported", "selection"), default="reported")
    ap.add_argument("--days", type=int, help="only the period's first N days")
    ap.add_argument("--seeds", type=int, help="demand seeds (default simulation.seeds)")
    ap.add_argument("--forecaster", default="ours", choices=("ours", "seasonal_naive"))
    ap.add_argument("--release-times", default="config",
                    help="comma-separated HH:MM (default 'config': planning.bake.release_times, what is served)")
    ap.add_argument("--cover", choices=("shelf_life", "next_release"), help="default planning.bake.cover")
    ap.add_argument("--rule", choices=("top_up", "fixed"), help="default planning.bake.rule")
    ap.add_argument("--search", choices=("yes", "no"), help="default planning.bake.search_targets")
    ap.add_argument("--waste-weight", type=float, help="default planning.bake.waste_weight")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--name", help="file stem (default intraday, or intraday_selection)")
    args = ap.parse_args()

    from forecasting.config import load_settings
    from forecasting.source.db import open_source
    from planning.intraday import run_intraday, summary_lines

    settings = load_settings(args.config)
    engine, schema = open_source(args.db or settings.source.url, settings.source.tables,
                                 settings.source.connect_timeout_s, readonly=True)
    report = run_intraday(settings, engine, schema, period=args.period, days=args.days, seeds=args.seeds,
                          forecaster=args.forecaster,
                          release_times=None if args.release_times == "config" else args.release_times.split(","),
                          cover=args.cover, rule=args.rule,
                          search=None if args.search is None else args.search == "yes",
                          waste_weight=args.waste_weight, progress=lambda m: print(m, flush=True))
    for line in summary_lines(report):
        print(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("intraday" if args.period == "reported" else "intraday_selection")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    try:
        write_chart(report, out / f"{stem}.png")
    except ImportError as exc:  # matplotlib is optional
        print(f"no chart: {exc}")
    print(f"wrote {out / stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
