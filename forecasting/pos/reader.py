"""Read a point-of-sale log (CSV, gzip CSV or Parquet) and validate it row by row, vectorised.

Why this shape: a real export is never clean, so each row either parses or gets one reason (missing field, bad
date, non-positive quantity, ...) that is counted and located ("line 7"); a file that is broken as a whole (rows
with the wrong number of fields, a mapped column missing, too many rejects) stops with the first place and reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.errors import DataError
from forecasting.pos.mapping import PosMapping

SEP = "\x1f"  # joins composite keys (store + transaction / store + timestamp); never part of a real value


@dataclass
class RawLog:
    """The file as text columns, plus how to name a row's place in the file for messages."""

    name: str
    frame: pd.DataFrame
    where: Callable[[int], str]
    blank_lines: int = 0
    decoded: bool = False  # text decoded by us (CSV): undecodable bytes show up as U+FFFD


@dataclass
class ValidatedLog:
    """Accepted lines in canonical columns, and what was rejected (count, first place and value per reason)."""

    name: str
    lines: pd.DataFrame
    rows_read: int
    blank_lines: int
    rejected: dict[str, int] = field(default_factory=dict)
    first_rejected: dict[str, str] = field(default_factory=dict)  # reason -> "line 7"
    first_value: dict[str, str | None] = field(default_factory=dict)
    first_pos: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


def detect_format(path: Path, mapping: PosMapping) -> str:
    if mapping.format != "auto":
        return mapping.format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    return "csv"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the extension says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path.name}: not a readable gzip file ({exc})") from None
    return raw


