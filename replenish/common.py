"""What every command shares: settings, the source engine, rich output and progress."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forecasting.config import Settings, load_settings


def _width(stream) -> int | None:
    """Terminal width on a terminal; 120 columns (or $COLUMNS) when piped or logged, so tables and sentences are
    not squeezed into 80 columns and cut (``seasonal_…``)."""
    if stream.isatty():
        return None
    return int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 120


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

# Options every stage shares, declared once: a metavar that says what to type and the format in the help.
DB_HELP = ("Source database URL: sqlite:///data/luckin.db or mysql://user:password@host/db "
           "(default: source.url in configs/, or $REPLENISH_DB_URL).")
DB = typer.Option(None, "--db", metavar="URL", help=DB_HELP)
CONFIG = typer.Option(None, "--config", metavar="FILE",
                      help="A YAML file merged over configs/default.yaml (or $REPLENISH_CONFIG).")
FEATURES = typer.Option(None, "--features", metavar="DIR",
                        help="Feature store folder, built by `replenish features build` (default: features.out_dir, "
                             "data/features).")
ENGINE = typer.Option(None, "--engine", metavar="local|dask",
                      help="Where the work runs: local or a Dask cluster (default: cluster.engine in configs/).")


def json_flag(what: str = "the summary") -> Any:
    return typer.Option(False, "--json", help=f"Print {what} as one JSON object on stdout (no table).")


def example(*commands: str) -> str:
    """An epilog with runnable examples, shown under every command's help."""
    lines = "\n".join(f"  $ {c}" for c in commands)
    return f"[bold]Example{'s' if len(commands) > 1 else ''}:[/]\n\n{lines}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 pack``, ``3 packs``: counts in messages agree with their noun."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def settings(config: str | None = None) -> Settings:
    return load_settings(config)


def source(db: str | None, cfg: Settings, readonly: bool = False):
    """Open the source database named by ``--db`` or the configuration (connection checked); ``readonly`` for
    commands that only read, so a mistyped SQLite path is one line instead of a new empty file."""
    from forecasting.source.db import open_source

    return open_source(db or cfg.source.url, cfg.source.tables, cfg.source.connect_timeout_s, readonly=readonly)


@contextmanager
def progress(enabled: bool = True):
    """A rich progress display on stderr (so ``--json`` stdout stays clean); silent when not a terminal-ish run."""
    prog = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    with prog:
        yield prog


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, indent=2) + "\n")
    sys.stdout.flush()
