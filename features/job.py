"""The feature job: month by month, extract -> validate -> panels -> censoring -> exogenous features -> Parquet.

Why month chunks: each chunk is one SQL window per time zone and one partition per dataset, so memory stays
bounded by a month of one store group and a later issue can map ``build_chunk`` over (month, store group) on
Dask unchanged. Incremental runs start ``reread_days`` before the manifest's watermark (late orders, corrected
counts), merge with the untouched days of that month's partition and rewrite it; ``full=True`` rebuilds all.
Everything is staged and committed at the end, so running twice gives the same store and a failed run leaves
the previous one intact.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from features import extract, inventory
from features.calendar import add_daily_features, planned_events
from features.panels import (
    DAILY_KEYS,
    HOURLY_KEYS,
    collapse_local,
    daily_from_hourly,
    hourly_panel,
    material_panel,
    outside_opening,
    to_local,
)
from features.registry import SCHEMAS, dataset_schema, feature_registry, schema_hash
from features.store import FeatureStore, Staging, month_key
from features.validate import Quarantine, local_dates, write_quarantine
from forecasting.config import PROJECT_ROOT, FeaturesConfig, load_settings
from forecasting.errors import ConfigError, DataError
from forecasting.source.db import safe_url
from forecasting.source.pos.calendar import source_calendar
from forecasting.source.schema import SourceSchema

Progress = Callable[[str, int, int], None]
DATASETS = list(SCHEMAS)
SORT_KEYS = {"hourly": HOURLY_KEYS, "daily": DAILY_KEYS, "material_daily": ["store_id", "material_id", "date"],
             "inventory_daily": ["store_id", "material_id", "date"]}


class Context:
    """Everything a chunk needs that is read once per job: dimensions, BOM, campaigns, weather, settings."""

    def __init__(self, conn: Connection, src: extract.Source, cfg: FeaturesConfig, now: datetime) -> None:
        self.src, self.cfg, self.now = src, cfg, now
        self.statuses = list(cfg.completed_statuses)
        self.horizons = sorted({int(h) for h in cfg.incumbent_horizons})
        self.stores = extract.read_stores(conn, src, cfg.default_timezone)
        self.products = extract.read_products(conn, src)
        if self.stores.empty or self.products.empty:
            raise DataError("source has no stores or no products: nothing to build features from")
        self.bom, self.bom_real = extract.read_bom(conn, src, self.products)
        self.campaigns = extract.read_campaigns(conn, src)
        self.weather = extract.read_weather(conn, src)
        self.temperature = extract.read_weather_daily(conn, src)
        self.store_ids = self.stores["store_id"].tolist()
        self.product_ids = self.products["product_id"].tolist()
        self.dup_orders, self.dup_lines = extract.duplicate_keys(conn, src)
        # The source's own calendar (stored by a POS import) wins over the configured default; both are checked.
        self.holidays = source_calendar(conn, src.t("meta") if src.has("meta") else None, cfg.holiday_country,
                                        cfg.holiday_subdiv)
        self.history: pd.DataFrame | None = None  # ireplenishment history preloaded for the job's window

    def load_history(self, conn: Connection, d0: date, d1: date) -> None:
        """Read the (small) daily ireplenishment history once: its tables have no date index to range-scan."""
        self.history = inventory.inventory_daily(conn, self.src, d0, d1, self.horizons)

    def inventory(self, conn: Connection, d0: date, d1: date) -> pd.DataFrame:
        if self.history is None:
            return inventory.inventory_daily(conn, self.src, d0, d1, self.horizons)
        h = self.history
        return h[(h["date"] >= pd.Timestamp(d0)) & (h["date"] <= pd.Timestamp(d1))].reset_index(drop=True)


def _now(cfg: FeaturesConfig) -> datetime:
    if cfg.now:
        try:
            ts = pd.Timestamp(cfg.now)
        except ValueError:
            raise ConfigError(f"features.now: not a timestamp: {cfg.now!r}") from None
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()
    return datetime.now(UTC).replace(tzinfo=None)


def utc_bounds(tz: str, d0: date, d1: date, now: datetime) -> tuple[datetime, datetime]:
    """Naive-UTC [lo, hi) covering local dates d0..d1 in ``tz``, capped just after ``now``."""
    lo = pd.Timestamp(d0).tz_localize(tz).tz_convert("UTC").tz_localize(None).to_pydatetime()
    hi = pd.Timestamp(d1 + timedelta(days=1)).tz_localize(tz).tz_convert("UTC").tz_localize(None).to_pydatetime()
    return lo, min(hi, now + timedelta(microseconds=1))


def month_chunks(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end] cut at month boundaries."""
    out, d = [], start
    while d <= end:
        nxt = (d.replace(day=1) + timedelta(days=32)).replace(day=1)
        out.append((d, min(end, nxt - timedelta(days=1))))
        d = nxt
    return out


