"""Benchmark: the whole pipeline on the whole Maven log, stage by stage, with the accuracy table.

    .venv/bin/python benchmarks/bench_maven.py [--csv PATH] [--workdir DIR] [--compare-default] [--out res.json]

Runs exactly the commands a user runs, as subprocesses (wall times include start-up): ``replenish import-pos`` ->
``features build`` -> ``backtest --json`` (the issue's protocol: 4 weekly origins over the last 28 days, 7-day
horizon, store x product x day) -> ``train`` -> ``promote`` -> ``forecast`` -> ``plan`` for the day after the data
-> ``bentoml serve`` on loopback with ``POST /replenishment`` (inventory in the request) and ``POST /forecast`` for
every store. Configuration only: the Maven overlay ``configs/maven.yaml`` (``--overlay``) merged with this run's
paths. ``--compare-default`` also backtests without the overlay (the "before" column of the README table).

Reference WAPE on this protocol measured by others: seasonal naive 0.528, AutoETS 0.401, Croston 0.404, a quick
mlforecast LightGBM 0.347.

``--target`` (issue 11, the real-log target): the default configuration, no overlay, backtested in this process on
the feature store the CLI built; ``final`` against the best of AutoETS, SeasonalNaive(7), CrostonOptimized, the
weekday mean and a *plain* mlforecast LightGBM (``plain_lightgbm``: lags 1-7/14/21/28, rolling means, day of week,
default LightGBM parameters, recursive, nothing from this project; ``plain_lightgbm_dates`` adds day of month and
month), on the same scored rows. Target: final WAPE
<= 0.95 x the best of those.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import yaml

from forecasting.config import shared_data_path

ROOT = Path(__file__).resolve().parent.parent
MAVEN = shared_data_path("maven_coffee_shop_sales.csv.gz")
MAPPING = ROOT / "configs" / "sources" / "maven_coffee.yaml"
OVERLAY = ROOT / "configs" / "maven.yaml"
METRICS = ("wape", "mase", "bias", "coverage_80", "coverage_95")
BASELINES = ("seasonal_naive", "auto_ets", "croston", "weekday_mean")


def _run(args: list[str], env: dict[str, str], ok_codes: tuple[int, ...] = (0,)) -> tuple[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "replenish.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env)
    if proc.returncode not in ok_codes:
        raise SystemExit(f"replenish {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout, time.perf_counter() - t0


def _json(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def write_config(work: Path, overlay: Path | None) -> Path:
    """The overlay (Maven settings) plus this run's database, feature store, MLflow store and output folders."""
    cfg = yaml.safe_load(overlay.read_text(encoding="utf-8")) if overlay else {}
    cfg = cfg or {}
    cfg["source"] = {**cfg.get("source", {}), "url": f"sqlite:///{work / 'maven.db'}"}
    cfg["mlflow"] = {"tracking_uri": str(work / "mlruns")}
    cfg["features"] = {**cfg.get("features", {}), "out_dir": str(work / "features")}
    cfg["planning"] = {**cfg.get("planning", {}), "forecasts_dir": str(work / "forecasts"),
                       "reports_dir": str(work / "reports")}
    cfg["training"] = {**cfg.get("training", {}), "tuned_params": None}
    path = work / ("config.yaml" if overlay else "config_default.yaml")
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def accuracy(m: dict) -> dict:
    """The accuracy table of one backtest: per model, per segment, the blend weights and the robustness checks."""
    models = m["models"]
    base = {k: v["wape"] for k, v in models.items() if k not in ("final", "oracle", "ensemble")}
    seg_ok = {s: seg["final"]["wape"] <= min(v["wape"] for k, v in seg.items() if k in base) * 1.005
              for s, seg in m["by_segment"].items()}
    return {
        "origins": m["origins"],
        "final": m["final"],
        "models": {k: {x: v.get(x) for x in METRICS} for k, v in models.items()},
        "by_segment_wape": {s: {k: v["wape"] for k, v in seg.items()} for s, seg in m["by_segment"].items()},
        "blend_weights": m["blend"]["final_weights"],
        "checks": {"final_not_worse_than_best_baseline": models["final"]["wape"] <= min(base.values()) * 1.005,
                   "final_not_worse_per_segment": seg_ok, "final_wape<=0.31": models["final"]["wape"] <= 0.31},
    }


