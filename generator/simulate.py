"""Day-by-day inventory simulation over stores x materials, with hours inside the day.

Why simulate instead of sampling sales directly: real sales are censored by stockouts. Stock is depleted by sales
through the recipes (BOM), replenished by the incumbent system's orders (same-weekday rule forecast, order-up-to,
pack rounding; deliveries sometimes late or short), and perishables expire FIFO. When a material runs out, every
product that needs it stops selling until the next delivery, exactly the censoring later models must live with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.world import World, supplier_schedule


@dataclass
class MaterialArrays:
    pack: np.ndarray
    life: np.ndarray  # days; 0 = not perishable
    perishable: np.ndarray
    supplier_idx: np.ndarray
    supplier_id: np.ndarray
    unit: list[str]
    name: list[str]
    storage: list[str]
    cost: np.ndarray


def material_arrays(w: World) -> MaterialArrays:
    cat = w.catalog
    sup_idx = {s.id: j for j, s in enumerate(cat.suppliers)}
    rows = []
    for key in w.material_keys:
        if key.startswith("food:"):
            f = next(x for x in cat.food if x.name == key[5:])
            rows.append((f.name, "pc", f.pack, f.life, f.storage, f.supplier, f.cost))
        else:
            m = cat.materials[key]
            rows.append((m.name, m.unit, m.pack, m.life or 0, m.storage, m.supplier, m.cost))
    life = np.array([r[3] for r in rows])
    return MaterialArrays(
        pack=np.array([r[2] for r in rows], dtype=float), life=life, perishable=life > 0,
        supplier_idx=np.array([sup_idx[r[5]] for r in rows]), supplier_id=np.array([r[5] for r in rows]),
        unit=[r[1] for r in rows], name=[r[0] for r in rows], storage=[r[4] for r in rows],
        cost=np.array([r[6] for r in rows], dtype=float),
    )


def _substitute(units: np.ndarray, s_units: np.ndarray, total: np.ndarray, bom: np.ndarray, uses: np.ndarray,
                onehot: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Sold units (S, P) after a share of the units lost to a stockout switched to the like item, as far as its own
    materials (after this hour's first sales) allow. Why: a customer whose latte is out often takes the oat latte,
    so a stockout moves sales rather than only losing them (realised demand, the truth, stays the first choice)."""
    lost = units - s_units
    if not lost.any():
        return s_units
    moved = rng.binomial(lost, share)
    extra = np.rint(moved @ onehot).astype(np.int32)  # (S, P) extra demand on the substitutes
    if not extra.any():
        return s_units
    left = np.maximum(total - s_units @ bom, 0.0)
    need = extra @ bom
    frac = np.ones_like(need)
    np.divide(left, need, out=frac, where=need > 1e-12)
    g = np.where(uses[None, :, :], np.clip(frac, 0.0, 1.0)[:, None, :], 1.0).min(axis=2)
    return s_units + np.floor(extra * g + 1e-9).astype(np.int32)


@dataclass
class SimResult:
    sold: np.ndarray  # (S, P, D_hist, H) units sold (censored)
    on_hand: np.ndarray  # (S, M, D_hist) true on-hand at close
    waste: np.ndarray  # (S, M, D_hist)
    stockout_hours: np.ndarray  # (S, M, D_hist)
    usage: np.ndarray  # (S, M, D_hist)
    forecast_issue: list[tuple[int, np.ndarray, np.ndarray]]  # (day, store indices, (s, M, horizon) qty)
    repl: dict[str, np.ndarray]  # replenishment orders, columnar


