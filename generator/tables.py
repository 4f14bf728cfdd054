"""Assemble the world, the simulation and the orders into columnar rows per logical table of the source schema.

Why columnar (numpy arrays per column): the writer converts whole columns at once and sorts big tables by primary
key, which keeps SQLite and InnoDB inserts fast.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from generator.simulate import MaterialArrays, SimResult
from generator.world import World

Columns = dict[str, np.ndarray]
GENERATOR_VERSION = "1.0.0"


def _obj(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def master_tables(w: World, ma: MaterialArrays) -> dict[str, Columns]:
    """Stores, products, suppliers, materials, BOM, weather events: small tables straight from the catalog."""
    st = w.stores
    prod = w.products
    nz_p, nz_m = np.nonzero(w.bom)
    return {
        "stores": {
            "store_id": np.array([s.id for s in st]),
            "store_name": _obj(s.name for s in st),
            "open_date": _obj(s.open_date for s in st),
            "close_date": _obj(s.close_date for s in st),
            "timezone": np.full(len(st), w.catalog.timezone, dtype=object),
            "open_hour": np.array([s.open_hour for s in st]),
            "close_hour": np.array([s.close_hour for s in st]),
            "district": _obj(s.district for s in st),
            "latitude": _obj(s.lat for s in st),
            "longitude": _obj(s.lon for s in st),
        },
        "products": {
            "product_id": np.array([p.product_id for p in prod]),
            "product_name": _obj(p.name for p in prod),
            "category": _obj(p.category for p in prod),
            "is_drink": np.array([p.is_drink for p in prod]),
            "is_iced": _obj(p.is_iced for p in prod),
            "launch_date": _obj(p.launch for p in prod),
            "retire_date": _obj(p.retire for p in prod),
            "list_price": np.array([p.price for p in prod]),
        },
        "suppliers": {
            "supplier_id": np.array([s.id for s in w.catalog.suppliers]),
            "supplier_name": _obj(s.name for s in w.catalog.suppliers),
            "lead_time_days": np.array([s.lead_time_days for s in w.catalog.suppliers]),
            "delivery_weekdays": _obj(s.delivery_weekdays for s in w.catalog.suppliers),
            "order_cutoff": _obj(s.order_cutoff for s in w.catalog.suppliers),
        },
        "materials": {
            "material_id": np.arange(1, w.M + 1),
            "material_name": _obj(ma.name),
            "unit": _obj(ma.unit),
            "pack_size": ma.pack,
            "shelf_life_days": _obj(int(x) if x else None for x in ma.life),
            "is_perishable": ma.perishable,
            "storage_class": _obj(ma.storage),
            "supplier_id": ma.supplier_id,
            "unit_cost": ma.cost,
        },
        "bom": {"product_id": nz_p + 1, "material_id": nz_m + 1, "qty_per_unit": np.round(w.bom[nz_p, nz_m], 4)},
        "weather_events": {
            "event_date": _obj(x[0] for x in w.weather),
            "kind": _obj(x[1] for x in w.weather),
            "demand_factor": np.array([x[2] for x in w.weather], dtype=float),
        },
    }


def inventory_tables(w: World, ma: MaterialArrays, sim: SimResult) -> dict[str, Columns]:
    """Daily counts (noisy, a few implausible), incumbent forecasts and orders."""
    inv = w.catalog.inventory
    rng = np.random.default_rng([w.seed, 6])
    D = w.n_hist
    store_ids = np.array([s.id for s in w.stores])
    s_i, d_i = np.nonzero(w.store_open[:, :D])
    n = len(s_i)
    s_r = np.repeat(s_i, w.M)
    d_r = np.repeat(d_i, w.M)
    m_r = np.tile(np.arange(w.M), n)
    true = sim.on_hand[s_r, m_r, d_r]
    counted = true * (1 + rng.normal(0, inv.count_noise_sd, size=len(true)))
    odd = rng.random(len(true))
    counted = np.where(odd < inv.implausible_rate / 2, true * 10, counted)
    counted = np.where((odd >= inv.implausible_rate / 2) & (odd < inv.implausible_rate), 0.0, counted)
    counted = np.round(np.maximum(counted, 0.0), 2)
    snap_order = np.lexsort((d_r, m_r, s_r))
    snaps = {
        "store_id": store_ids[s_r][snap_order],
        "material_id": (m_r + 1)[snap_order],
        "snapshot_date": w.days[d_r][snap_order],
        "on_hand_qty": counted[snap_order],
        "waste_qty": np.round(sim.waste[s_r, m_r, d_r], 3)[snap_order],
        "stockout_hours": np.round(sim.stockout_hours[s_r, m_r, d_r], 2)[snap_order],
    }

    r = sim.repl
    ro = np.lexsort((r["mat"], r["store"], r["ordered"]))
    r = {k: v[ro] for k, v in r.items()}
    n_r = len(r["qty"])
    arrived = r["received"] <= D - 1
    # short or late deliveries show in received_qty < qty and received_on > expected_delivery; the status stays
    # "received" (closed) so consumers treating unknown statuses as still on order are not misled
    status = np.where(arrived, "received", "open")
    base = np.datetime64(w.start, "D")
    repl = {
        "order_no": np.arange(1, n_r + 1) + 9_000_000,
        "store_id": store_ids[r["store"].astype(int)],
        "material_id": r["mat"].astype(int) + 1,
        "ordered_on": base + r["ordered"].astype(int).astype("timedelta64[D]"),
        "qty": np.round(r["qty"], 3),
        "expected_delivery": base + r["expected"].astype(int).astype("timedelta64[D]"),
        "received_on": np.where(arrived, base + r["received"].astype(int).astype("timedelta64[D]"),
                                np.datetime64("NaT")),
        "received_qty": np.where(arrived, np.round(r["rqty"], 3), np.nan),
        "status": status.astype(object),
    }

    hz = inv.horizon_days
    parts_s, parts_m, parts_i, parts_t, parts_q = [], [], [], [], []
    for d, open_s, fc in sim.forecast_issue:
        if d >= D:
            continue
        k = len(open_s)
        parts_s.append(np.repeat(open_s, w.M * hz))
        parts_m.append(np.tile(np.repeat(np.arange(w.M), hz), k))
        parts_i.append(np.full(k * w.M * hz, d))
        parts_t.append(np.tile(d + 1 + np.arange(hz), k * w.M))
        parts_q.append(fc.reshape(-1))
    fs, fm, fi, ft, fq = (np.concatenate(x) if x else np.zeros(0, int) for x in
                          (parts_s, parts_m, parts_i, parts_t, parts_q))
    fo = np.lexsort((ft, fi, fm, fs))
    fcst = {
        "store_id": store_ids[fs[fo]],
        "material_id": fm[fo] + 1,
        "issued_on": w.days[fi[fo]],
        "target_date": w.days[ft[fo]],
        "predicted_qty": np.round(fq[fo], 3),
        "model_version": np.full(len(fo), inv.model_version, dtype=object),
    }
    return {"inventory_snapshots": snaps, "replenishment_orders": repl, "replenishment_forecasts": fcst}


def truth_tables(w: World, mu: np.ndarray, latent_day: np.ndarray | None = None) -> dict[str, Columns]:
    """Ground truth: expected units per store x product x open day, the realised demand before censoring (what
    would have sold with stock: ``latent_day`` (S, P, D_hist), the sampled counts the inventory world censors), and
    the hourly shares. Scoring against realised demand keeps stockout days in the evaluation."""
    D = w.n_hist
    store_ids = np.array([s.id for s in w.stores])
    s_i, p_i, d_i = np.nonzero(mu[:, :, :D] > 0)
    hs, hd, hh = np.nonzero(w.hour_share[:, :D, :] * w.store_open[:, :D, None] > 0)
    return {
        "demand_truth": {
            "store_id": store_ids[s_i], "product_id": p_i + 1, "date": w.days[d_i],
            "expected_qty": np.round(mu[s_i, p_i, d_i], 4),
            **({"realised_qty": latent_day[s_i, p_i, d_i].astype(float)} if latent_day is not None else {}),
        },
        "demand_truth_hourly": {
            "store_id": store_ids[hs], "date": w.days[hd], "local_hour": w.hours[hh],
            "share": np.round(w.hour_share[hs, hd, hh], 6),
        },
    }


def catalog_digest(w: World) -> str:
    return hashlib.sha256(json.dumps(w.catalog.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _realism_meta(w: World) -> dict[str, str]:
    """The realistic scenario's noise is not negative binomial: the alpha of an NB with the same variance (store-day
    shock x lognormal mixture), named as such, and each store's archetype."""
    from generator.realism import truth_alpha

    return {
        "truth_nb_alpha": repr(truth_alpha(w)),
        "truth_family": f"{w.rz.spec.noise.family} x store-day lognormal shock (nb alpha = variance match)",
        "store_archetypes": json.dumps({str(s.id): a for s, a in zip(w.stores, w.rz.archetype, strict=True)}),
    }


def meta_table(w: World, extra: dict[str, str] | None = None) -> Columns:
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": str(w.seed),
        "scenario_name": w.scenario.name,
        "scenario_hash": w.scenario.digest(),
        "catalog_hash": catalog_digest(w),
        "history_start": w.start.isoformat(),
        "history_end": w.end.isoformat(),
        "timezone": w.catalog.timezone,
        "incumbent_model_version": w.catalog.inventory.model_version,
        # NB alpha (1/k) of the daily noise around expected_qty: the oracle's true distribution in evaluation
        "truth_nb_alpha": repr(1.0 / w.catalog.demand.nb_dispersion),
        **(_realism_meta(w) if w.rz is not None else {}),
        **(extra or {}),
    }
    return {"key": _obj(meta), "value": _obj(meta.values())}
