"""The feature job on Dask: ``build_chunk`` mapped over month x store-group partitions, same Parquet store.

Why this shape: ``features.job.build_chunk`` already works on one month of one store group, reading only that
window from the source, so a partition is exactly one Dask task and nothing about the features changes. Per month a
second task concatenates the store groups, sorts by the dataset keys and writes the month partition straight into
the build's staging folder (the store must be on storage every worker can reach: a shared disk here, object storage
on a real cluster), so only row counts and quarantined lines travel back to the client. The client keeps what is
global: the dimensions (read once into ``Context`` and broadcast), orphan-store and future-timestamp checks, the
quarantine files, the manifest and the atomic commit. The result is the same store as ``build_features``.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine

from features import extract, inventory
from features.job import (
    DATASETS,
    SORT_KEYS,
    Context,
    Progress,
    _censor_stats,
    _now,
    build_chunk,
    finish_build,
    open_build,
    utc_bounds,
)
from features.registry import dataset_schema, schema_hash
from features.store import FeatureStore, Staging, month_key
from features.validate import Quarantine, local_dates
from forecasting.cluster import dask_client
from forecasting.config import ClusterConfig, FeaturesConfig, load_settings
from forecasting.source.schema import SourceSchema

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client


@dataclass(frozen=True)
class SourceSpec:
    """How a worker reaches the source: engines and connections do not pickle, a URL and a table map do.

    The URL carries the password (workers must log in): keep the scheduler on a private network.
    """

    url: str
    tables: dict[str, str]
    present: frozenset[str]
    timeout_s: int = 5

    @classmethod
    def of(cls, src: extract.Source) -> SourceSpec:
        tables = {k: (f"{t.schema}." if t.schema else "") + t.name for k, t in src.schema.tables.items()}
        return cls(src.engine.url.render_as_string(hide_password=False), tables, frozenset(src.present))


_ENGINES: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Engine, SourceSchema]] = {}
_ENGINES_LOCK = threading.Lock()


def _source(spec: SourceSpec) -> extract.Source:
    """One engine per worker process and source (a pool shared by the tasks of that worker)."""
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema

    key = (spec.url, tuple(sorted(spec.tables.items())))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            schema = build_schema(spec.tables)
            _ENGINES[key] = (make_engine(spec.url, schema, spec.timeout_s), schema)
        engine, schema = _ENGINES[key]
    return extract.Source(engine, schema, set(spec.present))


def _worker_ctx(ctx: Context, spec: SourceSpec) -> Context:
    c = copy.copy(ctx)  # the broadcast context is shared by the worker's threads: never mutate it
    c.src = _source(spec)
    return c


def chunk_task(spec: SourceSpec, ctx: Context, d0: date, d1: date, store_ids: list[int]) -> dict[str, Any]:
    """One partition: ``build_chunk`` for local dates d0..d1 and one store group, with its own quarantine."""
    c = _worker_ctx(ctx, spec)
    q = Quarantine()
    with c.src.engine.connect() as conn:
        frames = build_chunk(conn, c, d0, d1, q, store_ids=store_ids)
    return {"frames": frames, "q": q}


def orphan_task(spec: SourceSpec, ctx: Context, d0: date, d1: date) -> dict[str, Any]:
    """Orders of stores unknown to ``t_store`` belong to no group: checked once per month, as the local job does."""
    c = _worker_ctx(ctx, spec)
    q = Quarantine()
    tz0 = c.cfg.default_timezone
    lo, hi = utc_bounds(tz0, d0, d1, c.now)
    if lo < hi:
        with c.src.engine.connect() as conn:
            orphans = extract.orphan_lines(conn, c.src, c.statuses, lo, hi, c.store_ids)
        q.add("unknown_store", orphans, local_dates(orphans["created_at"], tz0))
    return {"frames": None, "q": q}


def month_task(parts: list[dict[str, Any]], staging: Staging, d0: date, names: list[str], horizons: list[int],
               incremental: bool) -> dict[str, Any]:
    """Concatenate a month's store groups, sort like the local job, write each dataset's month partition."""
    staging = copy.copy(staging)  # a private record of what this task wrote; the client records the months itself
    staging.written = {}
    fstore = staging.store
    month = month_key(d0)
    rows: dict[str, int] = {}
    censor = None
    for name in names:
        with warnings.catch_warnings():  # all-NA / differing categoricals: dtypes are set by the schema on write
            warnings.simplefilter("ignore", FutureWarning)
            df = pd.concat([p["frames"][name] for p in parts if p["frames"] is not None], ignore_index=True)
            if incremental and d0.day != 1:  # keep the untouched days of a partly rebuilt month
                old = fstore.read_partition(name, month)
                keep = None if old is None else old[old["date"] < pd.Timestamp(d0)]
                if keep is not None and len(keep):
                    df = pd.concat([keep, df], ignore_index=True)
        df = df.sort_values(SORT_KEYS[name], ignore_index=True)
        rows[name] = staging.write(name, month, df, dataset_schema(name, horizons))
        if name == "daily":
            censor = _censor_stats(df)
    qs = [p["q"] for p in parts]
    return {"month": month, "rows": rows, "censor": censor, "q_frames": [f for q in qs for f in q.frames],
            "good_lines": sum(q.good_lines for q in qs)}


def store_groups(store_ids: list[int], size: int) -> list[list[int]]:
    """Store ids in groups of ``size`` (sorted, so the partitioning is the same on every run)."""
    ids = sorted(int(s) for s in store_ids)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def build_features_dask(engine: Engine, schema: SourceSchema, out_dir: str, until: date | None = None,
                        full: bool = False, progress: Progress | None = None, config: FeaturesConfig | None = None,
                        cluster: ClusterConfig | None = None, client: Client | None = None) -> dict[str, Any]:
    """``features.job.build_features`` with the month x store-group partitions computed on Dask.

    Same arguments and summary (plus ``engine`` and ``partitions``); ``client`` reuses an open Dask client, else
    one is opened from ``cluster`` (a scheduler address or a LocalCluster) for the duration of the build.
    """
    from dask import delayed
    from distributed import as_completed

    t0 = time.perf_counter()
    settings = None if (config and cluster) else load_settings()
    cfg = config or settings.features
    ccfg = cluster or settings.cluster
    now = _now(cfg)
    src = extract.Source.open(engine, schema)
    fstore = FeatureStore(out_dir)
    horizons = sorted({int(h) for h in cfg.incumbent_horizons})
    shash = schema_hash(horizons)
    with engine.connect() as conn:
        ctx, window, chunks = open_build(conn, src, cfg, fstore, shash, until, full, now, progress)
        incremental = window[4]
        fut_lines = extract.future_lines(conn, src, ctx.statuses, now)

    names = [n for n in DATASETS if n != "inventory_daily" or inventory.has_inventory(src)]
    groups = store_groups(ctx.store_ids, ccfg.stores_per_task)
    spec = SourceSpec.of(src)
    shipped = copy.copy(ctx)
    shipped.src = None  # type: ignore[assignment]  # rebuilt on the worker from ``spec``
    q = Quarantine()
    staging = Staging(fstore)
    rows_by_month: dict[str, dict[str, int]] = {d: {} for d in DATASETS}
    censor_by_month: dict[str, dict[str, int]] = {}
    try:
        with dask_client(ccfg, client) as cl:
            [ctx_fut] = cl.scatter([shipped], broadcast=True)
            jobs = []
            for d0, d1 in chunks:
                parts = [delayed(chunk_task, pure=False)(spec, ctx_fut, d0, d1, g) for g in groups]
                parts.append(delayed(orphan_task, pure=False)(spec, ctx_fut, d0, d1))
                jobs.append(delayed(month_task, pure=False)(parts, staging, d0, names, horizons, incremental))
            futures = cl.compute(jobs)
            for k, (_fut, res) in enumerate(as_completed(futures, with_results=True), start=1):
                month = res["month"]
                for name, n in res["rows"].items():
                    rows_by_month[name][month] = n
                    staging.written.setdefault(name, set()).add(month)
                if res["censor"] is not None:
                    censor_by_month[month] = res["censor"]
                q.frames.extend(res["q_frames"])
                q.good_lines += res["good_lines"]
                if progress:
                    progress(f"features {month} (dask)", k, len(chunks))
        rows_by_month = {n: dict(sorted(m.items())) for n, m in rows_by_month.items()}
        censor_by_month = dict(sorted(censor_by_month.items()))
        if progress:
            progress("features", len(chunks), len(chunks))
        summary = finish_build(engine, src, cfg, ctx, fstore, staging, q, fut_lines, window=window, shash=shash,
                               horizons=horizons,
                               rows_by_month=rows_by_month, censor_by_month=censor_by_month, t0=t0,
                               extra={"engine": "dask", "partitions": len(chunks) * (len(groups) + 1)})
    except BaseException:
        staging.discard()
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
