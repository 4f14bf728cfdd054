"""MLflow: where runs go, what each run logs, the pyfunc model, the registry and the champion rule.

A bare path as tracking URI (the default ``mlruns``) means a local SQLite store ``<path>/mlflow.db`` with artifacts in
``<path>/artifacts``: MLflow 3.7+ defaults to SQLite and keeps the file store only for compatibility, and the model
registry (aliases) needs a database store. Any URI with a scheme (``http://``, ``postgresql://``) is used as is.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd

from forecasting.config import resolve_path

CHAMPION = "champion"


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
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


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


def log_backtest(result, prefix: str = "bt") -> None:
    """Metrics (main, by segment, by horizon for the final model, material), the JSON and plots."""
    m = result.metrics
    metrics = flatten(prefix, {"models": m["models"], "by_segment": m.get("by_segment", {})})
    metrics.update(flatten(f"{prefix}.material", m.get("material", {})))
    for hz, v in m["by_horizon"].get(result.final, {}).items():
        metrics[f"{prefix}.final.wape_h{int(hz):02d}"] = v
    mlflow.log_metrics(metrics)
    mlflow.log_dict(m, "backtest/metrics.json")
    for name, fig in plots(result).items():
        mlflow.log_figure(fig, f"plots/{name}.png")


def plots(result) -> dict[str, Any]:
    """Forecast vs actual for sample series, WAPE by horizon, and a calibration curve (randomized PIT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forecasting import uncertainty as unc

    preds, final = result.preds, result.final
    figs: dict[str, Any] = {}
    last = preds[preds["cutoff"] == preds["cutoff"].max()]
    vol = last.groupby("unique_id")["y"].sum().sort_values()
    sample = [vol.index[int(i)] for i in np.linspace(0, len(vol) - 1, 4)] if len(vol) else []
    fig, axes = plt.subplots(len(sample) or 1, 1, figsize=(9, 2.4 * max(1, len(sample))), squeeze=False)
    for ax, uid in zip(axes[:, 0], sample, strict=False):
        s = last[last["unique_id"] == uid]
        ax.plot(s["ds"], s["y"], "k.-", label="actual")
        ax.plot(s["ds"], s[final], "b-", label=final)
        if f"{final}-q0.9" in s:
            ax.fill_between(s["ds"], 0, s[f"{final}-q0.9"], alpha=0.15, label="q0.9")
        ax.set_title(uid, fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    figs["forecast_vs_actual"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, by_h in result.metrics["by_horizon"].items():
        if name in (final, "incumbent", "seasonal_naive", "oracle", "auto_ets"):
            ax.plot([int(k) for k in by_h], list(by_h.values()), marker=".", label=name)
    ax.set_xlabel("horizon (days)")
    ax.set_ylabel("WAPE")
    ax.legend(fontsize=7)
    figs["error_by_horizon"] = fig
    ok = preds[~preds["censored"]]
    unc_final = result.uncertainty.get(final, {"all": (0.3, 0.0)})
    alpha = ok["segment"].map(lambda s: unc_final.get(s, unc_final["all"])[0]).to_numpy(float)
    pit = unc.nb_pit(ok["y"].to_numpy(), ok[final].to_numpy(), alpha, np.random.default_rng(0))
    levels = np.linspace(0.05, 0.99, 20)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(levels, [(pit <= q).mean() for q in levels], "b.-", label=final)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("nominal quantile")
    ax.set_ylabel("observed share below")
    ax.legend(fontsize=7)
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
