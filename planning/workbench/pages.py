"""The workbench's server-rendered HTML: chain overview and store page (plain HTML forms, no build step).

Why plain forms: a planner's actions (change a number with a reason, approve, release) are each one POST that the
server validates and records; the browser's ``required`` attribute and a redirect after the POST are all the
client logic needed, and every page prints (a print stylesheet drops the controls).
"""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import quote

import pandas as pd

from planning.report import CSS, esc
from planning.words import amount, details, packs, plain_reason
from planning.workbench.data import StoreDay

WB_CSS = CSS + """
nav.dates{display:flex;gap:10px;align-items:center;margin:0 0 16px}nav.dates a,button,.btn{background:#fff;
border:1px solid var(--line);border-radius:6px;padding:5px 12px;color:var(--accent);text-decoration:none;font:inherit;
cursor:pointer}button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}
button.danger{color:#b71c1c}.state{display:inline-block;border-radius:10px;padding:2px 10px;font-size:12px;
font-weight:600;text-transform:uppercase;letter-spacing:.04em}.state.draft{background:#fff3cd;color:#8a6d00}
.state.approved{background:#e3f2fd;color:#0d47a1}.state.released{background:#e8f5e9;color:#1b5e20}
.state.cancelled{background:#eceff1;color:#546e7a}.banner{background:#fdecea;border:1px solid #f5c6cb;
color:#7f1d1d;border-radius:6px;padding:10px 14px;margin:0 0 16px;font-weight:600}
.msg{background:#e8f5e9;border:1px solid #c8e6c9;border-radius:6px;padding:8px 14px;margin:0 0 14px}
.err{background:#fdecea;border:1px solid #f5c6cb;border-radius:6px;padding:8px 14px;margin:0 0 14px}
form.inline{display:flex;gap:6px;align-items:center;flex-wrap:wrap}form.inline input[type=number]{width:70px}
form.inline input[type=text]{width:170px}.actions{display:flex;gap:10px;margin:0 0 18px}.act{font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}.chart{background:#fff;
border:1px solid var(--line);border-radius:8px;padding:8px}.chart h3{margin:0 0 4px;font-size:13px}
@media print{nav,form,.actions,button,.noprint{display:none!important}header{background:#fff;color:#000}
header .sub{color:#333}body{background:#fff}main{max-width:none;padding:0}td,th{padding:4px 6px}
.exc,.chart,table{break-inside:avoid}a{color:#000;text-decoration:none}}
"""

STATE_WORDS = {"draft": "draft", "approved": "approved", "released": "released to ordering",
               "cancelled": "cancelled"}
EXC_COLORS = {"stockout": "#c62828", "implausible_count": "#ef6c00", "high_order": "#b8860b", "review": "#1565c0",
              "new_item": "#607d8b", "replan": "#6a1b9a", "locked": "#6a1b9a"}


def page(title: str, header: str, sub: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width,initial-scale=1'><title>{esc(title)}</title><style>{WB_CSS}</style>"
            f"</head><body><header><h1>{header}</h1><div class=sub>{sub}</div></header><main>{body}</main></body>"
            "</html>")


def kpis(items: list[tuple[str, str]]) -> str:
    return "<div class=kpis>" + "".join(f"<div class=kpi><b>{v}</b><span>{esc(k)}</span></div>"
                                        for k, v in items) + "</div>"


def date_nav(base: str, d: date, suffix: str = "") -> str:
    prev, nxt = d - timedelta(days=1), d + timedelta(days=1)
    return (f"<nav class=dates aria-label='dates'><a href='{base}/d/{prev}{suffix}'>&larr; {prev:%a %m-%d}</a>"
            f"<b>{d:%A %d %B %Y}</b><a href='{base}/d/{nxt}{suffix}'>{nxt:%a %m-%d} &rarr;</a>"
            f"<form method=get action='{base}/go' class=inline><input type=date name=date value='{d}'>"
            f"<input type=hidden name=suffix value='{esc(suffix)}'><button>Go</button></form></nav>")


