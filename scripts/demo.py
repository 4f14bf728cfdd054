"""`make demo`: run the main job end to end on the embedded default (SQLite source, local MLflow store).

Each stage is a `replenish` command, so the demo shows exactly what a planner or a scheduler would run.
Stages whose command is not part of this build yet are skipped with a note.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "sqlite:///data/luckin.db"
REPLENISH = [sys.executable, "-m", "replenish.cli"]


def available() -> set[str]:
    from replenish.cli import app
    import typer.main

    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def run(title: str, args: list[str]) -> None:
    print(f"\n=== {title}: replenish {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(REPLENISH + args, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"demo stopped: `replenish {' '.join(args)}` exited {proc.returncode}")
    print(f"--- {title} done in {time.monotonic() - start:.1f} s", flush=True)


def main() -> None:
    cmds = available()
    stages: list[tuple[str, str, list[str]]] = [
        ("seed", "Generate the synthetic Luckin history (skipped when already there)", ["seed", "--db", DB, "--if-missing"]),
        ("stats", "Calibration against the business report", ["stats", "--db", DB]),
        ("features", "Feature store", ["features", "build", "--db", DB]),
    ]
    for cmd, title, args in stages:
        if cmd not in cmds:
            print(f"\n=== {title}: `replenish {cmd}` is not in this build yet; skipped")
            continue
        run(title, args)
    print("\nDemo finished.")


if __name__ == "__main__":
    main()
