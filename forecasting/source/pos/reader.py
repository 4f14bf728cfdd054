"""Read a point-of-sale log (CSV, gzip CSV or Parquet), shape it into lines and validate them, vectorised.

Why this shape: a real export is never clean and rarely one flat table, so the mapping's wide layout is melted,
side tables are joined and row filters applied first; then each line either parses or gets one reason (missing
field, bad date, non-positive quantity, duplicate, implausible value, ...) that is counted and located ("line 7");
a file that is broken as a whole (wrong number of fields, a mapped column missing, a format that parses nothing,
too many rejects) stops with the first place and reason.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.errors import DataError
from forecasting.source.pos.mapping import FileSpec, PosMapping, RowFilter, SideTable, Wide

SEP = "\x1f"  # joins composite keys (store + transaction / store + timestamp); never part of a real value
MB = 1 << 20
CHUNK = 1 << 20
_CURRENCY = re.compile(r"[\s\u00a0\u202f$€£¥₩₹¢]")


@dataclass
class RawLog:
    """The lines as columns (text, or Parquet's types), and how to name a line's place in the file for messages.

    ``pos`` is each line's data row in the main file (a wide row gives several lines); ``dup`` is, per line, the
    earlier data row its row repeats exactly (-1: none); ``unmatched`` holds, per side table, the lines whose key
    found no row.
    """

    name: str
    frame: pd.DataFrame
    where: Callable[[int], str]
    blank_lines: int = 0
    decoded: bool = False  # text decoded by us (CSV): undecodable bytes show up as U+FFFD
    pos: np.ndarray | None = None
    rows_read: int = 0
    dup: np.ndarray | None = None
    unmatched: dict[str, np.ndarray] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pos is None:
            self.pos = np.arange(len(self.frame))
            self.rows_read = len(self.frame)


@dataclass
class ValidatedLog:
    """Accepted lines in canonical columns, and what was rejected (count, first place and value per reason)."""

    name: str
    lines: pd.DataFrame
    rows_read: int
    blank_lines: int
    lines_in: int = 0  # lines after the wide layout and the filters: what the reject share is taken of
    rejected: dict[str, int] = field(default_factory=dict)
    first_rejected: dict[str, str] = field(default_factory=dict)  # reason -> "line 7"
    first_value: dict[str, str | None] = field(default_factory=dict)
    first_pos: dict[str, int] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


def detect_format(path: Path, spec: FileSpec) -> str:
    if spec.format != "auto":
        return spec.format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    return "csv"


def _too_big(name: str, limit: int, what: str) -> DataError:
    return DataError(f"{name}: {what} more than {limit // MB} MB (checks.max_file_mb); raise the limit in the "
                     "mapping if the file is real")


def _read_bytes(path: Path, limit: int) -> bytes | bytearray:
    """The file's bytes, gunzipped in a stream that stops at ``limit`` (a small gzip can unpack to gigabytes);
    the buffer is returned as is (no copy)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
            fh.seek(0)
            if magic != b"\x1f\x8b":
                if path.stat().st_size > limit:
                    raise _too_big(path.name, limit, "holds")
                return fh.read()
            out = bytearray()
            with gzip.GzipFile(fileobj=fh) as gz:
                while chunk := gz.read(CHUNK):
                    out += chunk
                    if len(out) > limit:
                        raise _too_big(path.name, limit, "unpacks to")
            return out
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, gzip.BadGzipFile | EOFError | zlib.error):
            raise DataError(f"{path.name}: not a readable gzip file ({exc})") from None
        raise DataError(f"{path.name}: cannot read: {exc.strerror or exc}") from None