def state_chip(status: str) -> str:
    return f"<span class='state {esc(status)}'>{esc(STATE_WORDS.get(status, status))}</span>"


def flash(msg: str | None, err: str | None) -> str:
    return (f"<div class=msg role=status>{esc(msg)}</div>" if msg else "") + \
        (f"<div class=err role=alert>{esc(err)}</div>" if err else "")


def overview(base: str, d: date, days: list[StoreDay], totals: dict, user: str, msg: str | None = None) -> str:
    ranked = sorted(days, key=lambda sd: (-len(sd.exceptions), sd.store_id))
    rows = []
    for sd in ranked:
        who = sd.state.get("released_by") or sd.state.get("approved_by") or ""
        rows.append(f"<tr data-store='{sd.store_id}'><td><a class=mat href='{base}/d/{d}/store/{sd.store_id}'>"
                    f"{esc(sd.store_name)}</a><div class=small>store {sd.store_id}</div></td>"
                    f"<td class=num>{len(sd.exceptions)}</td><td class=packs>{sd.packs}</td>"
                    f"<td class=num>{len(sd.ordering)}</td><td class=num>${sd.value:,.2f}</td>"
                    f"<td>{state_chip(sd.status)}<div class=small>{esc(who)}</div></td></tr>")
    by = totals["by_status"]
    table = ("<table id=stores><tr><th>Store</th><th style='text-align:right'>Exceptions</th>"
             "<th style='text-align:right'>Packs</th><th style='text-align:right'>Order lines</th>"
             "<th style='text-align:right'>Value (USD)</th><th>State</th></tr>" + "".join(rows) + "</table>") \
        if rows else f"<div class=ok>No proposal for {d}: run <code>replenish plan --date {d}</code>.</div>"
    body = (date_nav(base, d) + flash(msg, None) + kpis([
        ("chain packs", f"{totals['packs']:,} packs"), ("chain order value", f"${totals['value']:,.2f}"),
        ("exceptions", str(totals["exceptions"])), ("stores", str(totals["stores"])),
        ("approved", str(by.get("approved", 0))), ("released", str(by.get("released", 0))),
        ("draft", str(by.get("draft", 0)))]) + "<h2>Stores, most exceptions first</h2>" + table)
    return page(f"Workbench {d}", f"Order proposals · {d:%A %d %B %Y}",
                f"signed in as {esc(user)} (planner) · <a style='color:#bcccdc' href='{base}/logout'>sign out</a>",
                body)


def action_for(e: dict) -> str:
    """What to do about an exception, with a quantity, or why there is none."""
    final, engine = int(e.get("final_packs", 0)), int(e.get("engine_packs", 0))
    kind = e.get("kind")
    if kind == "replan":
        return (f"Keep {packs(final)}, or reopen the store and take {packs(engine)} from the newest plan.")
    if kind in ("stockout", "implausible_count"):  # the message says what to do; here only the planner's change
        return f"Final order {packs(final)} (engine {engine})." if final != engine else ""
    if kind == "high_order":
        return f"Check, then keep {packs(final)} or change it with a reason."
    return f"Order {packs(final)}" if final else "No order needed"


def chart_svg(hist: pd.DataFrame, per_day: float, unit: str | None, w: int = 300, h: int = 90) -> str:
    """Bars of recent daily use and a dashed line at the forecast's daily mean (inline SVG, prints as is)."""
    vals = [float(x) for x in hist.sort_values("date")["qty"]] if len(hist) else []
    top = max(vals + [per_day, 1e-9]) * 1.15
    n = max(len(vals), 1)
    bw = (w - 10) / n
    bars = "".join(f"<rect x='{5 + i * bw:.1f}' y='{h - 14 - (v / top) * (h - 20):.1f}' width='{bw * 0.8:.1f}' "
                   f"height='{(v / top) * (h - 20):.1f}' fill='#9fb3c8'><title>{amount(v, unit)}</title></rect>"
                   for i, v in enumerate(vals))
    y = h - 14 - (per_day / top) * (h - 20)
    return (f"<svg viewBox='0 0 {w} {h}' width='100%' role=img aria-label='daily use and forecast'>{bars}"
            f"<line x1=0 x2={w} y1={y:.1f} y2={y:.1f} stroke='#0b5cab' stroke-dasharray='4 3' stroke-width=2/>"
            f"<text x=4 y={h - 2} font-size=10 fill='#616e7c'>last {len(vals)} days · dashed: forecast "
            f"{amount(per_day, unit)}/day</text></svg>")