def build_chunk(conn: Connection, ctx: Context, d0: date, d1: date, q: Quarantine,
                store_ids: list[int] | None = None) -> dict[str, pd.DataFrame]:
    """All datasets for local dates d0..d1 (optionally a store group); bad lines go to ``q``."""
    src, st = ctx.src, ctx.statuses
    stores = ctx.stores if store_ids is None else ctx.stores[ctx.stores["store_id"].isin(store_ids)]
    aggs: list[pd.DataFrame] = []
    excluded: list[int] = []
    for tz, grp in stores.groupby("timezone", sort=True):
        lo, hi = utc_bounds(str(tz), d0, d1, ctx.now)
        if lo >= hi:
            continue
        ids = grp["store_id"].tolist()
        excl = ctx.dup_orders + ctx.dup_lines
        if excl:
            lines = extract.lines_of_orders(conn, src, st, lo, hi, excl)
            lines = lines[lines["store_id"].isin(ids)]
            reason = lines["order_id"].isin(ctx.dup_orders)
            for name, mask in (("duplicate_order_id", reason), ("duplicate_order_line", ~reason)):
                q.add(name, lines[mask], local_dates(lines.loc[mask, "created_at"], str(tz)))
        agg = extract.hourly_sales(conn, src, st, lo, hi, ids, ctx.product_ids, excl)
        if agg["bad"].any():
            bad = extract.invalid_lines(conn, src, st, lo, hi, ids, ctx.product_ids, excl)
            unknown = ~bad["product_id"].isin(ctx.product_ids)
            q.add("unknown_product", bad[unknown], local_dates(bad.loc[unknown, "created_at"], str(tz)))
            q.add("non_positive_quantity", bad[~unknown], local_dates(bad.loc[~unknown, "created_at"], str(tz)))
        aggs.append(agg[~agg["bad"]].drop(columns="bad"))
        excluded = excl
    if store_ids is None:  # orders of unknown stores belong to no group: checked once per chunk
        tz0 = ctx.cfg.default_timezone
        lo, hi = utc_bounds(tz0, d0, d1, ctx.now)
        if lo < hi:
            orphans = extract.orphan_lines(conn, src, st, lo, hi, ctx.store_ids)
            q.add("unknown_store", orphans, local_dates(orphans["created_at"], tz0))

    agg = pd.concat(aggs, ignore_index=True) if aggs else pd.DataFrame(
        {"store_id": pd.Series(dtype="int32"), "product_id": pd.Series(dtype="int32"),
         "utc_hour": pd.Series(dtype="int64"), "qty": pd.Series(dtype="int64"), "lines": pd.Series(dtype="int64")})
    local = to_local(agg, stores)
    closed = outside_opening(local, stores)
    if closed.any():
        lines = extract.lines_in_hours(conn, src, st, local[closed], ctx.product_ids, excluded)
        tzs = lines["store_id"].map(stores.set_index("store_id")["timezone"])
        for tz in tzs.unique():
            m = tzs == tz
            q.add("outside_opening_hours", lines[m], local_dates(lines.loc[m, "created_at"], str(tz)))
        local = local[~closed]
    q.good_lines += int(local["lines"].sum())

    hourly = hourly_panel(collapse_local(local), stores, ctx.products, d0, d1)
    daily = daily_from_hourly(hourly)
    inv = ctx.inventory(conn, d0, d1)
    if store_ids is not None:
        inv = inv[inv["store_id"].isin(store_ids)]
    daily = inventory.apply_censoring(daily, inventory.censor_flags(inv, ctx.bom))
    hourly = hourly.merge(daily[DAILY_KEYS + ["censored"]], on=DAILY_KEYS, how="left")
    material = material_panel(daily, ctx.bom)
    daily = add_daily_features(daily, stores, ctx.products, ctx.campaigns, ctx.weather, d0, d1,
                               *ctx.holidays)
    return {"hourly": hourly, "daily": daily, "material_daily": material, "inventory_daily": inv}


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _code_version() -> dict[str, str | None]:
    try:
        version = metadata.version("luckin-replenishment")
    except metadata.PackageNotFoundError:
        version = None
    return {"package": version, "git_sha": _git_sha()}


