"""The planner's HTML report: exceptions first, then one number per line (packs to order) with its reasons, then
plots of recent actuals and the forecast with intervals for the store's main materials.

Why static, self-contained HTML (inline CSS, base64 PNG): it opens from a shared folder or an e-mail attachment with
no server, and it is what the planner sees at 7 am; every number on it is also in the CSV and the proposal table.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting.config import Settings, resolve_path
from forecasting.inventory.material_demand import daily_material_summary, draw_product_samples, material_samples
from forecasting.source.forecast_cache import CachedForecast
from planning.exceptions import SEVERITY, TITLES, PlanException
from planning.inputs import PlanInputs
from planning.lifecycle import final_packs
from planning.words import amount, details, plain_reason

if TYPE_CHECKING:
    from planning.plan import StorePlan

COLORS = {"stockout": "#c62828", "replan": "#6a1b9a", "implausible_count": "#ef6c00", "high_order": "#b8860b",
          "review": "#1565c0", "new_item": "#607d8b"}
REASON_LABELS = {
    "covered": "stock covers it", "rounded_up": "rounded up", "rounded_down": "rounded down",
    "shelf_life_cap": "shelf-life cap", "case_cover": "pack > shelf life", "moq": "MOQ", "moq_blocked": "MOQ blocked",
    "capacity_cap": "storage cap", "not_order_day": "not an order day", "on_order": "on order",
    "forecast_short": "short forecast", "unknown_class": "unknown class", "no_shelf_life": "no shelf life",
    "cutoff_passed": "after cutoff", "shelf_forecast_short": "shelf-life extrapolated",
    "rounded_up_guard": "rounded up: guard", "first_pack": "first pack: margin > 0",
}

CSS = """
:root{--ink:#1f2933;--mute:#616e7c;--line:#e4e7eb;--bg:#f5f7fa;--accent:#0b5cab}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,
Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#102a43;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px;font-weight:600}
header .sub{color:#bcccdc;margin-top:4px}main{max-width:1180px;margin:0 auto;padding:20px 28px 40px}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 22px}.kpi{background:#fff;border:1px solid var(--line);
border-radius:8px;padding:10px 16px;min-width:140px}.kpi b{display:block;font-size:22px}.kpi span{color:var(--mute);
font-size:12px;text-transform:uppercase;letter-spacing:.04em}
h2{font-size:16px;margin:26px 0 10px;text-transform:uppercase;letter-spacing:.05em;color:var(--mute)}
.exc{background:#fff;border:1px solid var(--line);border-left:5px solid;border-radius:6px;padding:9px 14px;
margin:0 0 8px}.exc .t{font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.exc .m{margin-top:2px}.ok{background:#e8f5e9;border:1px solid #c8e6c9;border-radius:6px;padding:10px 14px}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--line);border-radius:8px;
overflow:hidden}th{background:#f0f4f8;text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;
color:var(--mute);padding:8px 10px;position:sticky;top:0}td{padding:8px 10px;border-top:1px solid var(--line);
vertical-align:top}tr.flag td:first-child{box-shadow:inset 4px 0 0 #ef6c00}td.num{text-align:right;
white-space:nowrap}td.packs{font-size:20px;font-weight:700;text-align:right;color:var(--accent);width:80px}
td.packs.zero{color:#9aa5b1;font-weight:400}.mat{font-weight:600}.small{color:var(--mute);font-size:12px}
.chip{display:inline-block;background:#eef2f7;border-radius:10px;padding:1px 8px;margin:1px 3px 1px 0;font-size:12px}
.chip.x{background:#fdecea;color:#b71c1c}details summary{cursor:pointer;color:var(--accent);font-size:12px}
details p{margin:6px 0 0;color:var(--mute);font-size:12px;max-width:640px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}.plot{background:#fff;
border:1px solid var(--line);border-radius:8px;padding:8px}.plot img{width:100%}
footer{color:var(--mute);font-size:12px;margin-top:30px}a{color:var(--accent)}
"""


def esc(x: object) -> str:
    return html.escape("" if x is None else str(x))


def load_actuals(features_dir: str | Path | None, order_date: date, days: int) -> pd.DataFrame | None:
    """Recent material usage from the feature store (``material_daily``), or None when there is no store."""
    if features_dir is None:
        return None
    path = resolve_path(features_dir) / "material_daily"
    if not path.exists():
        return None
    lo = pd.Timestamp(order_date - timedelta(days=days))
    try:
        df = pd.read_parquet(path, columns=["store_id", "material_id", "date", "qty"],
                             filters=[("date", ">=", lo), ("date", "<", pd.Timestamp(order_date))])
    except Exception:  # noqa: BLE001 - plots are optional; a missing or foreign store only drops the actuals
        return None
    df["date"] = pd.to_datetime(df["date"])
    return df


def _page(title: str, header: str, sub: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width,initial-scale=1'><title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><header><h1>{header}</h1><div class=sub>{sub}</div></header><main>{body}</main></body></html>")


def _kpis(items: list[tuple[str, str]]) -> str:
    return "<div class=kpis>" + "".join(f"<div class=kpi><b>{v}</b><span>{esc(k)}</span></div>"
                                        for k, v in items) + "</div>"


def _exceptions_html(exceptions: list[PlanException]) -> str:
    if not exceptions:
        return "<div class=ok>No exceptions: every line can be sent as proposed.</div>"
    out = []
    for e in exceptions:
        c = COLORS[e.kind]
        out.append(f"<div class=exc style='border-left-color:{c}'><div class=t style='color:{c}'>{esc(e.title)}"
                   f"</div><div class=m>{esc(e.message)}</div></div>")
    return "".join(out)


def _row(r: pd.Series, kinds: list[str], suppliers: dict[int, str]) -> str:
    final, engine = int(r["final_packs"]), int(r["qty_packs"])
    chips = "".join(f"<span class='chip x'>{esc(TITLES[k].split(',')[0].lower())}</span>" for k in kinds)
    chips += "".join(f"<span class=chip>{esc(REASON_LABELS.get(c, c.replace('_', ' ')))}</span>"
                     for c in r["reason_codes"] if not c.startswith("count_"))
    unit = r["unit"] or "units"
    cost = (r["order_value"] / engine) if engine and pd.notna(r.get("order_value")) else None
    value = f"${final * cost:,.2f}" if cost is not None and final else ""
    units = amount(final * float(r["pack_size"]), unit) if final else ""
    planner = "" if r.get("planner_qty") is None or pd.isna(r.get("planner_qty")) else \
        f"<div class=small>planner's number: {esc(r.get('override_reason'))}</div>"
    return (
        f"<tr class='{'flag' if kinds or r.get('count_flag') == 'stale' else ''}'><td><div class=mat>"
        f"{esc(r['material_name'] or r['material_id'])}</div>"
        f"<div class=small>#{int(r['material_id'])} · {esc(suppliers.get(int(r['supplier_id']), r['supplier_id']))}"
        f"</div></td><td class='packs{' zero' if final == 0 else ''}'>{final}</td><td class=num>{engine}{planner}</td>"
        f"<td class=num>{units}<div class=small>{amount(r['pack_size'], unit)}/pack</div></td>"
        f"<td class=num>{r['delivery_date']:%a %m-%d}</td><td class=num>{value}</td>"
        f"<td>{chips}<div class=small>{esc(plain_reason(r))}</div><details><summary>details</summary>"
        f"<p>{esc(details(r))}</p></details></td></tr>"
    )


def _table(lines: pd.DataFrame, exceptions: list[PlanException], suppliers: dict[int, str]) -> str:
    kinds: dict[tuple[int, int], list[str]] = {}
    for e in exceptions:
        kinds.setdefault((e.store_id, e.material_id), []).append(e.kind)
    df = lines.copy()
    df["_exc"] = [min((SEVERITY[k] for k in kinds.get((int(s), int(m)), [])), default=99)
                  for s, m in zip(df["store_id"], df["material_id"], strict=True)]
    head = ("<tr><th>Material</th><th style='text-align:right'>Final packs</th><th style='text-align:right'>Engine"
            "</th><th style='text-align:right'>Amount</th><th style='text-align:right'>Delivery</th>"
            "<th style='text-align:right'>Value (USD)</th><th>Why</th></tr>")
    order_day = df[df["is_order_day"]]
    shown = order_day[(order_day["final_packs"] > 0) | (order_day["qty_packs"] > 0) | (order_day["_exc"] < 99)]
    shown = shown.sort_values(["_exc", "final_packs", "supplier_id", "material_name"],
                              ascending=[True, False, True, True])
    quiet = order_day.drop(shown.index).sort_values(["supplier_id", "material_name"])
    later = df[~df["is_order_day"]].sort_values(["_exc", "supplier_id", "material_name"])

    def rows(frame: pd.DataFrame) -> str:
        return "".join(_row(r, kinds.get((int(r["store_id"]), int(r["material_id"])), []), suppliers)
                       for _, r in frame.iterrows())

    body = rows(shown) or "<tr><td colspan=7>Nothing to order today.</td></tr>"
    out = f"<table>{head}{body}</table>"
    for frame, what in ((quiet, "can be ordered today but need nothing (stock covers the window)"),
                        (later, "have no order day today (the next one is in the reasons)")):
        if len(frame):
            out += (f"<details style='margin-top:12px'><summary>{len(frame)} more materials {what}</summary>"
                    f"<table>{head}{rows(frame)}</table></details>")
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def material_bands(fc: pd.DataFrame, bom: pd.DataFrame, material_ids: list[int], order_date: date, n: int,
                   seed: int) -> pd.DataFrame:
    """Per material x day: mean, median, 80% and 90% bands of the forecast demand (from joint sample paths)."""
    ids = np.sort(np.asarray(material_ids, dtype=int))
    ps = draw_product_samples(fc, n, seed, start=order_date)
    ms = material_samples(ps, bom[bom["material_id"].isin(ids)], ids)
    out = daily_material_summary(ms, quantiles=(0.05, 0.1, 0.5, 0.9, 0.95))
    out["date"] = pd.to_datetime(out["date"])
    return out


def plots_html(sp: StorePlan, cache: CachedForecast, inputs: PlanInputs, actuals: pd.DataFrame | None,
               settings: Settings) -> str:
    """Small multiples for the store's main materials (by order value, else by expected use value)."""
    k = settings.planning.plot_materials
    if k <= 0:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = sp.lines.copy()
    cost = lines["material_id"].map(inputs.materials.set_index("material_id")["unit_cost"]).fillna(1.0)
    lines["_rank"] = lines["order_value"].fillna(0.0) + 1e-3 * lines["demand_mean"] * cost
    flagged = {e.material_id for e in sp.exceptions if e.material_id}
    lines["_exc"] = lines["material_id"].astype(int).isin(flagged)
    # the exception materials (what the planner checks; at most 2 x plot_materials), then the main ones by value
    top = lines[(lines["demand_mean"] > 0) & (lines["_exc"])].sort_values("_rank", ascending=False).head(2 * k)
    top = pd.concat([top, lines[(lines["demand_mean"] > 0) & ~lines["_exc"]].sort_values(
        "_rank", ascending=False).head(k)])
    if top.empty:
        return ""
    fc = cache.frame[cache.frame["store_id"] == sp.store_id]
    try:
        bands = material_bands(fc, inputs.bom, top["material_id"].astype(int).tolist(), sp.lines["order_date"].iloc[0],
                               400, settings.replenishment.seed)
    except Exception:  # noqa: BLE001 - a plot must never stop a plan
        return ""
    cards = []
    for _, r in top.iterrows():
        mid = int(r["material_id"])
        b = bands[(bands["material_id"] == mid) & (bands["store_id"] == sp.store_id)]
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
        if actuals is not None:
            a = actuals[(actuals["store_id"] == sp.store_id) & (actuals["material_id"] == mid)].sort_values("date")
            ax.plot(a["date"], a["qty"], color="#1f2933", lw=1.4, marker="o", ms=2.5, label="actual use")
        ax.fill_between(b["date"], b["q05"], b["q95"], color="#0b5cab", alpha=0.12, lw=0, label="90% interval")
        ax.fill_between(b["date"], b["q10"], b["q90"], color="#0b5cab", alpha=0.22, lw=0, label="80% interval")
        ax.plot(b["date"], b["mean"], color="#0b5cab", lw=1.8, label="forecast")
        ax.axvline(pd.Timestamp(r["delivery_date"]), color="#c62828", lw=1, ls="--", label="delivery")
        ax.set_title(f"{r['material_name']} ({r['unit'] or 'units'}/day)", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="#e4e7eb", lw=0.6)
        ax.set_ylim(bottom=0)
        fig.autofmt_xdate(rotation=0, ha="center")
        import matplotlib.dates as mdates

        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        fig.tight_layout()
        cards.append(f"<div class=plot><img alt='{esc(r['material_name'])}' src='data:image/png;base64,{_png(fig)}'>"
                     "</div>")
        plt.close(fig)
    legend = ("<p class=small>Black: actual daily use (feature store). Blue line: forecast mean; bands: 80% and 90% "
              "intervals of the day's demand. Red dashed line: this order's delivery.</p>")
    return ("<h2>Exception and main materials: recent use and forecast</h2>" + legend + "<div class=plots>"
            + "".join(cards) + "</div>")


def stale_banner(sp: StorePlan, order_date: date) -> str:
    """One banner for a plan from old counts (instead of one "old count" card per line)."""
    if not sp.stale:
        return ""
    newest = order_date - timedelta(days=1 + int(sp.count_age_days or 0))
    return (f"<div class=exc style='border-left-color:#c62828;background:#fdecea'><div class=t style='color:#c62828'>"
            f"Counts are {sp.count_age_days} days old</div><div class=m>The newest count is from {newest:%a %d %b}; "
            f"this plan expects the evening of {order_date - timedelta(days=1):%a %d %b}. Every line is flagged: "
            "recount the store, or check each line before approving.</div></div>")


def write_store_report(out: Path, sp: StorePlan, cache: CachedForecast, inputs: PlanInputs,
                       actuals: pd.DataFrame | None, settings: Settings) -> Path:
    lines = sp.lines
    order_date = lines["order_date"].iloc[0]
    suppliers = inputs.suppliers.set_index("supplier_id")["supplier_name"].to_dict() \
        if "supplier_name" in inputs.suppliers else {}
    ordering = lines[lines["final_packs"] > 0]
    per_pack = (lines["order_value"] / lines["qty_packs"].where(lines["qty_packs"] > 0)).fillna(0.0)
    value = float((per_pack * lines["final_packs"]).sum())
    kpis = _kpis([
        ("order lines", str(len(ordering))), ("final packs", f"{int(ordering['final_packs'].sum())} packs"),
        ("order value", f"${value:,.2f}"), ("exceptions", str(len(sp.exceptions))),
        ("suppliers ordering today", str(ordering["supplier_id"].nunique())), ("state", sp.status),
    ])
    counts = pd.to_datetime(lines["count_date"], errors="coerce").dropna()
    counted = f"counts of {counts.max():%a %d %b}" if len(counts) else "no inventory counts (on hand taken as 0)"
    banner = stale_banner(sp, order_date)
    body = (banner + kpis + "<h2>Exceptions first</h2>" + _exceptions_html(sp.exceptions)
            + "<h2>Order proposal: packs to order</h2>" + _table(lines, sp.exceptions, suppliers)
            + plots_html(sp, cache, inputs, actuals, settings)
            + f"<footer>Model {esc(cache.model_version)}, data through {cache.data_date}; {counted}; final = the "
              "planner's number where changed, else the engine's; edit planner_qty/override_reason in "
              f"store_{sp.store_id}.csv and run "
              f"<code>replenish override --import</code> to record changes. <a href=index.html>All stores</a></footer>")
    page = _page(f"{sp.store_name} - order {order_date}", esc(sp.store_name),
                 f"Order proposal for {order_date:%A %d %B %Y} · store {sp.store_id} · model {esc(cache.model_version)}"
                 f" · data through {cache.data_date}", body)
    path = out / f"store_{sp.store_id}.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_index(out: Path, plans: list[StorePlan], failures: dict[int, str], cache: CachedForecast,
                order_date: date, others: pd.DataFrame | None = None, names: dict | None = None) -> Path:
    """The day's index: the stores planned now plus the stores of the date already in the proposal table
    (``others``), so a partial re-plan (``--store``) keeps every store on it."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    entries = []
    for sp in plans:
        o = sp.lines[sp.lines["final_packs"] > 0]
        per_pack = (sp.lines["order_value"] / sp.lines["qty_packs"].where(sp.lines["qty_packs"] > 0)).fillna(0.0)
        value = float((per_pack * sp.lines["final_packs"]).sum())
        kinds = pd.Series([e.kind for e in sp.exceptions]).value_counts().to_dict()
        entries.append((sp.store_id, sp.store_name, int(o["final_packs"].sum()), len(o), value, kinds, sp.status,
                        sp.stale))
    if others is not None and len(others):
        import json

        for sid, g in others.groupby("store_id"):
            final = [final_packs(a, b) for a, b in zip(g["packs"], g["planner_qty"], strict=True)]
            value = sum(float(json.loads(e).get("order_value") or 0.0) / p * f if p else 0.0
                        for e, p, f in zip(g["explanation"], g["packs"], final, strict=True))
            kinds = pd.Series([x["kind"] for e in g["explanation"] for x in json.loads(e).get("exceptions", [])]
                              ).value_counts().to_dict()
            entries.append((int(sid), str((names or {}).get(int(sid), f"Store {sid}")), sum(final),
                            sum(f > 0 for f in final), value, kinds, str(g["status"].iloc[0]), False))
    for sid, name, n_packs, n_lines, value, kinds, status, stale in sorted(
            entries, key=lambda x: (-sum(n for k, n in x[5].items() if SEVERITY.get(k) == 0), x[0])):
        chips = "".join(f"<span class='chip x' style='background:{COLORS.get(k, '#607d8b')}22;"
                        f"color:{COLORS.get(k, '#607d8b')}'>{n} {esc(TITLES.get(k, k).lower())}</span>"
                        for k, n in sorted(kinds.items(), key=lambda kv: SEVERITY.get(kv[0], 9)))
        if stale:
            chips = "<span class='chip x'>counts are old</span>" + chips
        rows.append(f"<tr><td><a class=mat href='store_{sid}.html'>{esc(name)}</a>"
                    f"<div class=small>store {sid} · <a href='store_{sid}.csv'>CSV</a> · {esc(status)}</div></td>"
                    f"<td class=packs>{n_packs}</td><td class=num>{n_lines}</td>"
                    f"<td class=num>${value:,.2f}</td><td>{chips or 'none'}</td></tr>")
    for sid, msg in sorted(failures.items()):
        rows.append(f"<tr class=flag><td><div class=mat>Store {sid}</div></td><td colspan=4 style='color:#c62828'>"
                    f"not planned: {esc(msg)}</td></tr>")
    table = ("<table><tr><th>Store</th><th style='text-align:right'>Final packs</th><th style='text-align:right'>"
             "Lines</th><th style='text-align:right'>Value (USD)</th><th>Exceptions</th></tr>" + "".join(rows)
             + "</table>")
    n_exc = sum(sum(e[5].values()) for e in entries)
    total_packs, total_value = sum(e[2] for e in entries), sum(e[4] for e in entries)
    body = _kpis([("stores", str(len(entries))), ("stores failed", str(len(failures))),
                  ("chain packs", f"{total_packs:,} packs"), ("chain order value", f"${total_value:,.2f}"),
                  ("exceptions", str(n_exc))]) + table
    page = _page(f"Order proposals {order_date}", f"Order proposals · {order_date:%A %d %B %Y}",
                 f"model {esc(cache.model_version)} · data through {cache.data_date}", body)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