def _line_row(base: str, d: date, sd: StoreDay, r: pd.Series, editable: bool, kinds: list[str]) -> str:
    unit = r.get("unit") or "units"
    mid = int(r["material_id"])
    final, engine = int(r["final_packs"]), int(r["engine_packs"])
    over = "" if r.get("planner_packs") is None or pd.isna(r.get("planner_packs")) else \
        (f"<div class=small>planner: {esc(r.get('override_reason'))} ({esc(r.get('overridden_by'))})</div>")
    prev = "–" if r.get("prev_packs") is None or pd.isna(r.get("prev_packs")) else str(int(r["prev_packs"]))
    week = "–" if r.get("week_packs") is None or pd.isna(r.get("week_packs")) else str(int(r["week_packs"]))
    chips = "".join(f"<span class='chip x'>{esc(k.replace('_', ' '))}</span>" for k in kinds)
    stats = details(r)
    edit = ""
    if editable and r.get("is_order_day", True):
        edit = (f"<form class=inline method=post action='{base}/d/{d}/store/{sd.store_id}/override'>"
                f"<input type=hidden name=material_id value={mid}><input type=number name=packs min=0 step=1 "
                f"value={final} aria-label='packs for {esc(r.get('material_name'))}' required>"
                f"<input type=text name=reason placeholder='reason (required)' required maxlength=500 "
                f"aria-label='reason for {esc(r.get('material_name'))}'><button>Change</button></form>")
        if over:
            edit += (f"<form class=inline method=post action='{base}/d/{d}/store/{sd.store_id}/withdraw'>"
                     f"<input type=hidden name=material_id value={mid}><button class=danger>Withdraw change"
                     "</button></form>")
    return (f"<tr id='m{mid}' class='{'flag' if kinds else ''}'><td><div class=mat>{esc(r.get('material_name'))}"
            f"</div><div class=small>#{mid} · {amount(r['pack_size'], unit)}/pack</div>{chips}</td>"
            f"<td class='packs final{' zero' if final == 0 else ''}'>{final}</td><td class=num>{engine}{over}</td>"
            f"<td class=num>{prev}</td><td class=num>{week}</td>"
            f"<td class=num>{amount(final * float(r['pack_size']), unit)}<div class=small>${r['final_value']:,.2f}"
            f"</div></td><td>{esc(plain_reason(r))}<details><summary>details</summary><p>{esc(stats)}</p></details>"
            f"{edit}</td></tr>")


