"""``replenish seed`` and ``replenish stats``: generate the synthetic source history and check its calibration."""

from __future__ import annotations

import typer

from replenish.common import (
    CONFIG,
    DB,
    console,
    emit_json,
    err_console,
    example,
    json_flag,
    plural,
    progress,
    settings,
    source,
)


def register(app: typer.Typer) -> None:
    app.command("seed", epilog=example("replenish seed --db sqlite:///data/luckin.db",
                                       "replenish seed --db sqlite:///data/classic.db --scenario "
                                       "configs/scenarios/classic.yaml",
                                       "replenish seed --db sqlite:///data/small.db --scenario "
                                       "configs/scenarios/small.yaml --seed 7"))(seed)
    app.command("stats", epilog=example("replenish stats --db sqlite:///data/luckin.db"))(stats)


def seed(
    db: str = DB,
    seed_: int = typer.Option(None, "--seed", metavar="N", help="Random seed, a whole number (default: "
                              "generator.seed in configs/, 42); the same seed gives the same history."),
    scenario: str = typer.Option(None, "--scenario", metavar="FILE",
                                 help="Scenario YAML (default: generator.scenario in configs/, "
                                 "configs/scenarios/realistic.yaml; configs/scenarios/classic.yaml: the default "
                                 "history before issue 16, without the realistic effects)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing history and the proposals planned "
                                 "on it (in the same transaction)."),
    config: str = CONFIG,
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the database already holds the same seed and scenario."
    ),
) -> None:
    """Generate a deterministic synthetic history (orders, inventory counts, incumbent forecasts, ground truth) in
    one transaction: an interrupted seed leaves nothing behind. Refuses a database that already holds a history
    unless --replace. The default scenario writes ~4.6M rows (about 20 s into SQLite)."""
    from forecasting.config import resolve_path
    from forecasting.source.db import safe_url
    from generator.api import generate
    from generator.catalog import load_catalog, load_scenario

    cfg = settings(config)
    sc = load_scenario(scenario or cfg.generator.scenario)  # validate before touching the database
    cat = load_catalog(resolve_path(cfg.generator.catalog))
    engine, schema = source(db, cfg)
    n = cfg.generator.seed if seed_ is None else seed_
    if if_missing and not replace:
        have = _source_meta(engine, schema)
        if have.get("seed") == str(n) and have.get("scenario_hash") == sc.digest():
            console.print(f"{safe_url(engine.url)}: history for seed {n}, scenario '{sc.name}' already there; skipped")
            return
    with progress(not quiet) as prog:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task({"simulate": "simulate days", "write": "write rows"}.get(stage, stage),
                                             total=total)
            prog.update(tasks[stage], completed=done, total=total)

        summary = generate(engine, schema, sc, n, report, catalog=cat, replace=replace)
    rows = summary["rows"]
    console.print(
        f"{safe_url(engine.url)}: seeded '{summary['scenario']}' (seed {n}) {summary['history_start']}.."
        f"{summary['history_end']}, {plural(summary['stores'], 'store')}, {plural(rows.get('orders', 0), 'order')}, "
        f"{plural(sum(rows.values()), 'row')} in {sum(summary['seconds'].values()):.1f} s",
        highlight=False,
    )
    d = summary["diagnostics"]
    err_console.print(
        f"censored product-days {d['censored_product_days']:.1%}, lost units {d['lost_units_share']:.1%}, "
        f"perishable waste {d['perishable_waste_share']:.1%}",
        highlight=False,
    )


def _source_meta(engine, schema) -> dict[str, str]:
    """The generator's key/value metadata, or {} when the database holds none yet."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            return {k: v for k, v in conn.execute(select(schema["meta"].c.key, schema["meta"].c.value))}
    except SQLAlchemyError:
        return {}


def stats(
    db: str = DB,
    as_json: bool = json_flag("{figure: {report, generated, ok}}"),
    config: str = CONFIG,
) -> None:
    """Compare the history's figures (orders, revenue in USD, products, production seconds, channel shares) with
    the business report; tolerances in configs/catalog.yaml. Only reads the database."""
    from rich.table import Table

    from forecasting.config import resolve_path
    from generator.catalog import load_catalog
    from generator.stats import compare, compute_stats

    cfg = settings(config)
    cat = load_catalog(resolve_path(cfg.generator.catalog))
    engine, schema = source(db, cfg, readonly=True)
    result = compare(compute_stats(engine, schema, cat.timezone), cat.calibration)
    if as_json:
        emit_json(result)
        return
    table = Table(title="Generated history vs. business report")
    for col in ("figure", "report", "generated", "difference", "within tolerance"):
        table.add_column(col, justify="left" if col == "figure" else "right", no_wrap=col == "figure")
    for key, row in result.items():
        rep, gen = row["report"], row["generated"]
        diff = ""
        if isinstance(rep, (int, float)) and isinstance(gen, (int, float)) and not isinstance(rep, bool):
            diff = f"{(gen - rep) / rep:+.1%}" if rep and abs(rep) >= 100 else f"{gen - rep:+.3g}"
        table.add_row(key, _fmt(rep), _fmt(gen), diff, "[green]✓[/]" if row["ok"] else "[red]✗[/]")
    console.print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
