"""``replenish import-pos``: load a real store's point-of-sale log into the source schema (or only show it)."""

from __future__ import annotations

from pathlib import Path

import typer

from replenish.common import CONFIG, DB, console, emit_json, example, json_flag, settings, source


def _dry_source(db: str | None, cfg):
    """The source for a dry run, read only: None when it is a SQLite file that does not exist (nothing to read,
    and connecting would create it)."""
    from forecasting.source.db import parse_url
    from forecasting.source.schema import build_schema

    url = parse_url(db or cfg.source.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).is_file():
        return None, build_schema(cfg.source.tables)
    return source(db, cfg)


def import_pos(
    file: str = typer.Argument(..., metavar="FILE", help="The POS log: CSV, gzip CSV or Parquet (one row per sold "
                               "line)."),
    mapping: str = typer.Option(..., "--mapping", metavar="FILE",
                                help="Source mapping YAML, e.g. configs/sources/maven_coffee.yaml."),
    db: str = DB,
    replace: bool = typer.Option(False, "--replace", help="Replace an existing history (in the same transaction)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read, check and summarise the log; write nothing."),
    max_reject_share: float = typer.Option(
        None, "--max-reject-share", min=0.0, max=1.0, metavar="SHARE",
        help="Override the mapping's limit on rejected rows, a share from 0 to 1 (0.01 = 1%).",
    ),
    as_json: bool = json_flag("the import summary"),
    config: str = CONFIG,
) -> None:
    """Import a POS log: stores, products, orders and items (plus identity materials), all or nothing."""
    from rich.table import Table

    from forecasting.source.pos import import_pos as run_import
    from forecasting.source.pos import load_mapping

    cfg = settings(config)
    m = load_mapping(mapping)
    engine, schema = _dry_source(db, cfg) if dry_run else source(db, cfg)
    report = run_import(file, m, engine, schema, replace=replace, max_reject_share=max_reject_share,
                        dry_run=dry_run)
    if as_json:
        emit_json(report.to_dict())
        return
    verb = "would import (dry run, nothing written)" if dry_run else "imported"
    t = Table(title=f"import-pos {m.name} -> {report.database}: {verb}", show_header=False)
    t.add_row("rows read", f"{report.rows_read:,} data rows ({report.blank_lines:,} blank lines skipped)")
    for rule, n in report.filtered.items():
        t.add_row(f"  removed by filter: {rule}", f"{n:,} lines")
    t.add_row("lines kept / rejected", f"{report.rows_loaded:,} / {report.rows_rejected:,} of {report.lines_in:,}")
    for reason, n in report.rejected.items():
        t.add_row(f"  rejected: {reason}", f"{n:,} lines (first: {report.first_rejected[reason]})")
    t.add_row("period (local dates)", f"{report.period[0]} .. {report.period[1]}")
    names = ", ".join(report.store_names[:5]) + (", ..." if len(report.store_names) > 5 else "")
    t.add_row("stores / products", f"{report.stores} ({names}) / {report.products}")
    t.add_row("orders / lines / units", f"{report.orders:,} orders / {report.items:,} lines / {report.units:,} pieces")
    t.add_row("revenue", f"{report.revenue:,.2f} {m.currency}")
    for i, p in enumerate(report.top_products, 1):
        t.add_row(f"  top {i}: {p['name']}", f"{p['units']:,} pieces, {p['revenue']:,.2f} {m.currency}")
    t.add_row("holiday calendar", report.holidays or "not in the mapping (configured default)")
    t.add_row("materials", report.materials)
    t.add_row("time", f"{report.seconds['total']:.1f} s")
    console.print(t)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("import-pos", epilog=example(
        "replenish import-pos ../shared/data/maven_coffee_shop_sales.csv.gz --mapping "
        "configs/sources/maven_coffee.yaml --db sqlite:///data/maven.db"))(import_pos)