def bake_section(plan, why: str | None) -> str:
    """The thaw and bake plan as a table: item, release time, pieces, expected waste and lost sales, and the
    end-of-day coupon beside (``plan``: the ``POST /bake-plan`` answer; ``why``: why there is none)."""
    head = "<h2 id=bake>Thaw and bake plan (ready food)</h2>"
    if plan is None:
        return head + f"<div class=ok>No bake plan: {esc(why)}</div>"
    warn = "".join(f"<div class=banner role=alert>{esc(w)}</div>" for w in plan.warnings)
    if not plan.items:
        return head + warn + "<div class=ok>Nothing to thaw or bake for this day.</div>"
    sub = (f"<p class=small>{plan.date:%A %d %B %Y}, open {plan.opening}-{plan.closing}; releases "
           f"{', '.join(plan.release_times)}. At each time fill the shelf up to the <b>shelf to</b> number, "
           "counting the fresh pieces still there (the pieces shown are the usual number that takes); start thawing "
           f"or baking by the time shown. Expected waste {plan.expected_waste_pcs:.0f} pc (${plan.waste_usd:,.2f} at "
           "cost) and lost "
           f"sales {plan.expected_lost_pcs:.0f} pc (${plan.lost_margin_usd:,.2f} margin) over {plan.pieces:,} "
           "pc.</p>")
    th = ("<tr><th>Item</th><th>Release</th><th style='text-align:right'>Pieces</th><th style='text-align:right'>"
          "Expected waste</th><th style='text-align:right'>Expected lost sales</th><th>Why</th>"
          "<th>End of day</th></tr>")
    rows = []
    for it in plan.items:
        sd = it.sell_down
        coupon = "" if sd is None else (
            f"<div class='{'act' if sd.offer else 'small'}'>{esc(sd.reason)}</div>")
        for k, r in enumerate(it.releases):
            name = (f"<td rowspan={len(it.releases)}><b>{esc(it.name)}</b><div class=small>usually "
                    f"{it.daily_mean_pcs:.0f} pc/day · sells {it.shelf_hours:g} h after thaw/bake · "
                    f"${it.price_usd:.2f} (cost ${it.unit_cost_usd:.2f})</div></td>") if k == 0 else ""
            end = f"<td rowspan={len(it.releases)}>{coupon}</td>" if k == 0 else ""
            rows.append(f"<tr class=bake-row>{name}<td>{r.time}<div class=small>start by {r.start_by}</div></td>"
                        f"<td class='packs final{' zero' if r.pieces == 0 else ''}'>{r.pieces} pc"
                        f"<div class=small>shelf to {r.shelf_target_pcs} pc</div></td>"
                        f"<td class=num>{r.expected_waste_pcs:.1f} pc<div class=small>${r.waste_usd:.2f}</div></td>"
                        f"<td class=num>{r.expected_lost_pcs:.1f} pc<div class=small>${r.lost_margin_usd:.2f}</div>"
                        f"</td><td>{esc(r.reason)}<details><summary>details</summary><p>{esc(r.detail)}</p></details></td>"
                        f"{end}</tr>")
    notes = "".join(f"<li>{esc(a)}</li>" for a in plan.assumptions)
    return (head + warn + sub + f"<table id=bake-plan>{th}{''.join(rows)}</table>"
            + f"<details><summary>assumptions</summary><ul>{notes}</ul></details>")