def _read_csv(path: Path, spec: FileSpec, limit: int) -> RawLog:
    raw = _read_bytes(path, limit)
    enc = spec.encoding
    if "a,\n1".encode(enc) != b"a,\n1":
        # Not ASCII-compatible (UTF-16/32): transcode once so byte-level line numbering below stays valid.
        raw, enc = raw.decode(enc, "replace").encode("utf-8"), "utf-8"
    if not raw.strip():
        raise DataError(f"{path.name}: empty file")
    try:
        df = pd.read_csv(
            io.BytesIO(raw), sep=spec.delimiter, dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=False, encoding=enc, encoding_errors="replace", engine="c",
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{path.name}: line {m[2]}: expected {m[1]} fields, saw {m[3]}") from None
        raise DataError(f"{path.name}: not a readable CSV file: {str(exc).strip().splitlines()[0]}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: empty file") from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas made the extra leading fields of row 1 an index
        n = len(df.columns)
        raise DataError(f"{path.name}: line 2: expected {n} fields, saw {n + df.index.nlevels}")
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
            n_fields = len(next(csv.reader([text], delimiter=spec.delimiter), []))
            if n_fields < len(df.columns):
                raise DataError(f"{path.name}: {where(i)}: expected {len(df.columns)} fields, saw {n_fields}")
    n_blank = int(blank.sum())
    if n_blank:
        df = df[~blank]
        kept = df.index.to_numpy()
        df = df.reset_index(drop=True)
        base = where
        where = lambda i: base(int(kept[i]))  # noqa: E731 - line numbers of the file, not of the kept rows
    return RawLog(path.name, df, where, n_blank, decoded=True)


def _read_parquet(path: Path, limit: int) -> RawLog:
    try:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > limit:
            raise _too_big(path.name, limit, "unpacks to")
        df = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a broken file; all mean the same here
        raise DataError(f"{path.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    return RawLog(path.name, df, lambda i: f"row {i + 1}")


def read_file(path: Path, spec: FileSpec, limit: int) -> RawLog:
    """One file as a frame; structural errors raise DataError naming the file and line."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return _read_parquet(path, limit) if detect_format(path, spec) == "parquet" else _read_csv(path, spec, limit)


def _columns_missing(log_name: str, have: pd.Index, wanted: dict[str, str]) -> None:
    missing = [(fld, col) for fld, col in wanted.items() if col not in have]
    if missing:
        fld, col = missing[0]
        listed = ", ".join(map(str, have[:15])) + (", ..." if len(have) > 15 else "")
        raise DataError(f"{log_name}: required column {col!r} ({fld}) missing; the lines have: {listed}")


# ---------------------------------------------------------------------------------------------------------- shaping


def _melt(log: RawLog, wide: Wide, m: PosMapping) -> RawLog:
    """One line per non-empty, non-zero product cell; the other columns repeat. Each keeps its row's ``pos``."""
    df = log.frame
    missing = [c for c in wide.columns if c not in df.columns]
    if missing:
        raise DataError(f"{log.name}: wide.columns: {missing[0]!r} is not a column of the file")
    pat = re.compile(wide.pattern) if wide.pattern else None
    cols = [c for c in df.columns if c in wide.columns or (pat is not None and pat.search(c))]
    if not cols:
        raise DataError(f"{log.name}: wide.pattern {wide.pattern!r} matches no column; the file has: "
                        + ", ".join(map(str, df.columns[:15])))
    ids = [c for c in df.columns if c not in cols]
    for new in (wide.product, wide.quantity):
        if new in ids:
            raise DataError(f"{log.name}: wide: {new!r} is already a column of the file; name the melted one otherwise")
    pieces = []
    for c in cols:
        text = _text(df[c])
        qty = _numbers(df[c], m, text)
        filled = (text != "").to_numpy()
        bad = filled & qty.isna().to_numpy()
        if filled.any() and bad[filled].all():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{log.name}: {log.where(i)}: wide column {c!r} is not numeric ({text.iloc[i][:40]!r})")
        sale = filled & (bad | (qty.fillna(0) != 0).to_numpy())
        hit = pat.search(c) if pat is not None else None
        name = c if hit is None or not hit.re.groups else (
            hit.group("product") if "product" in hit.re.groupindex else hit.group(1))
        piece = df.loc[sale, ids].copy()
        piece[wide.product] = name
        piece[wide.quantity] = text[sale].to_numpy()
        piece["__pos"] = np.flatnonzero(sale)
        pieces.append(piece)
    out = pd.concat(pieces, ignore_index=True).sort_values("__pos", kind="stable").reset_index(drop=True)
    pos = out.pop("__pos").to_numpy()
    return RawLog(log.name, out, log.where, log.blank_lines, log.decoded, pos, log.rows_read)


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    key = _text(df[cols[0]])
    for c in cols[1:]:
        key = key + SEP + _text(df[c])
    return key


def _side_frame(side: SideTable, folder: Path, limit: int) -> RawLog:
    if side.rows is not None:
        frame = pd.DataFrame(side.rows)
        return RawLog(f"tables.{side.name}.rows", frame, lambda i: f"row {i + 1}")
    path = Path(side.file or "")
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise DataError(f"tables.{side.name}.file: {path}: no such file (side-table files are read from the log's "
                        "folder)")
    return read_file(path, side, limit)


def _join(log: RawLog, side: SideTable, folder: Path, limit: int) -> RawLog:
    """Many lines to one side-table row by key; unmatched lines are kept (and later rejected with a reason)."""
    tab = _side_frame(side, folder, limit)
    df = log.frame
    _columns_missing(tab.name, tab.frame.columns, {f"tables.{side.name}.key": k for k in side.keys})
    _columns_missing(log.name, df.columns, {f"tables.{side.name}.lines_key": o for o in side.ons})
    skey = _key(tab.frame, side.keys)
    twice = skey.duplicated()
    if twice.any():
        i = int(np.flatnonzero(twice.to_numpy())[0])
        shown = skey.iloc[i].replace(SEP, " / ")
        raise DataError(f"{tab.name}: {tab.where(i)}: key {shown!r} appears twice; tables.{side.name}.key must "
                        "name a column whose values are unique there")
    lkey = _key(df, side.ons)
    idx = pd.Index(skey).get_indexer(lkey)
    if len(df) and not (idx >= 0).any():
        raise DataError(
            f"{log.name}: tables.{side.name}: no line's {'+'.join(side.ons)} matches a {'+'.join(side.keys)} of "
            f"{tab.name} (lines: {lkey.iloc[0].replace(SEP, ' / ')[:40]!r}, table: "
            f"{skey.iloc[0].replace(SEP, ' / ')[:40]!r} ...); check the key columns and the file")
    add = {}
    for c in tab.frame.columns:
        if c in side.keys:
            continue
        values = tab.frame[c].reindex(idx).to_numpy()
        add[f"{side.name}.{c}"] = values
        if c not in df.columns and c not in add:
            add[c] = values
    out = pd.concat([df, pd.DataFrame(add, index=df.index)], axis=1)
    unmatched = {**log.unmatched, f"no match in tables.{side.name} for {'+'.join(side.ons)}": idx < 0}
    return RawLog(log.name, out, log.where, log.blank_lines, log.decoded or tab.decoded, log.pos, log.rows_read,
                  log.dup, unmatched, log.filtered)


def _filter(log: RawLog, filters: list[RowFilter]) -> RawLog:
    """Drop the lines the mapping's filters exclude, counting them per filter (placeholders are not rejects)."""
    df = log.frame
    _columns_missing(log.name, df.columns, {f"filters.{i}.column": f.column for i, f in enumerate(filters)})
    keep = np.ones(len(df), dtype=bool)
    filtered = dict(log.filtered)
    for f in filters:
        passes = f.passes(_text(df[f.column])).to_numpy()
        filtered[f.label] = filtered.get(f.label, 0) + int((keep & ~passes).sum())
        keep &= passes
    if keep.all():
        return RawLog(log.name, df, log.where, log.blank_lines, log.decoded, log.pos, log.rows_read, log.dup,
                      log.unmatched, filtered)
    assert log.pos is not None
    return RawLog(log.name, df[keep].reset_index(drop=True), log.where, log.blank_lines, log.decoded,
                  log.pos[keep], log.rows_read, None if log.dup is None else log.dup[keep],
                  {r: u[keep] for r, u in log.unmatched.items()}, filtered)


def _duplicates(df: pd.DataFrame) -> np.ndarray:
    """Per row, the first earlier row with exactly the same values (-1 for none): exact duplicate lines."""
    out = np.full(len(df), -1, dtype="int64")
    dup = df.duplicated(keep="first").to_numpy()
    if dup.any():
        h = pd.util.hash_pandas_object(df, index=False).to_numpy()
        first = pd.Series(np.arange(len(df))).groupby(h).transform("min").to_numpy()
        out[dup] = first[dup]
    return out


def read_log(path: str | Path, mapping: PosMapping) -> RawLog:
    """The log as lines: read (size-limited), wide layout melted, side tables joined, filters applied, mapped
    columns checked. Structural errors raise DataError naming the file, the mapping field and the line."""
    p = Path(path)
    limit = mapping.checks.max_file_mb * MB
    log = read_file(p, mapping, limit)
    if mapping.checks.duplicate_lines != "keep":
        log.dup = _duplicates(log.frame)
    if mapping.wide is not None:
        dup_rows = log.dup
        log = _melt(log, mapping.wide, mapping)
        if dup_rows is not None:
            log.dup = dup_rows[log.pos]
    for side in mapping.tables:
        log = _join(log, side, p.parent, limit)
    if mapping.filters:
        log = _filter(log, mapping.filters)
    _columns_missing(log.name, log.frame.columns, {f"columns.{k}": v for k, v in mapping.columns.mapped().items()})
    return log


# ---------------------------------------------------------------------------------------------------------- parsing


def _text(s: pd.Series) -> pd.Series:
    """Stripped text with "" for missing; integral floats (Parquet ids, joined ids) lose their ".0"."""
    if pd.api.types.is_float_dtype(s):
        v = s.dropna()
        if len(v) and bool(np.all(np.isfinite(v)) and (v == v.round()).all()):
            s = s.astype("Int64")
    return s.astype("string").fillna("").str.strip()


def _numbers(s: pd.Series, m: PosMapping | None = None, text: pd.Series | None = None) -> pd.Series:
    """Finite numbers (NaN otherwise); text loses currency signs and spaces and follows the mapping's separators.

    ``text`` is ``_text(s)`` when the caller has it already (it is the slow part)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        out = s.astype(float)
    else:
        t = _text(s) if text is None else text
        plain = m is None or (m.decimal == "." and not m.thousands)
        parsed = pd.to_numeric(t, errors="coerce") if plain else pd.Series(np.nan, index=t.index)
        redo = (parsed.isna() & (t != "")).to_numpy()
        if redo.any():  # only the values that need cleaning: "0,90 €", "1 200", "$3.50"
            c = t[redo].str.replace(_CURRENCY, "", regex=True)
            if m is not None and m.thousands:
                c = c.str.replace(m.thousands, "", regex=False)
            if m is not None and m.decimal != ".":
                c = c.str.replace(m.decimal, ".", regex=False)
            parsed = parsed.astype(float)
            parsed[redo] = pd.to_numeric(c, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out = pd.Series(parsed.to_numpy(dtype=float, na_value=np.nan), index=s.index)
    with np.errstate(invalid="ignore"):
        return out.where(np.isfinite(out))


def _local_tz_naive(ts: pd.Series, tz: str) -> pd.Series:
    if getattr(ts.dt, "tz", None) is not None:
        return ts.dt.tz_convert(tz).dt.tz_localize(None)
    return ts


class _Formats:
    """Parse text with several formats tried in order; a list that parses no value at all stops the import."""

    def __init__(self, log: RawLog, field_name: str, column: str, tz: str | None = None) -> None:
        self.log, self.field, self.column, self.tz = log, field_name, column, tz

    def parse(self, text: pd.Series, fmts: list[str] | None) -> pd.Series:
        todo = (text != "").to_numpy()
        out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        for fmt in fmts or ["ISO8601"]:
            if not todo.any():
                break
            try:
                parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
            except (ValueError, TypeError) as exc:  # e.g. mixed UTC offsets
                raise DataError(f"{self.log.name}: {self.column}: values cannot be parsed together: "
                                f"{str(exc).splitlines()[0]}") from None
            parsed = _local_tz_naive(parsed, self.tz).astype("datetime64[ns]") if self.tz else parsed
            hit = parsed.notna().to_numpy()
            sel = np.flatnonzero(todo)[hit]
            out.iloc[sel] = parsed.to_numpy()[hit]
            todo[sel] = False
        filled = (text != "").to_numpy()
        if filled.any() and out[filled].isna().all():
            assert self.log.pos is not None
            i = int(np.flatnonzero(filled)[0])
            shown = fmts if fmts else "ISO 8601"
            raise DataError(f"{self.log.name}: {self.field} {shown} parses no value of column {self.column!r} "
                            f"({self.log.where(int(self.log.pos[i]))}: {text.iloc[i][:40]!r})")
        return out


def _timestamps(s: pd.Series, fmts: list[str] | None, tz: str, f: _Formats, text: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return _local_tz_naive(s, tz).astype("datetime64[ns]")
    return f.parse(text, fmts)


def _dates(s: pd.Series, fmts: list[str], f: _Formats, text: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_localize(None).dt.normalize() if s.dt.tz is not None else s.dt.normalize()
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, dt.date):
        return pd.to_datetime(s, errors="coerce")
    return f.parse(text, fmts).dt.normalize()


def _times(s: pd.Series, fmts: list[str], f: _Formats, text: pd.Series) -> pd.Series:
    """Time of day as a timedelta (NaT where unparseable)."""
    if pd.api.types.is_timedelta64_dtype(s):
        return s
    if pd.api.types.is_datetime64_any_dtype(s):
        return s - s.dt.normalize()
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, dt.time):
        secs = [np.nan if t is None else t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6 for t in s]
        return pd.to_timedelta(pd.Series(secs, index=s.index), unit="s")
    parsed = f.parse(text, fmts)
    return parsed - parsed.dt.normalize()


class _Rejects:
    """First reason per line wins; keeps the offending value for the message."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series(None, index=index, dtype=object)
        self.value = pd.Series(None, index=index, dtype=object)

    def flag(self, mask: pd.Series | np.ndarray, reason: str, value: pd.Series | None = None) -> None:
        mask = pd.Series(mask, index=self.reason.index) if isinstance(mask, np.ndarray) else mask
        m = mask.fillna(False).astype(bool) & self.reason.isna()
        if m.any():
            self.reason[m] = reason
            if value is not None:
                self.value[m] = value[m].astype(str)

    @property
    def ok(self) -> pd.Series:
        return self.reason.isna()


def validate(log: RawLog, mapping: PosMapping, max_reject_share: float | None = None,
             now: datetime | None = None) -> ValidatedLog:
    """Parse every mapped field; reject bad lines with a reason; stop at a refused check or past the reject limit."""
    df, cols, chk = log.frame, mapping.columns, mapping.checks
    assert log.pos is not None
    rej = _Rejects(df.index)
    text = {fld: _text(df[col]) for fld, col in cols.mapped().items()}
    text |= {fld: pd.Series(v, index=df.index, dtype="string") for fld, v in cols.constants().items()}

    def column(fld: str) -> pd.Series:  # the source column, or the constant as a text column
        col = getattr(cols, fld)
        return df[col] if isinstance(col, str) else text[fld]

    def label(fld: str) -> str:
        col = getattr(cols, fld)
        return col if isinstance(col, str) else f"{fld} (constant)"

    if log.decoded:
        bad_bytes = pd.Series(False, index=df.index)
        for t in text.values():
            bad_bytes |= t.str.contains("\ufffd", regex=False)
        rej.flag(bad_bytes, f"undecodable text (not {mapping.encoding})")
    if log.dup is not None:
        rej.flag(log.dup >= 0, "exact duplicate line", pd.Series(log.dup, index=df.index).astype(str))
    for fld, col in cols.required().items():
        rej.flag(text[fld] == "", f"missing {col}")
    for reason, unmatched in log.unmatched.items():
        ons = reason.rsplit(" for ", 1)[1].split("+")
        rej.flag(unmatched, reason, _key(df, ons).str.replace(SEP, " / ", regex=False))

    if cols.timestamp is not None:
        fmt = _Formats(log, "timestamp_format", label("timestamp"), mapping.timezone)
        local = _timestamps(column("timestamp"), mapping.timestamp_format, mapping.timezone, fmt, text["timestamp"])
        rej.flag(local.isna(), f"unparseable timestamp in {label('timestamp')}", text["timestamp"])
    else:
        fmt = _Formats(log, "date_format", label("date"))
        day = _dates(column("date"), mapping.date_format, fmt, text["date"])
        rej.flag(day.isna(), f"unparseable date in {label('date')}", text["date"])
        tod = _times(column("time"), mapping.time_format, _Formats(log, "time_format", label("time")), text["time"])
        rej.flag(tod.isna() | (tod < pd.Timedelta(0)) | (tod >= pd.Timedelta(days=1)),
                 f"unparseable time in {label('time')}", text["time"])
        local = (day + tod).astype("datetime64[ns]")
    localized = local.dt.tz_localize(mapping.timezone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="NaT")
    rej.flag(localized.isna() & local.notna(), f"nonexistent local time in {mapping.timezone}", local)
    utc = localized.dt.tz_convert("UTC").dt.tz_localize(None)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    latest = chk.latest_date or (now + timedelta(days=1)).date()
    day_of = local.dt.normalize()
    rej.flag((day_of < pd.Timestamp(chk.earliest_date)) | (day_of > pd.Timestamp(latest)),
             f"date outside {chk.earliest_date}..{latest} (checks.earliest_date / latest_date)", local)

    qcol, pcol = label("quantity"), label("price")
    qty = _numbers(column("quantity"), mapping, text["quantity"])
    rej.flag(qty.isna(), f"unparseable quantity in {qcol}", text["quantity"])
    rej.flag(qty != qty.round(), f"non-integer quantity in {qcol}", text["quantity"])
    rej.flag(qty <= 0, f"non-positive quantity in {qcol}", text["quantity"])
    rej.flag(qty > chk.max_quantity, f"quantity above {chk.max_quantity:,} pieces (checks.max_quantity) in {qcol}",
             text["quantity"])
    price = _numbers(column("price"), mapping, text["price"])
    rej.flag(price.isna(), f"unparseable price in {pcol}", text["price"])
    rej.flag(price < 0, f"negative price in {pcol}", text["price"])
    unit_all = price if mapping.price_kind == "unit" else price / qty.where(qty > 0)
    rej.flag(unit_all > chk.max_unit_price, f"unit price above {chk.max_unit_price:,.2f} {mapping.currency} "
             f"(checks.max_unit_price) in {pcol}", text["price"])

    store = text["store_id"]
    if cols.transaction_id is not None:
        txn = text["transaction_id"]
        order_key = txn if mapping.transaction_scope == "global" else store + SEP + txn
    elif mapping.wide is not None:  # a wide log: each source row is one order
        order_key = pd.Series(log.pos, index=df.index).map("#{}".format).astype("string")
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

    def opt(fld: str) -> pd.Series | str:
        return text[fld][ok] if getattr(cols, fld) is not None else ""

    lines = pd.DataFrame({
        "pos": log.pos[ok.to_numpy()],
        "order_key": order_key[ok],
        "store": store[ok],
        "store_name": opt("store_name"),
        "product": text["product_id"][ok],
        "product_name": opt("product_name"),
        "category": opt("category"),
        "subcategory": opt("subcategory"),
        "quantity": qty_ok,
        "unit_price": unit,
        "amount": amount,
        "local_ts": local[ok],
        "utc_ts": utc[ok],
    })
    out = ValidatedLog(log.name, lines.reset_index(drop=True), log.rows_read, log.blank_lines, len(df),
                       filtered=dict(log.filtered))
    bad = rej.reason.dropna()
    for reason, n in bad.value_counts().items():
        i = int(bad.index[(bad == reason).to_numpy()][0])
        out.rejected[str(reason)] = int(n)
        out.first_rejected[str(reason)] = log.where(int(log.pos[i]))
        value = rej.value.get(i)
        if reason == "exact duplicate line" and isinstance(value, str):
            value = f"repeats {log.where(int(value))}"  # the earlier row it copies
        out.first_value[str(reason)] = value if isinstance(value, str) else None
        out.first_pos[str(reason)] = i
    _refuse(out, mapping)
    _check_share(out, mapping.max_reject_share if max_reject_share is None else max_reject_share)
    return out


def _refuse(log: ValidatedLog, m: PosMapping) -> None:
    """Checks the mapping sets to ``refuse`` stop the import at their first line, whatever the reject share."""
    refused = [r for r in log.rejected
               if (r == "exact duplicate line" and m.checks.duplicate_lines == "refuse")
               or (m.checks.implausible == "refuse" and ("checks.max_" in r or r.startswith("date outside")))]
    if refused:
        reason = min(refused, key=log.first_pos.__getitem__)
        value = log.first_value.get(reason)
        key = "duplicate_lines" if reason == "exact duplicate line" else "implausible"
        raise DataError(f"{log.name}: {log.first_rejected[reason]}: {reason}{_shown(value)}; "
                        f"{log.rejected[reason]} such lines (checks.{key}: refuse); nothing loaded")


def _shown(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return f" ({value})" if value.startswith("repeats ") else f" {value[:40]!r}"


def _check_share(log: ValidatedLog, limit: float) -> None:
    if log.rows_read == 0 or log.lines_in == 0:
        n = sum(log.filtered.values())
        filtered = f" ({n} lines removed by filters)" if n else ""
        raise DataError(f"{log.name}: no data rows{filtered}")
    share = log.rows_rejected / log.lines_in
    if share > limit or log.lines.empty:
        reason = min(log.first_pos, key=log.first_pos.__getitem__)
        by = ", ".join(f"{r}: {n}" for r, n in sorted(log.rejected.items(), key=lambda kv: -kv[1]))
        raise DataError(
            f"{log.name}: {log.first_rejected[reason]}: {reason}{_shown(log.first_value.get(reason))}; "
            f"{log.rows_rejected} of {log.lines_in} lines rejected ({share:.2%} > max_reject_share {limit:.2%}) "
            f"(by reason: {by}); nothing loaded"
        )