TARGET_BASELINES = ("auto_ets", "seasonal_naive", "croston", "weekday_mean", "plain_lightgbm", "plain_lightgbm_dates")
PLAIN = {"plain_lightgbm": ["dayofweek"], "plain_lightgbm_dates": ["dayofweek", "day", "month"]}


def plain_lightgbm(frame, cutoffs, h: int, ids_by_cutoff: dict) -> pd.DataFrame:
    """A plain mlforecast LightGBM per cutoff (the issue's reference model): observed sales, no exogenous inputs."""
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    parts = []
    for cut in cutoffs:
        d = frame.df[frame.df["ds"] <= cut][["unique_id", "ds", "y"]]
        both = None
        for name, dates in PLAIN.items():  # two plain variants: the best of them is the bar
            mlf = MLForecast(models={name: lgb.LGBMRegressor(random_state=0, n_jobs=1, verbosity=-1)},
                             freq="D", lags=[1, 2, 3, 4, 5, 6, 7, 14, 21, 28],
                             lag_transforms={1: [RollingMean(7), RollingMean(28)]}, date_features=dates)
            mlf.fit(d)
            out = mlf.predict(h, ids=ids_by_cutoff[cut])
            out[name] = out[name].clip(lower=0)
            both = out if both is None else both.merge(out, on=["unique_id", "ds"])
        parts.append(both.assign(cutoff=cut))
    return pd.concat(parts, ignore_index=True)


def target(config: Path, features: str, origins: int) -> dict:
    """Default configuration backtest in-process + the plain LightGBM on the same rows; WAPE table and the ratio."""
    from forecasting.config import load_settings
    from training.pipeline import load_frame, run_backtest

    settings = load_settings(config)
    frame = load_frame(features)
    t0 = time.perf_counter()
    res = run_backtest(frame, settings.training, None, origins=origins, step=7, horizon=7)
    secs = time.perf_counter() - t0
    preds = res.preds
    ids = {c: sorted(g["unique_id"].unique()) for c, g in preds.groupby("cutoff")}
    rows = preds.merge(plain_lightgbm(frame, res.cutoffs, 7, ids), on=["unique_id", "ds", "cutoff"], how="left")
    main = rows[~rows["censored"]]
    models = ["final", "lightgbm", "lightgbm_month", "ensemble", "window_mean", *TARGET_BASELINES]
    models = [m for m in models if m in main]
    wape = {m: float((main[m] - main["y"]).abs().sum() / main["y"].sum()) for m in models}
    bias = {m: float((main[m] - main["y"]).sum() / main["y"].sum()) for m in models}
    best = min(TARGET_BASELINES, key=lambda m: wape[m])
    ratio = wape["final"] / wape[best]
    seg = {s: {m: float((g[m] - g["y"]).abs().sum() / g["y"].sum()) for m in models}
           for s, g in main.groupby("segment") if g["y"].sum() > 0}
    return {"rows": int(len(main)), "series": int(main["unique_id"].nunique()), "origins": res.metrics["origins"],
            "wape": wape, "bias": bias, "by_segment_wape": seg, "best_baseline": best, "final_over_best": ratio,
            "target_met": bool(ratio <= 0.95), "window_spl": {m: res.metrics["models"].get(m, {}).get("window_spl")
                                                               for m in models},
            "blend_weights": res.metrics["blend"]["final_weights"], "backtest_seconds": round(secs, 1),
            "censored_rows": int(rows["censored"].sum()), "scored_rows_note": "uncensored rows, all models alike",
            "pandas": pd.__version__}


