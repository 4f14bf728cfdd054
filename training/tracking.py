"""MLflow: where runs go, what each run logs, the pyfunc model, the registry and the champion rule.

A bare path as tracking URI (the default ``mlruns``) means a local SQLite store ``<path>/mlflow.db`` with artifacts in
``<path>/artifacts``: MLflow 3.7+ defaults to SQLite and keeps the file store only for compatibility, and the model
registry (aliases) needs a database store. Any URI with a scheme (``http://``, ``postgresql://``) is used as is.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd

from forecasting.config import resolve_path

CHAMPION = "champion"
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces); ours holds training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
HEADLINE = "headline"  # prefix of the few metrics to read first (the rest are details)


def resolve_tracking_uri(uri: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments or None)."""
    if "://" in uri or uri.startswith("file:"):
        return uri, None
    root = resolve_path(uri)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def setup(tracking_uri: str, experiment: str) -> str:
    """Point MLflow at the store and select (creating if needed) the experiment; returns its id."""
    uri, artifacts = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts, tags=EXPERIMENT_KIND)
    else:
        exp_id = exp.experiment_id
        if any(exp.tags.get(k) != v for k, v in EXPERIMENT_KIND.items()):  # stores made before the tag existed
            for k, v in EXPERIMENT_KIND.items():
                mlflow.MlflowClient().set_experiment_tag(exp_id, k, v)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def start_run(name: str, started_ms: int | None = None):
    """An MLflow run whose start is when the job started (``started_ms``), not when it began logging: a train
    of 100 s then reads 100 s in the UI, not the few seconds its logging took."""
    if started_ms is None:
        with mlflow.start_run(run_name=name) as run:
            yield run
        return
    exp_id = mlflow.tracking.fluent._get_experiment_id()
    created = mlflow.MlflowClient().create_run(exp_id, start_time=started_ms, run_name=name)
    with mlflow.start_run(run_id=created.info.run_id) as run:
        yield run


CODE_PACKAGES = ("forecasting", "training")


