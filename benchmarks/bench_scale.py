"""Scale benchmark: time and peak memory per stage (seed, features, train, forecast, plan) at 10, 50 and 200 stores,
in-process (``local``) and on a Dask LocalCluster (``dask``: 2 worker processes x 1 thread).

Why: the nightly run must grow about linearly in the number of stores, and the measured cost per series is what
docs/operations.md extrapolates to 20,000 stores. The sources are ``configs/scenarios/scale_<n>.yaml`` (8 weeks of
history, every store open throughout, so only the store count changes). Each (stores, engine) case runs in its own
child process; peak memory is the highest RSS of that process plus its children (the Dask workers), sampled every
0.1 s during the stage. Stages:

* seed: the generator writes the scenario into a SQLite file (once per store count, shared by both engines);
* features: ``build_features`` / ``build_features_dask`` (month x store-group tasks);
* train: load the feature store into a model frame, fit the global LightGBM (``LGBMModel`` / ``DaskLGBMModel``),
  one thread per process in both (OpenMP threads spin on a loaded 2-core machine; the Dask workers have 1 each);
* forecast: 14 days for every active series: the statsforecast baselines (SeasonalNaive, AutoETS, Croston; local
  or Fugue on Dask) plus the fitted LightGBM applied to the newest data (local or series partitions on Dask),
  written to the forecast cache;
* plan: the order proposal of every store from that cache (no reports, no write-back); on Dask the per-store
  ``plan_store`` calls are mapped over the workers with the inputs broadcast once.

Results merge into ``benchmarks/results/scale.json`` (so the 200-store case can run on its own) and the chart is
redrawn into ``benchmarks/results/scale.png``.
Usage: ``python benchmarks/bench_scale.py [--stores 10 50] [--engines local dask]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("seed", "features", "train", "forecast", "plan")
HORIZON = 14


class PeakRss:
    """Highest RSS (MB) of this process and its children while a stage runs (a sampling thread)."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()

    def _rss(self) -> float:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _cpu(self) -> float:
        """CPU seconds (user + system) of this process and its live children: robust to a shared, loaded machine."""
        import psutil

        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    @contextmanager
    def measure(self, out: dict[str, Any], stage: str):
        self.peak = self._rss()
        self._stop.clear()
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        t0, c0 = time.perf_counter(), self._cpu()
        try:
            yield
        finally:
            out[stage] = {"seconds": round(time.perf_counter() - t0, 2), "cpu_s": round(self._cpu() - c0, 2)}
            self._stop.set()
            t.join()
            out[stage]["peak_mb"] = round(max(self.peak, self._rss()), 1)


def _child(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *cmd], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_seed(n: int, url: str) -> dict[str, Any]:
    from forecasting.config import resolve_path
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema
    from generator.api import generate

    schema = build_schema()
    engine = make_engine(url, schema)
    stages: dict[str, Any] = {}
    with PeakRss().measure(stages, "seed"):
        info = generate(engine, schema, resolve_path(f"configs/scenarios/scale_{n}.yaml"), seed=42)
    return {"stages": stages, "orders": info["orders_completed"], "history_end": info["history_end"],
            "history_start": info["history_start"]}


