"""``replenish import-pos``: load a real store's point-of-sale log into the source schema."""

from __future__ import annotations

import typer

from replenish.common import CONFIG, DB, console, emit_json, example, json_flag, settings, source


def import_pos(
    file: str = typer.Argument(..., metavar="FILE", help="The POS log: CSV, gzip CSV or Parquet (one row per sold "
                               "line)."),
    mapping: str = typer.Option(..., "--mapping", metavar="FILE",
                                help="Source mapping YAML, e.g. configs/sources/maven_coffee.yaml."),
    db: str = DB,
    replace: bool = typer.Option(False, "--replace", help="Replace an existing history (in the same transaction)."),
    max_reject_share: float = typer.Option(
        None, "--max-reject-share", min=0.0, max=1.0, metavar="SHARE",
        help="Override the mapping's limit on rejected rows, a share from 0 to 1 (0.01 = 1%).",
    ),
    as_json: bool = json_flag("the import summary"),
    config: str = CONFIG,
) -> None:
    """Import a POS log: stores, products, orders and items (plus identity materials), all or nothing."""
    from rich.table import Table

    from forecasting.pos import import_pos as run_import
    from forecasting.pos import load_mapping

    cfg = settings(config)
    m = load_mapping(mapping)
    engine, schema = source(db, cfg)
    report = run_import(file, m, engine, schema, replace=replace, max_reject_share=max_reject_share)
    if as_json:
        emit_json(report.to_dict())
        return
    t = Table(title=f"import-pos {m.name} -> {report.database}", show_header=False)
    counts = f"{report.rows_read:,} / {report.rows_loaded:,} / {report.rows_rejected:,}"
    t.add_row("rows read / loaded / rejected", counts)
    for reason, n in report.rejected.items():
        t.add_row(f"  rejected: {reason}", f"{n:,} (first: {report.first_rejected[reason]})")
    t.add_row("stores / products", f"{report.stores} / {report.products}")
    t.add_row("orders / items / units", f"{report.orders:,} / {report.items:,} / {report.units:,}")
    t.add_row("revenue (source currency)", f"{report.revenue:,.2f}")
    t.add_row("period (local)", f"{report.period[0]} .. {report.period[1]}")
    t.add_row("materials", report.materials)
    t.add_row("time", f"{report.seconds['total']:.1f} s")
    console.print(t)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("import-pos", epilog=example(
        "replenish import-pos ../shared/data/maven_coffee_shop_sales.csv.gz --mapping "
        "configs/sources/maven_coffee.yaml --db sqlite:///data/maven.db"))(import_pos)
