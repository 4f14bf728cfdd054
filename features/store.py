"""The Parquet feature store: one folder per dataset, hive-partitioned by month, plus ``manifest.json``.

Layout: ``<root>/<dataset>/month=YYYY-MM/part-0.parquet``. ``pandas.read_parquet(<root>/<dataset>)`` returns the
dataset's columns plus the partition column ``month`` (a pandas Categorical of "YYYY-MM" strings); ``date`` is
``datetime64[ns]`` (local midnight, tz-naive). Monthly partitions keep files few (a full build writes ~40, not
~1000) and an incremental day rewrites one month. ``FeatureStore.read`` drops ``month`` and filters by date.

Why staging: a build writes every partition under ``<root>/.staging-*`` first and only then renames them into
place and replaces the manifest, so a failed or interrupted build never leaves a half-written store (readers
ignore dot-prefixed folders).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from features.registry import SCHEMAS, dataset_schema
from forecasting.errors import DataError

MANIFEST = "manifest.json"
PART = "part-0.parquet"


def month_key(d: date | pd.Timestamp) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing ``dst``: rename the old one aside, rename the new one in, delete old."""
    old = None
    if dst.exists():
        old = dst.parent / f".old-{dst.name}-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _atomic_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class FeatureStore:
    """Read access to a built feature store (and the write primitives the job uses)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def manifest(self) -> dict[str, Any]:
        """The manifest of the last successful build; DataError when there is none."""
        p = self.path / MANIFEST
        if not p.is_file():
            raise DataError(f"no feature store at {self.path}: run `replenish features build`")
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise DataError(f"{p}: not valid JSON; rebuild with `replenish features build --full`") from None

    def datasets(self) -> list[str]:
        return sorted(self.manifest().get("datasets", {}))

    def months(self, name: str) -> list[str]:
        d = self.path / name
        return sorted(p.name.split("=", 1)[1] for p in d.glob("month=*")) if d.is_dir() else []

    def read(self, name: str, start: date | str | None = None, end: date | str | None = None,
             columns: list[str] | None = None) -> pd.DataFrame:
        """Rows of dataset ``name`` with ``start <= date <= end`` (both optional), without the partition column."""
        d = self.path / name
        if not d.is_dir() or not any(d.glob("month=*")):
            if name in SCHEMAS and self.exists():
                horizons = self.manifest().get("config", {}).get("incumbent_horizons", [])
                df = dataset_schema(name, horizons).empty_table().to_pandas()
                return df[columns] if columns else df
            raise DataError(f"feature store {self.path} has no dataset {name!r}")
        dset = pads.dataset(d, format="parquet", partitioning="hive")
        flt = None
        for bound, op in ((start, "ge"), (end, "le")):
            if bound is None:
                continue
            ts = pd.Timestamp(bound)
            expr = getattr(pads.field("date"), f"__{op}__")(pa.scalar(ts, type=pa.timestamp("ns")))
            part = getattr(pads.field("month"), f"__{op}__")(month_key(ts))
            expr = expr & part
            flt = expr if flt is None else flt & expr
        cols = columns or [c for c in dset.schema.names if c != "month"]
        return dset.to_table(columns=cols, filter=flt).to_pandas()

    def read_partition(self, name: str, month: str) -> pd.DataFrame | None:
        p = self.path / name / f"month={month}" / PART
        return pq.read_table(p).to_pandas() if p.is_file() else None


class Staging:
    """Partitions written by one build, moved into the store only on ``commit``."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.root = store.path / f".staging-{uuid.uuid4().hex[:10]}"
        self.written: dict[str, set[str]] = {}

    def write(self, name: str, month: str, df: pd.DataFrame, schema: pa.Schema) -> int:
        """Write one month partition of a dataset (cast to its schema); returns the row count."""
        d = self.root / name / f"month={month}"
        d.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
        pq.write_table(table, d / PART, compression="snappy")
        self.written.setdefault(name, set()).add(month)
        return table.num_rows

    def commit(self, full: bool, manifest: dict[str, Any], all_datasets: list[str]) -> None:
        """Move staged partitions into place (a full build replaces whole datasets), then the manifest."""
        self.store.path.mkdir(parents=True, exist_ok=True)
        if full:
            for name in all_datasets:
                if name in self.written:
                    _replace_dir(self.root / name, self.store.path / name)
                elif (self.store.path / name).exists():
                    _replace_dir_remove(self.store.path / name)
        else:
            for name, months in self.written.items():
                for m in sorted(months):
                    _replace_dir(self.root / name / f"month={m}", self.store.path / name / f"month={m}")
        _atomic_json(self.store.path / MANIFEST, manifest)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _replace_dir_remove(path: Path) -> None:
    old = path.parent / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
    os.replace(path, old)
    shutil.rmtree(old, ignore_errors=True)