def run_case(n: int, engine_name: str, url: str, work: Path) -> dict[str, Any]:
    """features -> train -> forecast -> plan for one store count on one engine (this process is fresh)."""
    import numpy as np

    from features.job import build_features
    from forecasting.cluster import dask_client
    from forecasting.config import ClusterConfig, Settings, load_settings
    from forecasting.source.db import open_source
    from forecasting.source.forecast_cache import write_cache
    from training.batch import active_ids, lgbm_forecast_from, with_uncertainty
    from training.data import SegmentRule, segment_series
    from training.models import LGBMModel, StatsModels
    from training.pipeline import load_frame

    frozen = work / "settings.json"  # read once by the parent: the configs can change under a long run
    settings = Settings.model_validate_json(frozen.read_text()) if frozen.is_file() else load_settings()
    tcfg = settings.training
    fcfg = settings.features.model_copy(update={"now": "2026-01-01T00:00:00"})
    ccfg = ClusterConfig(engine="dask", n_workers=2, threads_per_worker=1, processes=True, stores_per_task=10,
                         series_per_partition=5000)
    engine, schema = open_source(url)
    fdir, cache_root = work / f"features_{engine_name}", work / f"forecasts_{engine_name}"
    meter = PeakRss()
    st: dict[str, Any] = {}
    dask = engine_name == "dask"
    out: dict[str, Any] = {"stages": st}
    t_cluster = time.perf_counter()
    with dask_client(ccfg) if dask else _nothing() as client:
        if dask:
            out["cluster_start_s"] = round(time.perf_counter() - t_cluster, 2)
        with meter.measure(st, "features"):
            if dask:
                from features.distributed import build_features_dask

                summary = build_features_dask(engine, schema, str(fdir), full=True, config=fcfg, cluster=ccfg,
                                              client=client)
            else:
                summary = build_features(engine, schema, str(fdir), full=True, config=fcfg)
        out["rows"] = summary["rows"]
        out["order_lines"] = summary["lines_read"]

        with meter.measure(st, "train"):
            frame = load_frame(fdir)
            if dask:
                from training.distributed import DaskLGBMModel

                model = DaskLGBMModel(client, tcfg.lgbm, tcfg.lags, tcfg.horizon, 1, tcfg.seed, 5000).fit(frame)
                local_model = model.to_local()
            else:
                local_model = model = LGBMModel(tcfg.lgbm, tcfg.lags, "recursive", tcfg.horizon, 1, tcfg.seed)
                model.fit(frame)
        ids = active_ids(frame)
        out["series"] = len(ids)
        out["train_rows"] = len(frame.df)

        with meter.measure(st, "forecast"):
            if dask:
                from training.distributed import DaskStatsModels, dask_lgbm_forecast_from

                stats = DaskStatsModels(client, 7, tcfg.ets_model, True, 5000).fit(frame).predict(HORIZON, ids)
                lg = dask_lgbm_forecast_from(local_model, frame, HORIZON, ids, client, 5000)
            else:
                stats = StatsModels(7, tcfg.ets_model, True).fit(frame).predict(HORIZON, ids)
                lg = lgbm_forecast_from(local_model, frame, HORIZON, ids)
            means = lg.merge(stats, on=["unique_id", "ds"])
            means["mean"] = means["lightgbm"]
            keys = frame.df.drop_duplicates("unique_id").set_index("unique_id")[["store_id", "product_id"]]
            means = means.merge(keys, left_on="unique_id", right_index=True)
            rule = SegmentRule(new_days=tcfg.new_days, slow_mean=tcfg.slow_mean,
                               intermittent_zero_share=tcfg.intermittent_zero_share)
            means["segment"] = means["unique_id"].map(segment_series(frame.df, rule=rule)).fillna("fast")
            fc = with_uncertainty(means[["unique_id", "ds", "mean", "store_id", "product_id", "segment"]],
                                  {"all": (0.3, 0.0)}, frame.last_date, tcfg.quantiles)
            data_date = frame.last_date.date()
            write_cache(cache_root, fc, "v0", data_date, {"kind": "lightgbm"})
        out["forecast_rows"] = len(fc)
        out["forecast_mean_sum"] = round(float(np.sum(fc["mean"])), 1)
        out["lgbm_vs_seasonal_naive_corr"] = round(float(np.corrcoef(means["lightgbm"],
                                                                     means["seasonal_naive"])[0, 1]), 3)

        with meter.measure(st, "plan"):
            order_date = data_date + timedelta(days=1)
            if dask:
                n_ok = _plan_dask(settings, engine, schema, cache_root, order_date, client)
            else:
                from planning.plan import run_plan

                res = run_plan(settings, engine, schema, order_date, forecasts_dir=cache_root, features_dir=fdir,
                               write=False, reports=False)
                n_ok = len(res.stores)
        out["planned_stores"] = n_ok
    return out


@contextmanager
def _nothing():
    yield None