def _read_csv(path: Path, mapping: PosMapping) -> RawLog:
    raw = _read_bytes(path)
    enc = mapping.encoding
    if "a,\n1".encode(enc) != b"a,\n1":
        # Not ASCII-compatible (UTF-16/32): transcode once so byte-level line numbering below stays valid.
        raw, enc = raw.decode(enc, "replace").encode("utf-8"), "utf-8"
    if not raw.strip():
        raise DataError(f"{path.name}: empty file")
    try:
        df = pd.read_csv(
            io.BytesIO(raw), sep=mapping.delimiter, dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=False, encoding=enc, encoding_errors="replace", engine="c",
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{path.name}: line {m[2]}: expected {m[1]} fields, saw {m[3]}") from None
        raise DataError(f"{path.name}: not a readable CSV file: {str(exc).strip().splitlines()[0]}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: empty file") from None
    df.columns = [str(c).lstrip("\ufeff").strip() for c in df.columns]

    # Line numbers are exact when no quoted value spans lines: then data row i sits on physical line i + 2.
    newlines = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
    physical = len(newlines) + (0 if raw.endswith(b"\n") else 1)
    exact = physical == len(df) + 1

    def where(i: int) -> str:
        return f"line {i + 2}" if exact else f"record {i + 1}"

    blank = (df == "").all(axis=1)
    if exact and len(df.columns) > 1:
        # pandas pads short rows with empty values; look at the few rows whose last field is empty to tell them apart.
        starts = np.concatenate(([0], newlines + 1))
        for i in np.flatnonzero((df.iloc[:, -1] == "").to_numpy() & ~blank.to_numpy()):
            end = newlines[i + 1] if i + 1 < len(newlines) else len(raw)
            text = raw[starts[i + 1]:end].decode(enc, "replace").rstrip("\r")
            n_fields = len(next(csv.reader([text], delimiter=mapping.delimiter), []))
            if n_fields < len(df.columns):
                raise DataError(f"{path.name}: {where(i)}: expected {len(df.columns)} fields, saw {n_fields}")
    n_blank = int(blank.sum())
    if n_blank:
        df = df[~blank]
    return RawLog(path.name, df, where, n_blank, decoded=True)


def _read_parquet(path: Path) -> RawLog:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a broken file; all mean the same here
        raise DataError(f"{path.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    return RawLog(path.name, df, lambda i: f"row {i + 1}")


def read_log(path: str | Path, mapping: PosMapping) -> RawLog:
    """Read the whole file into text columns (Parquet keeps its types); structural errors raise DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    log = _read_parquet(p) if detect_format(p, mapping) == "parquet" else _read_csv(p, mapping)
    missing = [(fld, col) for fld, col in mapping.columns.mapped().items() if col not in log.frame.columns]
    if missing:
        fld, col = missing[0]
        have = ", ".join(map(str, log.frame.columns[:15]))
        raise DataError(f"{log.name}: required column {col!r} (columns.{fld}) missing; the file has: {have}")
    return log


# ---------------------------------------------------------------------------------------------------------- parsing


def _text(s: pd.Series) -> pd.Series:
    """Stripped text with "" for missing; integral floats (Parquet ids) lose their ".0"."""
    if pd.api.types.is_float_dtype(s):
        v = s.dropna()
        if len(v) and bool(np.all(np.isfinite(v)) and (v == v.round()).all()):
            s = s.astype("Int64")
    return s.astype("string").fillna("").str.strip()


def _numbers(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        out = s.astype(float)
    else:
        parsed = pd.to_numeric(_text(s), errors="coerce")
        out = pd.Series(parsed.to_numpy(dtype=float, na_value=np.nan), index=s.index)
    return out.where(np.isfinite(out))


def _local_tz_naive(ts: pd.Series, tz: str) -> pd.Series:
    if getattr(ts.dt, "tz", None) is not None:
        return ts.dt.tz_convert(tz).dt.tz_localize(None)
    return ts


def _timestamps(s: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return _local_tz_naive(s, tz).astype("datetime64[ns]")
    try:
        parsed = pd.to_datetime(_text(s), format=fmt or "ISO8601", errors="coerce")
    except (ValueError, TypeError) as exc:  # e.g. mixed UTC offsets
        raise DataError(f"timestamps cannot be parsed together: {str(exc).splitlines()[0]}") from None
    return _local_tz_naive(parsed, tz).astype("datetime64[ns]")


def _dates(s: pd.Series, fmt: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_localize(None).dt.normalize() if s.dt.tz is not None else s.dt.normalize()
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, dt.date):
        return pd.to_datetime(s, errors="coerce")
    return pd.to_datetime(_text(s), format=fmt, errors="coerce")


def _times(s: pd.Series, fmt: str) -> pd.Series:
    """Time of day as a timedelta (NaT where unparseable)."""
    if pd.api.types.is_timedelta64_dtype(s):
        return s
    if pd.api.types.is_datetime64_any_dtype(s):
        return s - s.dt.normalize()
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, dt.time):
        secs = [np.nan if t is None else t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6 for t in s]
        return pd.to_timedelta(pd.Series(secs, index=s.index), unit="s")
    parsed = pd.to_datetime(_text(s), format=fmt, errors="coerce")
    return parsed - parsed.dt.normalize()


class _Rejects:
    """First reason per row wins; keeps the offending value for the message."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series(None, index=index, dtype=object)
        self.value = pd.Series(None, index=index, dtype=object)

    def flag(self, mask: pd.Series, reason: str, value: pd.Series | None = None) -> None:
        m = mask.fillna(False).astype(bool) & self.reason.isna()
        if m.any():
            self.reason[m] = reason
            if value is not None:
                self.value[m] = value[m].astype(str)

    @property
    def ok(self) -> pd.Series:
        return self.reason.isna()


def validate(log: RawLog, mapping: PosMapping, max_reject_share: float | None = None) -> ValidatedLog:
    """Parse every mapped field; reject bad rows with a reason; stop if the rejected share exceeds the limit."""
    df, cols = log.frame, mapping.columns
    rej = _Rejects(df.index)
    text = {fld: _text(df[col]) for fld, col in cols.mapped().items()}

    if log.decoded:
        bad_bytes = pd.Series(False, index=df.index)
        for t in text.values():
            bad_bytes |= t.str.contains("\ufffd", regex=False)
        rej.flag(bad_bytes, f"undecodable text (not {mapping.encoding})")
    for fld, col in cols.required().items():
        rej.flag(text[fld] == "", f"missing {col}")

    if cols.timestamp:
        try:
            local = _timestamps(df[cols.timestamp], mapping.timestamp_format, mapping.timezone)
        except DataError as exc:
            raise DataError(f"{log.name}: {cols.timestamp}: {exc}") from None
        rej.flag(local.isna(), f"unparseable timestamp in {cols.timestamp}", text["timestamp"])
    else:
        day = _dates(df[cols.date], mapping.date_format)
        rej.flag(day.isna(), f"unparseable date in {cols.date}", text["date"])
        tod = _times(df[cols.time], mapping.time_format)
        rej.flag(tod.isna() | (tod < pd.Timedelta(0)) | (tod >= pd.Timedelta(days=1)),
                 f"unparseable time in {cols.time}", text["time"])
        local = (day + tod).astype("datetime64[ns]")
    localized = local.dt.tz_localize(mapping.timezone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="NaT")
    rej.flag(localized.isna() & local.notna(), f"nonexistent local time in {mapping.timezone}", local)
    utc = localized.dt.tz_convert("UTC").dt.tz_localize(None)

    qty = _numbers(df[cols.quantity])
    rej.flag(qty.isna(), f"unparseable quantity in {cols.quantity}", text["quantity"])
    rej.flag(qty != qty.round(), f"non-integer quantity in {cols.quantity}", text["quantity"])
    rej.flag(qty <= 0, f"non-positive quantity in {cols.quantity}", text["quantity"])
    price = _numbers(df[cols.price])
    rej.flag(price.isna(), f"unparseable price in {cols.price}", text["price"])
    rej.flag(price < 0, f"negative price in {cols.price}", text["price"])

    store = text["store_id"]
    if cols.transaction_id:
        txn = text["transaction_id"]
        order_key = txn if mapping.transaction_scope == "global" else store + SEP + txn
    else:  # no transaction id: one order per store and second
        order_key = store + SEP + pd.Series(np.datetime_as_string(local.to_numpy(), unit="s"), index=df.index)
    ok = rej.ok
    first_store = store[ok].groupby(order_key[ok], sort=False).transform("first")
    rej.flag((first_store != store[ok]).reindex(df.index, fill_value=False), "transaction spans several stores",
             text.get("transaction_id", order_key))

    ok = rej.ok
    qty_ok = qty[ok].round().astype("int64")
    if mapping.price_kind == "unit":
        amount = qty_ok * price[ok]
        unit = price[ok]
    else:
        amount = price[ok]
        unit = price[ok] / qty_ok
    lines = pd.DataFrame({
        "pos": df.index[ok.to_numpy()],
        "order_key": order_key[ok],
        "store": store[ok],
        "store_name": text["store_name"][ok] if cols.store_name else "",
        "product": text["product_id"][ok],
        "product_name": text["product_name"][ok] if cols.product_name else "",
        "category": text["category"][ok] if cols.category else "",
        "subcategory": text["subcategory"][ok] if cols.subcategory else "",
        "quantity": qty_ok,
        "unit_price": unit,
        "amount": amount,
        "local_ts": local[ok],
        "utc_ts": utc[ok],
    })
    out = ValidatedLog(log.name, lines.reset_index(drop=True), len(df), log.blank_lines)
    bad = rej.reason.dropna()
    for reason, n in bad.value_counts().items():
        i = int(bad.index[(bad == reason).to_numpy()][0])
        out.rejected[str(reason)] = int(n)
        out.first_rejected[str(reason)] = log.where(i)
        out.first_value[str(reason)] = rej.value.get(i)
        out.first_pos[str(reason)] = i
    _check_share(out, mapping.max_reject_share if max_reject_share is None else max_reject_share)
    return out


def _check_share(log: ValidatedLog, limit: float) -> None:
    if log.rows_read == 0:
        raise DataError(f"{log.name}: no data rows")
    share = log.rows_rejected / log.rows_read
    if share > limit or log.lines.empty:
        reason = min(log.first_pos, key=log.first_pos.__getitem__)
        value = log.first_value.get(reason)
        shown = f" {value[:40]!r}" if value is not None else ""
        by = ", ".join(f"{r}: {n}" for r, n in sorted(log.rejected.items(), key=lambda kv: -kv[1]))
        raise DataError(
            f"{log.name}: {log.first_rejected[reason]}: {reason}{shown}; {log.rows_rejected} of {log.rows_read} rows "
            f"rejected ({share:.2%} > max_reject_share {limit:.2%}) [{by}]; nothing loaded"
        )
