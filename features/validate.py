"""Validation of the order extract: bad lines go to quarantine files, are counted, and can fail the job.

Why quarantine instead of silently dropping: a planner must be able to see which rows were left out and why, and
a source that suddenly sends many bad rows (a broken import, a clock error) must stop the pipeline rather than
train on it. Each bad line gets one reason, the first that applies in ``REASONS`` order. Whole orders are
quarantined for duplicate ids (there is no telling which copy is right).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.extract import LINE_COLUMNS
from forecasting.errors import DataError

REASONS = (
    "future_timestamp",
    "duplicate_order_id",
    "duplicate_order_line",
    "unknown_store",
    "unknown_product",
    "non_positive_quantity",
    "outside_opening_hours",
)
QUARANTINE_COLUMNS = ["reason", "date", *LINE_COLUMNS]


@dataclass
class Quarantine:
    """Bad lines found in one run, by reason, plus the count of good lines (for the bad share)."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    good_lines: int = 0

    def add(self, reason: str, lines: pd.DataFrame, local_date: pd.Series | None = None) -> None:
        if lines.empty:
            return
        f = lines.reindex(columns=LINE_COLUMNS).copy()
        f["created_at"] = pd.to_datetime(f["created_at"])  # raw text on SQLite, datetime on MySQL
        f.insert(0, "date", pd.to_datetime(local_date.to_numpy()) if local_date is not None else pd.NaT)
        f.insert(0, "reason", reason)
        self.frames.append(f)

    def table(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame(columns=QUARANTINE_COLUMNS)
        return pd.concat(self.frames, ignore_index=True)[QUARANTINE_COLUMNS]

    def counts(self) -> dict[str, int]:
        t = self.table()
        return {r: int((t["reason"] == r).sum()) for r in REASONS}

    @property
    def bad_lines(self) -> int:
        return sum(len(f) for f in self.frames)

    def bad_share(self) -> float:
        total = self.good_lines + self.bad_lines
        return self.bad_lines / total if total else 0.0

    def check(self, limit: float, where: str) -> None:
        """Raise DataError (one line) when the bad share passes ``limit``."""
        share = self.bad_share()
        if share > limit:
            top = max(self.counts().items(), key=lambda kv: kv[1])
            raise DataError(
                f"{self.bad_lines} of {self.good_lines + self.bad_lines} order lines ({share:.2%}) failed validation,"
                f" above features.max_bad_share={limit:.2%} (most: {top[1]} {top[0]}); see {where}")


def local_dates(created_at: pd.Series, tz: str) -> pd.Series:
    """Local calendar date of naive-UTC timestamps (for quarantine rows and incremental merges)."""
    ts = pd.to_datetime(created_at).dt.tz_localize("UTC").dt.tz_convert(tz)
    return ts.dt.tz_localize(None).dt.normalize()


def write_quarantine(qdir: Path, found: pd.DataFrame, since: pd.Timestamp | None) -> dict[str, int]:
    """Write ``<qdir>/<reason>.csv``; on incremental runs keep earlier rows dated before ``since``.

    Future-timestamp rows are recomputed over the whole source on every run, so they are always replaced.
    Returns the number of rows per reason now on disk.
    """
    qdir.mkdir(parents=True, exist_ok=True)
    totals: dict[str, int] = {}
    for reason in REASONS:
        path = qdir / f"{reason}.csv"
        new = found[found["reason"] == reason]
        old = pd.DataFrame(columns=QUARANTINE_COLUMNS)
        if since is not None and reason != "future_timestamp" and path.is_file():
            old = pd.read_csv(path, parse_dates=["date"])
            old = old[old["date"] < since]
        rows = pd.concat([x for x in (old, new) if not x.empty], ignore_index=True) if (
            len(old) or len(new)) else pd.DataFrame(columns=QUARANTINE_COLUMNS)
        if rows.empty:
            path.unlink(missing_ok=True)
            totals[reason] = 0
            continue
        rows = rows.sort_values(["date", "order_id", "line_no"], kind="stable")
        rows["date"] = pd.to_datetime(rows["date"]).dt.strftime("%Y-%m-%d")
        tmp = qdir / f".{reason}.{uuid.uuid4().hex}.csv"
        rows.to_csv(tmp, index=False)
        os.replace(tmp, path)
        totals[reason] = len(rows)
    return totals