def store_page(base: str, sd: StoreDay, user: str, charts: dict[int, str], stale_days: int | None,
               stale_limit: int, msg: str | None = None, err: str | None = None, bake: str = "") -> str:
    d = sd.order_date
    st = sd.state
    editable = sd.status == "draft"
    banner = ""
    if stale_days is not None and stale_days > stale_limit:
        banner = (f"<div class=banner role=alert>Counts are {stale_days} days old (newest count "
                  f"{d - timedelta(days=1 + stale_days)}, expected the evening of {d - timedelta(days=1)}): every line "
                  "is flagged. Recount the store, or check each line before approving.</div>")
    elif stale_days is None:
        banner = "<div class=banner role=alert>No inventory counts for this store: on hand is taken as 0.</div>"
    acts = []
    if sd.status == "draft":
        acts.append(f"<form method=post action='{base}/d/{d}/store/{sd.store_id}/approve'><button class=primary "
                    "id=approve>Approve</button></form>")
    if sd.status == "approved":
        acts.append(f"<form method=post action='{base}/d/{d}/store/{sd.store_id}/release'><button class=primary "
                    "id=release>Release to ordering</button></form>")
        acts.append(f"<form method=post action='{base}/d/{d}/store/{sd.store_id}/reopen'><button id=reopen>"
                    "Reopen</button></form>")
    if sd.status in ("draft", "approved"):
        acts.append(f"<form method=post action='{base}/d/{d}/store/{sd.store_id}/cancel'><button class=danger "
                    "id=cancel>Cancel</button></form>")
    who = "".join(f" · {w} by {esc(st.get(w + '_by'))} at {str(st.get(w + '_at'))[:16]} UTC"
                  for w in ("approved", "released", "cancelled") if st.get(w + "_by"))
    kinds: dict[int, list[str]] = {}
    for e in sd.exceptions:
        kinds.setdefault(int(e["material_id"]), []).append(e["kind"])
    exc_html = "".join(
        f"<div class=exc style='border-left-color:{EXC_COLORS.get(e['kind'], '#607d8b')}'><div class=t "
        f"style='color:{EXC_COLORS.get(e['kind'], '#607d8b')}'>{esc(e.get('title'))}</div><div class=m>"
        f"{esc(e.get('message'))}</div>" + (f"<div class='m act'>{esc(a)}</div>" if (a := action_for(e)) else "")
        + "</div>"
        for e in sd.exceptions) or "<div class=ok>No exceptions: every line can be sent as proposed.</div>"
    df = sd.lines.copy()
    df["_exc"] = [0 if int(m) in kinds else 1 for m in df["material_id"]]
    df["_ord"] = df["final_packs"] > 0
    shown = df[(df["_exc"] == 0) | df["_ord"] | (df["engine_packs"] > 0)].sort_values(
        ["_exc", "final_packs"], ascending=[True, False])
    rest = df.drop(shown.index)
    head = ("<tr><th>Material</th><th style='text-align:right'>Final packs</th><th style='text-align:right'>Engine"
            "</th><th style='text-align:right'>Yesterday</th><th style='text-align:right'>Same day last week</th>"
            "<th style='text-align:right'>Amount</th><th>Why</th></tr>")
    rows = "".join(_line_row(base, d, sd, r, editable, kinds.get(int(r["material_id"]), []))
                   for _, r in shown.iterrows())
    table = f"<table id=lines>{head}{rows or '<tr><td colspan=7>Nothing to order today.</td></tr>'}</table>"
    if len(rest):
        table += (f"<details class=noprint style='margin-top:12px'><summary>{len(rest)} more materials need nothing "
                  f"today</summary><table>{head}"
                  + "".join(_line_row(base, d, sd, r, editable, []) for _, r in rest.iterrows()) + "</table></details>")
    chart_html = "".join(f"<div class=chart><h3>{esc(name)}</h3>{svg}</div>" for name, svg in charts.values())
    body = (date_nav(base, d, f"/store/{sd.store_id}") + flash(msg, err) + banner
            + f"<p>{state_chip(sd.status)}<span class=small>{who}</span></p><div class=actions>{''.join(acts)}</div>"
            + kpis([("final packs", f"{sd.packs:,} packs"), ("order value", f"${sd.value:,.2f}"),
                    ("order lines", str(len(sd.ordering))), ("exceptions", str(len(sd.exceptions)))])
            + "<h2>Exceptions first</h2>" + exc_html + "<h2>Order lines</h2>" + table + bake
            + ("<h2>Exception and main materials: recent use and forecast</h2><div class=charts>" + chart_html
               + "</div>" if chart_html else "")
            + f"<footer><a href='{base}/d/{d}'>All stores</a> · final = the planner's number where changed, else "
              "the engine's; amounts in each material's unit, values in USD.</footer>")
    return page(f"{sd.store_name} {d}", esc(sd.store_name), f"Order proposal for {d:%A %d %B %Y} · store "
                f"{sd.store_id} · signed in as {esc(user)}", body)


def login_page(base: str, err: str | None = None, nxt: str = "") -> str:
    body = (flash(None, err) + f"<form method=post action='{base}/login' style='max-width:360px'>"
            "<p><label>Your name<br><input name=user required maxlength=64></label></p>"
            "<p><label>Planner token<br><input name=token type=password required></label></p>"
            f"<input type=hidden name=next value='{esc(quote(nxt, safe='/-'))}'>"
            "<p><button class=primary>Sign in</button></p></form>")
    return page("Sign in", "Planners' workbench", "sign in with the planner token", body)