def _censor_stats(daily: pd.DataFrame) -> dict[str, int]:
    cens = daily["censored"].to_numpy()
    qty = daily["qty"].to_numpy("int64")
    return {"rows": int(len(daily)), "censored_rows": int(cens.sum()), "units": int(qty.sum()),
            "censored_units": int(qty[cens].sum())}


def _shares(by_month: dict[str, dict[str, int]]) -> dict[str, float]:
    tot = {k: sum(m[k] for m in by_month.values()) for k in ("rows", "censored_rows", "units", "censored_units")}
    return {"rows": tot["censored_rows"] / tot["rows"] if tot["rows"] else 0.0,
            "units": tot["censored_units"] / tot["units"] if tot["units"] else 0.0}


def local_span(first, last, stores: pd.DataFrame, default_tz: str) -> tuple[date, date]:
    """First and last local dates of the completed orders, in the stores' own time zones.

    Why not one zone: a log from Auckland read in New York time put its last afternoon on the previous date, so the
    last local day was never built. The earliest date over the zones opens the window and the latest closes it
    (a chain across zones gets every store's whole days; a store without a zone uses ``default_tz``).
    """
    zones = sorted(set(stores["timezone"].astype(str))) or [default_tz]  # read_stores fills a missing zone
    firsts = [local_dates(pd.Series([first]), z).iloc[0].date() for z in zones]
    lasts = [local_dates(pd.Series([last]), z).iloc[0].date() for z in zones]
    return min(firsts), max(lasts)


def plan_window(conn, ctx: Context, cfg: FeaturesConfig, fstore: FeatureStore, shash: str, until: date | None,
                full: bool) -> tuple[date, Any, date, dict | None, bool, date]:
    """Which days this run (re)builds: everything, or from the watermark minus ``reread_days`` when the store on disk
    was built from the same schema, first day and statuses. Returns (first_date, last completed order UTC, end,
    previous manifest, incremental, start); DataError when there is nothing to build."""
    first, last = extract.completed_bounds(conn, ctx.src, ctx.statuses, ctx.now)
    if first is None:
        raise DataError(f"no completed orders (status in {ctx.statuses}) in the source up to {ctx.now:%Y-%m-%d}")
    first_date, last_date = local_span(first, last, ctx.stores, cfg.default_timezone)
    end = until or last_date
    if end < first_date:
        raise DataError(f"--until {end} is before the first completed order ({first_date})")
    prev = fstore.manifest() if (fstore.exists() and not full) else None
    incremental = bool(
        prev and prev.get("schema_hash") == shash and prev.get("first_date") == first_date.isoformat()
        and prev.get("watermark") and date.fromisoformat(prev["watermark"]) <= end
        and prev.get("config", {}).get("completed_statuses") == ctx.statuses)
    start = first_date
    if incremental:
        start = max(first_date, date.fromisoformat(prev["watermark"]) - timedelta(days=cfg.reread_days - 1))
    return first_date, last, end, prev, incremental, start