def simulate(w: World, mu: np.ndarray, latent: np.ndarray, progress=None) -> SimResult:
    """Run the inventory world; ``latent`` are the uncensored hourly counts, ``mu`` the expected units."""
    inv = w.catalog.inventory
    rng = np.random.default_rng([w.seed, 4])
    ma = material_arrays(w)
    sched = supplier_schedule(w)
    S, P, M, H, D = w.S, w.P, w.M, w.H, w.n_hist
    bom = w.bom
    uses = bom > 0  # (P, M)
    A = int(ma.life.max()) + 1  # age buckets: index = days left incl. today; A-1 also holds non-perishables
    buckets = np.zeros((S, M, A))
    arrivals = np.zeros((D + 40, S, M))
    expected_use = np.einsum("spd,pm->smd", mu, bom)  # the plan the ops team would use for new stores/products
    mat_active = np.einsum("pd,pm->md", w.prod_active.astype(float), uses.astype(float)) > 0  # (M, D_ext)
    valid = w.store_open[:, None, :] & mat_active[None, :, :]  # (S, M, D_ext)

    hz = inv.horizon_days
    weeks = inv.incumbent_weeks
    buf = np.zeros((7, weeks, S, M))
    cnt = np.zeros((7, S, M), dtype=int)

    sold = np.zeros((S, P, D, H), dtype=np.int32)
    on_hand = np.zeros((S, M, D))
    waste = np.zeros((S, M, D))
    so_hours = np.zeros((S, M, D))
    usage = np.zeros((S, M, D))
    forecasts: list[tuple[int, np.ndarray, np.ndarray]] = []
    repl: dict[str, list] = {k: [] for k in ("store", "mat", "ordered", "qty", "expected", "received", "rqty")}
    open_day = np.array([(s.open_date - w.start).days for s in w.stores])
    perish = ma.perishable
    life_idx = np.where(perish, ma.life - 1, A - 1)
    m_idx = np.arange(M)
    safety = np.where(ma.perishable, inv.safety_factor, inv.safety_factor_shelf_stable)
    qpu = np.where(uses.any(0), bom.sum(0) / np.maximum(uses.sum(0), 1), 1.0)  # typical qty per product unit
    sub_onehot = sub_rng = None
    sub_share = 0.0
    if w.rz is not None and w.rz.spec.substitution_share > 0:  # realistic scenario: part of lost demand switches
        from generator.realism import substitution_rng

        sub_share = w.rz.spec.substitution_share
        sub_rng = substitution_rng(w)
        has = w.rz.substitute >= 0
        sub_onehot = np.zeros((P, P))  # row: first choice, column: its like item
        sub_onehot[np.nonzero(has)[0], w.rz.substitute[has]] = 1.0

    def place(d_order: int, s_idx: np.ndarray, m_sel: np.ndarray, qty: np.ndarray, lead: np.ndarray,
              reliable: bool = False) -> None:
        n = len(qty)
        if n == 0:
            return
        late = (rng.random(n) < inv.late_rate) & (not reliable)
        short = (rng.random(n) < inv.short_rate) & (not reliable)
        rq = np.where(short, np.round(qty * rng.uniform(*inv.short_range, size=n), 3), qty)
        exp_day = d_order + lead
        rec_day = exp_day + late.astype(int)
        arrivals_idx = np.clip(rec_day, 0, arrivals.shape[0] - 1)
        np.add.at(arrivals, (arrivals_idx, s_idx, m_sel), rq)
        for k, v in (("store", s_idx), ("mat", m_sel), ("ordered", np.full(n, d_order)), ("qty", qty),
                     ("expected", exp_day), ("received", rec_day), ("rqty", rq)):
            repl[k].append(np.asarray(v))

    for d in range(D):
        # opening stock for stores opening today: a few days of the plan, ordered three days before
        for s_i in np.nonzero(np.maximum(open_day, 0) == d)[0]:
            horizon = np.minimum(inv.opening_stock_days, np.where(perish, ma.life, inv.opening_stock_days))
            plan = np.array([expected_use[s_i, m, d: d + int(horizon[m])].sum() for m in range(M)])
            packs = np.ceil(plan * (1 + inv.safety_factor) / ma.pack)
            sel = np.nonzero(packs > 0)[0]
            place(d - 3, np.full(len(sel), s_i), sel, packs[sel] * ma.pack[sel], np.full(len(sel), 3), True)
        # morning deliveries
        buckets[:, m_idx, life_idx] += arrivals[d]
        total = buckets.sum(-1)
        start_total = total.copy()
        if w.store_open[:, d].any():
            for h in range(H):
                units = latent[:, :, d, h]
                need = units @ bom  # (S, M)
                frac = np.ones_like(need)
                np.divide(total, need, out=frac, where=need > 1e-12)
                frac = np.clip(frac, 0.0, 1.0)
                act = valid[:, :, d] & w.hour_open[:, h][:, None]
                out = np.where(total <= 1e-9, 1.0, 1.0 - frac)
                so_hours[:, :, d] += np.where(act, out, 0.0)
                if frac.min() < 1.0:
                    g = np.where(uses[None, :, :], frac[:, None, :], 1.0).min(axis=2)
                    s_units = np.floor(units * g + 1e-9).astype(np.int32)
                    if sub_onehot is not None:
                        on_menu = sub_onehot * w.prod_active[:, d][None, :]  # only to a like item on the menu today
                        s_units = _substitute(units, s_units, total, bom, uses, on_menu, sub_share, sub_rng)
                else:
                    s_units = units
                sold[:, :, d, h] = s_units
                cons = s_units @ bom
                total = np.maximum(total - cons, 0.0)
        used = start_total - total
        usage[:, :, d] = used
        # FIFO consumption from the oldest bucket, then expiry
        cum = np.cumsum(buckets, axis=-1)
        take = np.clip(used[..., None] - (cum - buckets), 0.0, buckets)
        buckets -= take
        expired = np.where(perish[None, :], buckets[:, :, 0], 0.0)
        waste[:, :, d] = expired
        shifted = np.concatenate([buckets[:, :, 1:], np.zeros((S, M, 1))], axis=-1)
        buckets = np.where(perish[None, :, None], shifted, buckets)  # non-perishables live in bucket A-1
        on_hand[:, :, d] = buckets.sum(-1)

        # incumbent: same-weekday mean of the last weeks' usage (fewer weeks for young stores), plan otherwise
        wd = w.dow[d]
        ok = valid[:, :, d] & (so_hours[:, :, d] < 0.5)  # the rule skips days the material itself ran out
        newbuf = np.concatenate([used[None], buf[wd][:-1]], axis=0)
        buf[wd] = np.where(ok[None], newbuf, buf[wd])
        cnt[wd] = cnt[wd] + ok
        open_s = np.nonzero(w.store_open[:, d])[0]
        if len(open_s) == 0:
            continue
        tdays = d + 1 + np.arange(hz)
        tdow = w.dow[tdays]
        c = np.minimum(cnt[tdow], weeks)  # (hz, S, M)
        rule = buf[tdow].sum(1) / np.maximum(c, 1)
        plan = np.moveaxis(expected_use[:, :, tdays], -1, 0)
        fc = np.where(c > 0, rule, plan)  # (hz, S, M)
        fc_open = np.moveaxis(fc[:, open_s, :], 0, -1)  # (s_open, M, hz)
        forecasts.append((d, open_s, fc_open))

        # order-up-to on the suppliers' ordering days
        j = ma.supplier_idx
        order_today = sched["order_today"][wd, j]
        lead = sched["lead"][wd, j]
        cover = sched["cover"][wd, j]
        cov_mask = np.arange(hz)[:, None] < cover[None, :]  # (hz, M)
        cover_need = (fc_open * cov_mask.T[None]).sum(-1)  # (s_open, M)
        level = (1 + safety) * cover_need + inv.safety_z * np.sqrt(cover_need * qpu) * (cover_need > 0)
        pending = arrivals[d + 1: d + 12, open_s, :].sum(0)
        ip = buckets[open_s].sum(-1) + pending
        short = level - ip
        # pack rounding: round down a small remainder, but never leave the window's expected need uncovered
        packs = np.ceil(short / ma.pack - inv.round_up_fraction)
        packs = np.where(ip < cover_need, np.maximum(packs, 1), packs)
        packs = np.where((short > 0) & order_today[None, :], np.maximum(packs, 0), 0)
        si, mi = np.nonzero(packs > 0)
        place(d, open_s[si], mi, packs[si, mi] * ma.pack[mi], lead[mi])
        if progress is not None:
            progress(d + 1, D)

    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in repl.items()}
    return SimResult(sold, on_hand, waste, so_hours, usage, forecasts, cat)