def text_keys(features: str, origins: int) -> dict:
    """The issue's text-key case: product and store ids replaced by what a hash of a text key gives (31-bit ids, as
    ``forecasting.source.pos.tables.stable_ids`` did), then the default backtest in this process; its peak memory."""
    import hashlib
    import resource

    from forecasting.config import load_settings
    from training.data import ModelFrame
    from training.pipeline import load_frame, run_backtest

    def hashed(v) -> int:
        return int.from_bytes(hashlib.blake2b(f"key-{v}".encode(), digest_size=8).digest(), "big") % (2**31 - 1) + 1

    frame = load_frame(features)
    df = frame.df.copy()
    for c in ("store_id", "product_id"):
        df[c] = df[c].map({v: hashed(v) for v in df[c].unique()}).astype("int64")
    df["unique_id"] = df["store_id"].astype(str) + "_" + df["product_id"].astype(str)
    frame = ModelFrame(df, frame.static, frame.exog, {k: v for k, v in frame.manifest.items() if k != "products"})
    settings = load_settings(environ={})
    t0 = time.perf_counter()
    res = run_backtest(frame, settings.training.model_copy(update={"tuned_params": None}), None, origins=origins,
                       step=7, horizon=7)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"series": int(df["unique_id"].nunique()), "products": int(df["product_id"].nunique()),
            "max_product_id": int(df["product_id"].max()), "final_wape": res.metrics["models"]["final"]["wape"],
            "peak_rss_mb": round(peak_mb, 1), "backtest_seconds": round(time.perf_counter() - t0, 1),
            "target_met": bool(peak_mb < 1024)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_call(config: Path, work: Path, order_day: str, timeout_s: float = 180) -> dict:
    """``bentoml serve`` with the run's config; /status, then /replenishment and /forecast for every store."""
    import httpx

    port = free_port()
    log = work / "serve.log"
    env = {**os.environ, "REPLENISH_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    env.pop("REPLENISH_API_TOKEN", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "serving.service:Replenishment",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > timeout_s:
                raise SystemExit(f"server did not get ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        ready_s = time.perf_counter() - t0
        status = httpx.post(f"{url}/status", json={}, timeout=30).json()
        calls = {}
        for sid in status["stores"]:
            inv = [{"material_id": 1, "on_hand": 10.0}]  # one counted material, the rest with no count
            t1 = time.perf_counter()
            r = httpx.post(f"{url}/replenishment", json={"store_id": sid, "order_date": order_day, "inventory": inv},
                           timeout=60)
            body = r.json()
            f = httpx.post(f"{url}/forecast", json={"store_id": sid, "start_date": order_day, "days": 3},
                           timeout=60)
            calls[str(sid)] = {"replenishment_status": r.status_code, "forecast_status": f.status_code,
                               "lines": len(body.get("lines", [])),
                               "packs": sum(ln["qty_packs"] for ln in body.get("lines", [])),
                               "inventory_source": body.get("inventory_source"),
                               "forecast_products": len(f.json().get("products", [])),
                               "ms": round(1000 * (time.perf_counter() - t1), 1)}
        return {"ready_s": round(ready_s, 1), "model_version": status["model_version"], "stores": status["stores"],
                "calls": calls}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def print_table(title: str, acc: dict) -> None:
    print(f"\n{title} (final = {acc['final']})")
    print(f"{'model':<16}" + "".join(f"{x:>13}" for x in METRICS))
    for k, v in acc["models"].items():
        print(f"{k:<16}" + "".join(f"{v[x]:>13.3f}" if v.get(x) is not None else f"{'':>13}" for x in METRICS))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(MAVEN))
    ap.add_argument("--workdir", default=None, help="keep the database, feature store, models and reports here")
    ap.add_argument("--overlay", default=str(OVERLAY), help="the Maven configuration overlay ('' = none)")
    ap.add_argument("--origins", type=int, default=4)
    ap.add_argument("--compare-default", action="store_true", help="also backtest without the overlay")
    ap.add_argument("--backtest-only", action="store_true", help="stop after the backtest (the contract)")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    ap.add_argument("--text-keys", action="store_true",
                    help="reuse --workdir's feature store with ids hashed from text keys; backtest peak memory")
    ap.add_argument("--target", action="store_true",
                    help="issue 11: default configuration, final vs the best baseline incl. a plain LightGBM")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_maven_"))
    work.mkdir(parents=True, exist_ok=True)
    if a.text_keys:  # run alone, in a fresh process, so the peak memory is the backtest's
        if not (work / "features").exists():
            raise SystemExit(f"no feature store in {work}: run once with --workdir {work} first")
        tk = text_keys(str(work / "features"), a.origins)
        print(json.dumps({"text_keys": tk}, indent=2))
        if a.out:
            Path(a.out).write_text(json.dumps({"text_keys": tk}, indent=2) + "\n", encoding="utf-8")
        return
    (work / "maven.db").unlink(missing_ok=True)
    config = write_config(work, Path(a.overlay) if a.overlay else None)
    db, feat = f"sqlite:///{work / 'maven.db'}", str(work / "features")
    env = {k: v for k, v in os.environ.items() if k != "REPLENISH_CONFIG"}
    times: dict[str, float] = {}
    res: dict = {"workdir": str(work), "overlay": a.overlay or None}

    _, times["import_pos"] = _run(["import-pos", a.csv, "--mapping", str(MAPPING), "--db", db], env)
    _, times["features"] = _run(["features", "build", "--db", db, "--out", feat, "--full"], env)
    bt = ["backtest", "--db", db, "--features", feat, "--origins", str(a.origins), "--step", "7", "--horizon", "7",
          "--json", "--no-log"]
    if a.target:
        t0 = time.perf_counter()
        res["target"] = target(write_config(work, None), feat, a.origins)
        times["target_backtest"] = time.perf_counter() - t0
        tg = res["target"]
        print(f"\nMaven, default configuration: final WAPE {tg['wape']['final']:.4f} vs best baseline "
              f"{tg['best_baseline']} {tg['wape'][tg['best_baseline']]:.4f}: ratio {tg['final_over_best']:.3f} "
              f"(target <= 0.95: {'met' if tg['target_met'] else 'not met'})")
        for m, v in sorted(tg["wape"].items(), key=lambda kv: kv[1]):
            print(f"  {m:<16} WAPE {v:.4f}  bias {tg['bias'][m]:+.3f}")
        res["seconds"] = {k: round(v, 1) for k, v in times.items()}
        text = json.dumps(res, indent=2, default=str)
        if a.out:
            Path(a.out).write_text(text + "\n", encoding="utf-8")
        print(text)
        return
    out, times["backtest"] = _run([*bt, "--config", str(config)], env)
    res["accuracy"] = accuracy(_json(out))
    print_table("Maven backtest, with the overlay", res["accuracy"])
    if a.compare_default:
        out, times["backtest_default_config"] = _run([*bt, "--config", str(write_config(work, None))], env)
        res["accuracy_default_config"] = accuracy(_json(out))
        print_table("Maven backtest, default configuration", res["accuracy_default_config"])

    if not a.backtest_only:
        cfg = ["--config", str(config)]
        out, times["train"] = _run(["train", "--json", *cfg], env)
        trained = _json(out)
        res["train"] = {"version": trained["version"], "final": trained["final"],
                        "final_wape": trained["metrics"]["final"]["wape"]}
        out, times["promote"] = _run(["promote", "--json", *cfg], env)
        decision = _json(out)
        res["promote"] = {"promoted": decision["promoted"], "reason": decision["reason"]}
        if not decision["promoted"]:  # e.g. coverage out of the band: the chain goes on, saying it was forced
            out, t = _run(["promote", "--json", "--force", *cfg], env)
            times["promote"] += t
            res["promote"]["forced"] = _json(out)["reason"]
        out, times["forecast"] = _run(["forecast", "--json", *cfg], env)
        fc = _json(out)
        res["forecast"] = {k: fc[k] for k in ("model_version", "data_date", "rows", "series", "first_date",
                                                "last_date")}
        day = (date.fromisoformat(fc["data_date"]) + timedelta(days=1)).isoformat()
        out, times["plan"] = _run(["plan", "--date", day, "--json", *cfg], env)
        plan = _json(out)
        res["plan"] = {"order_date": day, "failures": plan["failures"],
                       "stores": {s: {k: v[k] for k in ("lines", "order_lines", "packs", "exceptions")}
                                  for s, v in plan["stores"].items()}}
        t0 = time.perf_counter()
        res["api"] = serve_and_call(config, work, day)
        times["api"] = time.perf_counter() - t0
    res["seconds"] = {**{k: round(v, 1) for k, v in times.items()}, "total": round(sum(times.values()), 1)}
    print("seconds:", res["seconds"])
    text = json.dumps(res, indent=2, default=str)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