def open_build(conn, src: extract.Source, cfg: FeaturesConfig, fstore: FeatureStore, shash: str,
               until: date | None, full: bool, now: datetime,
               progress: Progress | None) -> tuple[Context, tuple, list[tuple[date, date]]]:
    """Dimensions, the window to (re)build, its month chunks and the ireplenishment history: the start of a build,
    the same for the local and the Dask build. Returns (context, ``plan_window``'s tuple, chunks)."""
    ctx = Context(conn, src, cfg, now)
    window = plan_window(conn, ctx, cfg, fstore, shash, until, full)
    end, start = window[2], window[5]
    chunks = month_chunks(start, end)
    if progress:
        progress("ireplenishment history", 0, len(chunks))
    ctx.load_history(conn, start, end)
    return ctx, window, chunks


def build_manifest(engine: Engine, src: extract.Source, cfg: FeaturesConfig, *, end: date, first_date: date, last,
                   shash: str, horizons: list[int], built: list[str], summary: dict[str, Any],
                   rows_by_month: dict[str, dict[str, int]], censored: dict, q_on_disk: dict[str, int],
                   products: pd.DataFrame | None = None, planned: dict | None = None) -> dict:
    """The manifest training logs with every run (same for the local and the Dask build).

    ``products`` (id, category, launch and retire dates) is the menu as of the build: the batch forecast needs it
    for products that launch after the last day of sales, which have no series yet.
    """
    menu = [] if products is None else [
        {"product_id": int(r.product_id), "category": None if pd.isna(r.category) else str(r.category),
         "launch_date": None if pd.isna(r.launch_date) else pd.Timestamp(r.launch_date).date().isoformat(),
         "retire_date": None if pd.isna(r.retire_date) else pd.Timestamp(r.retire_date).date().isoformat()}
        for r in products.itertuples(index=False)]
    return {
        "format": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "watermark": end.isoformat(),
        "first_date": first_date.isoformat(),
        "source": {"url": safe_url(engine.url), "dialect": src.dialect, "tables": sorted(src.present),
                   "last_completed_order_utc": str(last)},
        "code_version": _code_version(),
        "schema_hash": shash,
        "datasets": {n: {"rows": summary["rows"][n], "partitions": dict(sorted(rows_by_month[n].items())),
                         "columns": {f.name: str(f.type) for f in dataset_schema(n, horizons)}}
                     for n in built},
        "partitioning": "hive month=YYYY-MM (read back as a categorical 'month'); date is datetime64[ns]",
        "feature_registry": feature_registry(horizons),
        "censored": censored,
        "quarantine": {r: n for r, n in q_on_disk.items() if n},
        "config": cfg.model_dump(),
        "last_run": {k: summary[k] for k in ("mode", "window", "seconds", "quarantined", "lines_read")},
        "products": menu,
        "calendar": planned or {},
    }