def _plan_dask(settings, engine, schema, cache_root: Path, order_date: date, client) -> int:
    """``run_plan``'s per-store loop on the workers: inputs read once here, broadcast, ``plan_store`` mapped."""
    from forecasting.config import resolve_path
    from planning.inputs import read_plan_inputs
    from planning.plan import find_cache, plan_store

    cache = find_cache(resolve_path(cache_root), order_date)
    inputs = read_plan_inputs(engine, schema, order_date, settings.planning.inventory_days,
                              7 * settings.planning.exceptions.usual_order_weeks)
    targets = [s for s in inputs.open_stores(order_date) if s in set(cache.frame["store_id"].astype(int))]
    cache_f, inputs_f = client.scatter([cache, inputs], broadcast=True)
    futs = client.map(plan_store, targets, cache=cache_f, inputs=inputs_f, order_date=order_date,
                      settings=settings, order_time=None, pure=False)
    return sum(1 for _ in client.gather(futs))



def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(STAGES, ("#888888", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"), strict=True))
    for eng, style in (("local", "-"), ("dask", "--")):
        ns = sorted(int(n) for n in cases if eng in cases[n])
        if not ns:
            continue
        for stage in STAGES:
            src = "seed" if stage == "seed" else eng
            if stage == "seed" and eng == "dask":
                continue
            ys = [cases[str(n)][src]["stages"][stage]["seconds"] for n in ns]
            axes[0].plot(ns, ys, style, marker="o", color=colors[stage], label=f"{stage} ({eng})")
        mem = [max(v["peak_mb"] for v in cases[str(n)][eng]["stages"].values()) for n in ns]
        axes[1].plot(ns, mem, style, marker="o", color="k", label=f"peak RSS ({eng})")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("stores (8 weeks of history, ~80 products each)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds")
    axes[0].set_title("time per stage (solid: local, dashed: Dask 2x1)")
    axes[1].set_ylabel("MB (process + workers)")
    axes[1].set_title("peak memory over the stages")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _per_series(results: dict[str, Any]) -> None:
    """Milliseconds per series per stage (the figure docs/operations.md extrapolates from)."""
    for case in results["cases"].values():
        for eng in ("local", "dask"):
            c = case.get(eng)
            if not c:
                continue
            stages = {**case.get("seed", {}).get("stages", {}), **c["stages"]}
            c["ms_per_series"] = {s: round(1000 * v["seconds"] / c["series"], 3) for s, v in stages.items()}
            c["cpu_ms_per_series"] = {s: round(1000 * v["cpu_s"] / c["series"], 3) for s, v in stages.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--engines", nargs="+", default=["local", "dask"], choices=["local", "dask"])
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    ap.add_argument("--child", nargs=4, metavar=("KIND", "N", "URL", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, n, url, work = args.child
        res = run_seed(int(n), url) if kind == "seed" else run_case(int(n), kind, url, Path(work))
        print(json.dumps(res, default=str))
        return 0

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from forecasting.config import load_settings

    settings_json = load_settings().model_dump_json()
    results = json.loads(out.read_text()) if out.is_file() else {"cases": {}}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "note": "2 cores shared with other work; LocalCluster 2 worker processes x 1 thread"}
    for n in args.stores:
        with tempfile.TemporaryDirectory(prefix=f"bench_scale_{n}_") as tmp:
            url = f"sqlite:///{Path(tmp) / 'source.db'}"
            (Path(tmp) / "settings.json").write_text(settings_json)
            case = results["cases"].setdefault(str(n), {})
            t0 = time.perf_counter()
            case["seed"] = _child(["--child", "seed", str(n), url, tmp])
            print(f"{n} stores: seeded {case['seed']['orders']:,} orders in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            for eng in args.engines:
                t0 = time.perf_counter()
                case[eng] = _child(["--child", eng, str(n), url, tmp])
                figs = ", ".join(f"{s} {v['seconds']:.1f}s ({v['cpu_s']:.0f} cpu-s)/{v['peak_mb']:.0f}MB"
                                 for s, v in case[eng]["stages"].items())
                print(f"{n} stores {eng}: {case[eng]['series']} series: {figs} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            _per_series(results)
            out.write_text(json.dumps(results, indent=2) + "\n")
            _chart(results, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
