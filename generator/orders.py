"""Turn sold units into app orders: baskets, timestamps (local -> UTC), channels, coupons, users.

Why from sold units: orders must be consistent with the inventory world (censored by stockouts), so the basket
builder only regroups units that were actually sold; cancelled/refunded orders are extra copies that consume
nothing, as in the real app.
"""

from __future__ import annotations

import numpy as np

from generator.world import World

Columns = dict[str, np.ndarray]


def _baskets(rng: np.random.Generator, group: np.ndarray, probs: list[float]) -> np.ndarray:
    """Order index per unit: baskets of 1..len(probs) units, never crossing a (store, day, hour) group."""
    n = len(group)
    sizes = rng.choice(np.arange(1, len(probs) + 1), p=np.array(probs) / sum(probs), size=n)
    starts = np.cumsum(sizes) - sizes
    is_start = np.zeros(n, dtype=bool)
    is_start[starts[starts < n]] = True
    is_start[0] = True
    is_start[1:] |= group[1:] != group[:-1]
    return np.cumsum(is_start) - 1


def build_orders(w: World, sold: np.ndarray) -> dict[str, Columns]:
    """Orders, order items, coupon templates and redemptions, users; columnar numpy arrays per logical table."""
    oc = w.catalog.orders
    rng = np.random.default_rng([w.seed, 5])
    S, P, D, H = sold.shape
    s_i, p_i, d_i, h_i = np.nonzero(sold)
    cnt = sold[s_i, p_i, d_i, h_i]
    rep = np.repeat(np.arange(len(cnt)), cnt)
    us, up, ud, uh = s_i[rep], p_i[rep], d_i[rep], h_i[rep]
    group = (us * D + ud) * H + uh
    perm = np.lexsort((rng.random(len(group)), group))
    us, up, ud, uh, group = us[perm], up[perm], ud[perm], uh[perm], group[perm]
    oidx = _baskets(rng, group, oc.basket_sizes)
    n_orders = int(oidx[-1]) + 1 if len(oidx) else 0

    # lines: merge the same product within a basket
    key = oidx.astype(np.int64) * P + up
    ukey, qty = np.unique(key, return_counts=True)
    l_order = (ukey // P).astype(np.int64)
    l_prod = (ukey % P).astype(np.int64)
    first = np.ones(n_orders, dtype=np.int64)
    o_first_unit = np.searchsorted(oidx, np.arange(n_orders))
    o_s, o_d, o_h = us[o_first_unit], ud[o_first_unit], uh[o_first_unit]
    items = np.bincount(l_order, weights=qty, minlength=n_orders)
    del first

    # cancelled / refunded extras: copies of random baskets in the same hour, consuming nothing
    bad_rate = oc.cancel_rate + oc.refund_rate
    n_bad = int(round(n_orders * bad_rate / max(1e-9, 1 - bad_rate)))
    src = np.sort(rng.choice(n_orders, size=n_bad, replace=False)) if n_bad and n_orders else np.zeros(0, int)
    status_bad = np.where(rng.random(n_bad) < oc.cancel_rate / max(bad_rate, 1e-9), "cancelled", "refunded")
    line_start = np.searchsorted(l_order, np.arange(n_orders))
    line_cnt = np.bincount(l_order, minlength=n_orders)
    copy_lines = np.concatenate([np.arange(line_start[o], line_start[o] + line_cnt[o]) for o in src]) \
        if n_bad else np.zeros(0, int)
    copy_owner = np.repeat(np.arange(n_bad) + n_orders, line_cnt[src]) if n_bad else np.zeros(0, int)
    l_order = np.concatenate([l_order, copy_owner])
    l_prod = np.concatenate([l_prod, l_prod[copy_lines]])
    qty = np.concatenate([qty, qty[copy_lines]])
    o_s, o_d, o_h = (np.concatenate([a, a[src]]) for a in (o_s, o_d, o_h))
    items = np.concatenate([items, items[src]])
    status = np.concatenate([np.full(n_orders, "completed", dtype=object), status_bad.astype(object)])
    n_all = len(o_s)

    # timestamps: local wall time -> naive UTC, DST-correct per (day, hour)
    sec = rng.integers(0, 3600, size=n_all)
    local = w.days[o_d].astype("datetime64[s]") + ((w.hours[o_h] * 3600) + sec).astype("timedelta64[s]")
    created = local + w.utc_offset_s[o_d, o_h].astype("timedelta64[s]")
    order = np.lexsort((np.arange(n_all), created))
    rank = np.empty(n_all, dtype=np.int64)
    rank[order] = np.arange(n_all)
    order_id = 1_000_001 + rank

    ch_names = list(oc.channels)
    ch_p = np.array([oc.channels[c] for c in ch_names])
    channel = np.array(ch_names, dtype=object)[rng.choice(len(ch_names), p=ch_p / ch_p.sum(), size=n_all)]
    mean_s = oc.production_base_s + oc.production_per_item_s * (items - 1)
    prod_s = np.round(rng.gamma(oc.production_shape, mean_s / oc.production_shape)).astype(np.int64)
    prod_s = np.maximum(prod_s, 30)
    done = status != "cancelled"
    completed = np.where(done, created + prod_s.astype("timedelta64[s]"), np.datetime64("NaT"))

    # coupons: generic category templates plus product campaigns (which also lifted demand)
    prices = np.array([p.price for p in w.products])
    cats = sorted({p.category for p in w.products})
    cat_of = np.array([cats.index(p.category) for p in w.products])
    cs = oc.coupons
    t_rows: dict[str, list] = {k: [] for k in ("template_id", "name", "product_id", "category", "discount_pct",
                                               "valid_from", "valid_to", "is_campaign")}
    pcts = np.round(np.linspace(cs.discount_pct[0], cs.discount_pct[1], cs.templates_per_category), 2)
    for c in cats:
        for pct in pcts:
            _template(t_rows, f"{c} {int(round(pct * 100))}% off", None, c, float(pct), w.start, w.end, False)
    n_generic = len(t_rows["template_id"])
    camp_tid = np.zeros((P, D), dtype=np.int64)
    camp_pct = np.zeros((P, D))
    for c in w.campaigns:
        name = f"{w.products[c['product_id'] - 1].name} {int(round(c['discount_pct'] * 100))}% off"
        tid = _template(t_rows, name, c["product_id"], None, c["discount_pct"], c["start"], c["end"], True)
        i0, i1 = max(0, w.day_index(c["start"])), min(D, w.day_index(c["end"]) + 1)
        camp_tid[c["product_id"] - 1, i0:i1] = tid
        camp_pct[c["product_id"] - 1, i0:i1] = c["discount_pct"]

    l_day = o_d[l_order]
    gross = qty * prices[l_prod]
    u = rng.random(len(l_prod))
    ctid = camp_tid[l_prod, l_day]
    camp_hit = (ctid > 0) & (u < w.catalog.demand.campaigns.redeem_rate)
    if w.rz is None:
        rate = cs.redeem_rate
    else:  # everyday coupon push days: more lines carry a coupon; other days a few less, so the mean (and the
        # report's AOV) holds: q = the pushed share of lines (push days also sell more)
        cp = w.rz.spec.coupons
        pushed = w.rz.push[l_prod, l_day]
        q = cp.rate * cp.lift / (1 + cp.rate * (cp.lift - 1))
        off = max(0.0, (cs.redeem_rate - q * cp.redeem_rate) / (1 - q))
        rate = np.where(pushed, cp.redeem_rate, off)
    gen_hit = ~camp_hit & (rng.random(len(l_prod)) < rate)
    gen_tid = 1 + cat_of[l_prod] * len(pcts) + rng.integers(0, len(pcts), size=len(l_prod))
    gen_tid = np.minimum(gen_tid, n_generic)
    tid = np.where(camp_hit, ctid, np.where(gen_hit, gen_tid, 0))
    pct_by_tid = np.concatenate([[0.0], np.array(t_rows["discount_pct"])])
    discount = np.round(gross * pct_by_tid[tid], 2)
    pay = np.round(np.bincount(l_order, weights=gross - discount, minlength=n_all), 2)

    # line numbers within each order, rows sorted by (order_id, product)
    lo = np.lexsort((l_prod, order_id[l_order]))
    l_order, l_prod, qty, discount, tid = l_order[lo], l_prod[lo], qty[lo], discount[lo], tid[lo]
    oid_l = order_id[l_order]
    first_of = np.searchsorted(oid_l, oid_l)
    line_no = np.arange(len(oid_l)) - first_of + 1

    red = (tid > 0) & (status[l_order] == "completed")
    users, user_of_order = _users(w, rng, created, order)

    o_sort = order  # orders written in id order
    tables: dict[str, Columns] = {
        "orders": {
            "order_id": order_id[o_sort],
            "store_id": np.array([s.id for s in w.stores])[o_s[o_sort]],
            "user_id": user_of_order[o_sort],
            "channel": channel[o_sort],
            "status": status[o_sort],
            "currency": np.full(n_all, "USD", dtype=object),
            "created_at": created[o_sort],
            "completed_at": completed[o_sort],
            "pay_amount": pay[o_sort],
            "production_seconds": np.where(done, prod_s, -1)[o_sort],
        },
        "order_items": {
            "order_id": oid_l,
            "line_no": line_no,
            "product_id": l_prod + 1,
            "quantity": qty,
            "unit_price": prices[l_prod],
            "discount": discount,
        },
        "coupon_templates": {k: np.array(v, dtype=object) for k, v in t_rows.items()},
        "coupon_redemptions": {
            "redemption_id": np.arange(1, int(red.sum()) + 1),
            "template_id": tid[red],
            "order_id": oid_l[red],
            "product_id": l_prod[red] + 1,
            "discount": discount[red],
        },
        "users": users,
    }
    return tables


def _template(rows: dict[str, list], name, product_id, category, pct, start, end, campaign) -> int:
    tid = len(rows["template_id"]) + 1
    for k, v in (("template_id", tid), ("name", name), ("product_id", product_id), ("category", category),
                 ("discount_pct", pct), ("valid_from", start), ("valid_to", end), ("is_campaign", campaign)):
        rows[k].append(v)
    return tid


def _users(w: World, rng: np.random.Generator, created: np.ndarray, order: np.ndarray) -> tuple[Columns, np.ndarray]:
    """Registered users: some orders are a user's first (registered shortly before), the rest repeat customers.

    Repeat orders pick among users whose first order came earlier, with heavy-tailed (Pareto) frequencies, so
    registered_at always precedes a user's first order.
    """
    uc = w.catalog.users
    n_all = len(created)
    n_order_users = min(n_all, int(round(uc.registered * uc.ordering_share)))
    is_first = np.zeros(n_all, dtype=bool)  # in time order
    if n_all:
        is_first[rng.choice(np.arange(1, n_all), size=max(0, n_order_users - 1), replace=False)] = True
        is_first[0] = True
    n_first = int(is_first.sum())
    prior = np.cumsum(is_first) - is_first  # first orders strictly before each order
    weight = rng.pareto(uc.pareto_alpha, size=n_first) + 1.0
    cw = np.cumsum(weight)
    user_t = np.empty(n_all, dtype=np.int64)  # 0-based index into first-order users, time order
    user_t[is_first] = np.arange(n_first)
    rep = ~is_first
    if rep.any():
        target = rng.random(int(rep.sum())) * cw[prior[rep] - 1]
        user_t[rep] = np.minimum(np.searchsorted(cw, target, side="right"), prior[rep] - 1)
    created_t = created[order]
    lag = np.where(rng.random(n_first) < 0.6, rng.uniform(60, 1800, n_first), rng.exponential(7 * 86400, n_first))
    reg_first = created_t[is_first] - lag.astype(np.int64).astype("timedelta64[s]")
    n_idle = max(0, uc.registered - n_first)
    span = max(1, (w.end - w.start).days + 14) * 86400
    reg_idle = (np.datetime64(w.start, "s") - np.timedelta64(14 * 86400, "s")
                + rng.integers(0, span, n_idle).astype("timedelta64[s]"))
    reg = np.concatenate([reg_first, reg_idle])
    ids_order = np.lexsort((np.arange(len(reg)), reg))
    uid = np.empty(len(reg), dtype=np.int64)
    uid[ids_order] = 50_000_001 + np.arange(len(reg))
    user_of_order = np.empty(n_all, dtype=np.int64)
    user_of_order[order] = uid[user_t]
    return {"user_id": uid[ids_order], "registered_at": reg[ids_order]}, user_of_order