def finish_build(engine: Engine, src: extract.Source, cfg: FeaturesConfig, ctx: Context, fstore: FeatureStore,
                 staging: Staging, q: Quarantine, future_lines: pd.DataFrame, *, window: tuple, shash: str,
                 horizons: list[int], rows_by_month: dict[str, dict[str, int]],
                 censor_by_month: dict[str, dict[str, int]], t0: float,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """After the partitions are staged: quarantine, the run summary, the manifest and the atomic commit.

    Why one function: the local and the Dask build must write the same summary and manifest (the tests compare the
    stores they leave), so the bookkeeping lives once. ``window`` is what ``plan_window`` returned.
    """
    first_date, last, end, prev, incremental, start = window
    q.add("future_timestamp", future_lines, local_dates(future_lines["created_at"], cfg.default_timezone))
    qdir = fstore.path / "quarantine"
    q_on_disk = write_quarantine(qdir, q.table(), pd.Timestamp(start) if incremental else None)
    q.check(cfg.max_bad_share, str(qdir))
    if incremental:  # months before this run's window keep their earlier figures
        for name in DATASETS:
            old = prev.get("datasets", {}).get(name, {}).get("partitions", {})
            rows_by_month[name] = {**old, **rows_by_month[name]}
        censor_by_month = {**prev.get("censored", {}).get("by_month", {}), **censor_by_month}
    built = [n for n in DATASETS if rows_by_month[n]]
    censored = {**_shares(censor_by_month), "by_month": dict(sorted(censor_by_month.items()))}
    summary = {
        "out_dir": str(fstore.path),
        "mode": "incremental" if incremental else "full",
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "watermark": end.isoformat(),
        "rows": {n: int(sum(rows_by_month[n].values())) for n in built},
        "rows_written": {n: int(sum(rows_by_month[n][m] for m in rows_by_month[n]
                                    if m >= month_key(start))) for n in built},
        "censored_share": {"rows": round(censored["rows"], 6), "units": round(censored["units"], 6)},
        "quarantined": {**{r: n for r, n in q.counts().items() if n}, "total": q.bad_lines},
        "bad_share": round(q.bad_share(), 6),
        "lines_read": q.good_lines + q.bad_lines,
        "materials": "bom" if ctx.bom_real else "product (no BOM in source)",
        "inventory": inventory.has_inventory(src),
        "seconds": round(time.perf_counter() - t0, 3),
        **(extra or {}),
    }
    manifest = build_manifest(engine, src, cfg, end=end, first_date=first_date, last=last, shash=shash,
                              horizons=horizons, built=built, summary=summary,
                              rows_by_month=rows_by_month, censored=censored, q_on_disk=q_on_disk,
                              products=ctx.products,
                              planned=planned_events(ctx.stores, ctx.campaigns, *ctx.holidays,
                                                     temperature=ctx.temperature))  # as the rows
    staging.commit(not incremental, manifest, DATASETS)
    return summary


def build_features(engine: Engine, schema: SourceSchema, out_dir: str, until: date | None = None,
                   full: bool = False, progress: Progress | None = None,
                   config: FeaturesConfig | None = None) -> dict[str, Any]:
    """Build (or extend) the feature store at ``out_dir`` from the source; returns the run summary.

    ``until`` is the last local date included (default: the day of the last completed order). Without ``full``
    an existing store with the same schema hash is extended from its watermark.
    """
    t0 = time.perf_counter()
    cfg = config or load_settings().features
    now = _now(cfg)
    src = extract.Source.open(engine, schema)
    fstore = FeatureStore(out_dir)
    horizons = sorted({int(h) for h in cfg.incumbent_horizons})
    shash = schema_hash(horizons)
    with engine.connect() as conn:
        ctx, window, chunks = open_build(conn, src, cfg, fstore, shash, until, full, now, progress)
        incremental = window[4]
        q = Quarantine()
        staging = Staging(fstore)
        rows_by_month: dict[str, dict[str, int]] = {d: {} for d in DATASETS}
        censor_by_month: dict[str, dict[str, int]] = {}
        try:
            for k, (d0, d1) in enumerate(chunks):
                if progress:
                    progress(f"features {month_key(d0)}", k, len(chunks))
                frames = build_chunk(conn, ctx, d0, d1, q)
                month = month_key(d0)
                for name in DATASETS:
                    if name == "inventory_daily" and not inventory.has_inventory(src):
                        continue
                    df = frames[name]
                    if incremental and d0.day != 1:  # keep the untouched days of a partly rebuilt month
                        old = fstore.read_partition(name, month)
                        keep = None if old is None else old[old["date"] < pd.Timestamp(d0)]
                        if keep is not None and len(keep):
                            with warnings.catch_warnings():  # all-NA columns: dtypes are set by the schema on write
                                warnings.simplefilter("ignore", FutureWarning)
                                df = pd.concat([keep, df], ignore_index=True)
                    df = df.sort_values(SORT_KEYS[name], ignore_index=True)
                    rows_by_month[name][month] = staging.write(name, month, df, dataset_schema(name, horizons))
                    if name == "daily":
                        censor_by_month[month] = _censor_stats(df)
            if progress:
                progress("features", len(chunks), len(chunks))
            fut = extract.future_lines(conn, src, ctx.statuses, now)
            summary = finish_build(engine, src, cfg, ctx, fstore, staging, q, fut, window=window, shash=shash,
                                   horizons=horizons,
                                   rows_by_month=rows_by_month, censor_by_month=censor_by_month, t0=t0)
        except BaseException:
            staging.discard()
            raise
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
