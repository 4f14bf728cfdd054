"""What every command shares: settings, the source engine, rich output and progress."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forecasting.config import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings(config: str | None = None) -> Settings:
    return load_settings(config)


def source(db: str | None, cfg: Settings):
    """Open the source database named by ``--db`` or the configuration (connection checked)."""
    from forecasting.db import open_source

    return open_source(db or cfg.source.url, cfg.source.tables, cfg.source.connect_timeout_s)


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