def code_hash() -> str:
    """Content hash of the model code (``forecasting/``, ``training/``): a changed line changes the model."""
    h = hashlib.sha1()
    for pkg in CODE_PACKAGES:
        for f in sorted(resolve_path(pkg).rglob("*.py")):
            h.update(f.relative_to(resolve_path(".")).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def train_fingerprint(frame, training_cfg: dict[str, Any], params: dict[str, Any]) -> str:
    """Same data, same code, same configuration and parameters -> the same model: nothing new to register."""
    h = hashlib.sha1(pd.util.hash_pandas_object(frame.df, index=False).to_numpy())
    h.update(code_hash().encode())
    h.update(json.dumps({"training": training_cfg, "params": params}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def registered_with_fingerprint(name: str, fp: str):
    """The model version already registered from a run with this train fingerprint, or None."""
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        runs = client.search_runs(
            [mlflow.tracking.fluent._get_experiment_id()], f"tags.train_fingerprint = '{fp}'", max_results=20
        )
        for run in runs:
            versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
            if versions:
                return max(versions, key=lambda v: int(v.version))
    except MlflowException:
        return None
    return None


class ForecasterPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: input rows ``store_id, product_id, date`` (+ known features) -> mean and quantiles.

    Returns forecasts for the requested keys only; the horizon is the furthest requested date.
    """

    def load_context(self, context) -> None:
        self.forecaster = joblib.load(context.artifacts["forecaster"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        f = self.forecaster
        x = pd.DataFrame(model_input).copy()
        x["ds"] = pd.to_datetime(x["date"]).dt.normalize()
        h = max(1, int((x["ds"].max() - f.last_date_).days))
        out = f.predict(h, x)
        keys = x[["store_id", "product_id", "ds"]].astype({"store_id": int, "product_id": int})
        out = keys.merge(out, on=["store_id", "product_id", "ds"], how="left")
        out["date"] = out.pop("ds").dt.strftime("%Y-%m-%d")
        return out.drop(columns=["unique_id", "segment"])


def input_example(forecaster, n_days: int = 2) -> pd.DataFrame:
    """A few future rows in the pyfunc's input format."""
    ids = forecaster.keys_.iloc[:3]
    days = [forecaster.last_date_ + pd.Timedelta(days=k) for k in range(1, n_days + 1)]
    return pd.DataFrame(
        [{"store_id": int(s), "product_id": int(p), "date": d.strftime("%Y-%m-%d")} for s, p in ids.to_numpy()
         for d in days]
    )


RUNTIME_PACKAGES = ("mlflow", "lightgbm", "mlforecast", "statsforecast", "utilsforecast", "pandas", "numpy",
                    "scikit-learn", "scipy", "joblib", "pyarrow")


def pip_requirements() -> list[str]:
    """The packages the pyfunc needs, pinned to the versions installed here.

    Why explicit: letting MLflow infer them re-imports the model in a subprocess on every train (~20 s on this
    machine) and can miss packages the forecaster only imports lazily.
    """
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for name in RUNTIME_PACKAGES:
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return reqs


def log_forecaster(forecaster, registry_name: str | None) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """Log the pyfunc (signature and input example) in the active run; register it when a name is given."""
    from mlflow.models import infer_signature

    example = input_example(forecaster)
    wrapper = ForecasterPyfunc()
    wrapper.forecaster = forecaster
    expected = wrapper.predict(None, example)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "forecaster.joblib"
        joblib.dump(forecaster, path)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecasterPyfunc(),
            artifacts={"forecaster": str(path)},
            signature=infer_signature(example, expected),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registry_name,
        )
    return info, example, expected


def flatten(prefix: str, obj: Any, out: dict[str, float] | None = None) -> dict[str, float]:
    """Nested metric dict -> ``a.b.c: value`` with finite numbers only (MLflow metric names)."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (int, float, np.floating, np.integer)) and not isinstance(obj, bool):
        if np.isfinite(obj):
            out[prefix.replace("@", "_")] = float(obj)
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The few figures to read first: the final model's error, against the incumbent and the oracle, and how
    often its 80% and 95% intervals held the actual."""
    models = metrics.get("models", {})
    final = models.get("final", {})
    out = {
        f"{HEADLINE}.final_wape": final.get("wape"),
        f"{HEADLINE}.final_coverage_80": final.get("coverage_80"),
        f"{HEADLINE}.final_coverage_95": final.get("coverage_95"),
    }
    for other in ("incumbent", "oracle"):
        w = models.get(other, {}).get("wape")
        if w and final.get("wape") is not None:
            out[f"{HEADLINE}.final_wape_vs_{other}"] = final["wape"] / w
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def describe_headline(h: dict[str, float], final_label: str, details: bool = True) -> str:
    """The headline in plain words (the run's description in the MLflow UI)."""
    p = HEADLINE + "."
    parts = [f"Final model ({final_label}): WAPE {h[p + 'final_wape']:.3f} (share of units mis-forecast)"]
    if p + "final_wape_vs_incumbent" in h:
        parts.append(f"{h[p + 'final_wape_vs_incumbent']:.2f} x the incumbent's error")
    if p + "final_wape_vs_oracle" in h:
        parts.append(f"{h[p + 'final_wape_vs_oracle']:.2f} x the oracle's")
    if p + "final_coverage_80" in h and p + "final_coverage_95" in h:
        parts.append(f"80% / 95% intervals held the actual on {h[p + 'final_coverage_80']:.0%} / "
                     f"{h[p + 'final_coverage_95']:.0%} of days")
    tail = " Details: metrics bt.*, plots/, backtest/metrics.json." if details else ""
    return "; ".join(parts) + "." + tail


def log_backtest(result, prefix: str = "bt", sources=None) -> dict[str, float]:
    """Headline metrics and the run's description, then every detail metric (by model, segment, horizon,
    material), the JSON and plots; returns the headline."""
    m = result.metrics
    head = headline(m)
    mlflow.log_metrics(head)
    if f"{HEADLINE}.final_wape" in head:
        mlflow.set_tag("mlflow.note.content", describe_headline(head, str(m.get("final", "final"))))
    metrics = flatten(prefix, {"models": m["models"], "by_segment": m.get("by_segment", {})})
    metrics.update(flatten(f"{prefix}.material", m.get("material", {})))
    if "hourly" in m:  # hour-level scores (training.hourly_eval)
        metrics.update(flatten(f"{prefix}.hourly", {"models": m["hourly"]["models"]}))
    for hz, v in m["by_horizon"].get(result.final, {}).items():
        metrics[f"{prefix}.final.wape_h{int(hz):02d}"] = v
    mlflow.log_metrics(metrics)
    mlflow.log_dict(m, "backtest/metrics.json")
    for name, fig in plots(result, sources).items():
        mlflow.log_figure(fig, f"plots/{name}.png")
    return head


def series_label(uid: str, sources=None) -> str:
    """``Store name · Product name (store 8, product 61)`` for a ``store_product`` series id."""
    try:
        store, product = (int(x) for x in str(uid).split("_", 1))
    except ValueError:
        return str(uid)
    sname = (getattr(sources, "stores", None) or {}).get(store, f"store {store}")
    pname = (getattr(sources, "products", None) or {}).get(product, f"product {product}")
    return f"{sname} · {pname} (store {store}, product {product})"


def plots(result, sources=None) -> dict[str, Any]:
    """Forecast vs actual for sample series (named by store and product), WAPE by days ahead, and a calibration
    curve (randomized PIT); axes carry units and dates are written so that they do not overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from forecasting import uncertainty as unc

    preds, final = result.preds, result.final
    figs: dict[str, Any] = {}
    last = preds[preds["cutoff"] == preds["cutoff"].max()]
    vol = last.groupby("unique_id")["y"].sum().sort_values()
    sample = [vol.index[int(i)] for i in np.linspace(0, len(vol) - 1, 4)] if len(vol) else []
    fig, axes = plt.subplots(len(sample) or 1, 1, figsize=(9, 2.8 * max(1, len(sample))), squeeze=False)
    for ax, uid in zip(axes[:, 0], sample, strict=False):
        s = last[last["unique_id"] == uid]
        ax.plot(s["ds"], s["y"], "k.-", label="actual")
        ax.plot(s["ds"], s[final], "b-", label=f"forecast ({final})")
        if f"{final}-q0.9" in s:
            ax.fill_between(s["ds"], 0, s[f"{final}-q0.9"], alpha=0.15, label="up to the 90% quantile")
        ax.set_title(series_label(uid, sources), fontsize=9)
        ax.set_ylabel("units sold per day")
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.legend(fontsize=7, loc="upper left")
    if len(sample):
        fig.suptitle(f"Forecast vs actual from the last backtest origin ({last['cutoff'].max():%Y-%m-%d})",
                     fontsize=10)
    fig.tight_layout()
    figs["forecast_vs_actual"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, by_h in result.metrics["by_horizon"].items():
        if name in (final, "incumbent", "seasonal_naive", "oracle", "auto_ets"):
            ax.plot([int(k) for k in by_h], list(by_h.values()), marker=".", label=name)
    ax.set_title("Forecast error by days ahead (all stores and products)", fontsize=10)
    ax.set_xlabel("days ahead of the forecast origin")
    ax.set_ylabel("WAPE (share of units, lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["error_by_horizon"] = fig
    ok = preds[~preds["censored"]]
    unc_final = result.uncertainty.get(final, {"all": (0.3, 0.0)})
    alpha = ok["segment"].map(lambda s: unc_final.get(s, unc_final["all"])[0]).to_numpy(float)
    pit = unc.nb_pit(ok["y"].to_numpy(), ok[final].to_numpy(), alpha, np.random.default_rng(0))
    levels = np.linspace(0.05, 0.99, 20)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(levels, [(pit <= q).mean() for q in levels], "b.-", label=final)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    ax.set_title("Are the quantiles honest? (uncensored days)", fontsize=10)
    ax.set_xlabel("quantile of the forecast distribution")
    ax.set_ylabel("share of actual units below it")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["calibration"] = fig
    for f in figs.values():
        plt.close(f)
    return figs


def log_common(cfg_dump: dict[str, Any], manifest: dict[str, Any], params: dict[str, Any]) -> None:
    """Config, manifest and flat params of a run."""
    mlflow.log_dict(cfg_dump, "config/training.json")
    mlflow.log_dict(manifest or {}, "features/manifest.json")
    flat = {k: v for k, v in params.items() if v is not None}
    mlflow.log_params({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()})


def champion_version(client, name: str):
    """The model version holding the champion alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
