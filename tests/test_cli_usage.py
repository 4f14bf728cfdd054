"""The command line as a newcomer meets it: usage errors are one line and exit 2, help is complete, readers create
nothing. The tests walk the real command tree, so a command added later is covered without editing this file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replenish.cli import command, main

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _commands(cmd=None, path: tuple[str, ...] = ()):
    """Every command path that runs something (leaves, and groups that run without a subcommand)."""
    cmd = cmd or command()
    subs = getattr(cmd, "commands", {})
    if path and (not subs or getattr(cmd, "invoke_without_command", False)):
        yield path, cmd
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())
IDS = [" ".join(p) for p, _ in COMMANDS]


def _one_line_exit_2(code: int, out: str, err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert needle in lines[0], (needle, lines[0])
    assert lines[0].startswith("error: ")


def test_the_walk_covers_every_stage():
    names = set(IDS)
    assert {"seed", "stats", "backtest", "train", "promote", "tune", "tune apply", "plan", "forecast", "simulate",
            "nightly", "override", "import-pos", "features build", "db init", "serve", "serve import-model",
            "mlflow ui", "mlflow uri"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=IDS)
def test_unknown_option_is_one_line_exit_2(path, capsys):
    code, out, err = run([*path, "--no-such-option"], capsys)
    _one_line_exit_2(code, out, err, "--no-such-option")
    assert f"replenish {' '.join(path)} --help" in err  # where to look next


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_malformed_and_out_of_range_numbers_name_the_option(path, cmd, capsys):
    numeric = [p for p in cmd.params if p.param_type_name == "option" and not p.is_flag
               and p.type_descriptor.annotation in (int, float)]
    for p in numeric:
        opt = p.opts[0]
        code, out, err = run([*path, opt, "abc"], capsys)
        _one_line_exit_2(code, out, err, opt)
        if p.max is not None:
            code, out, err = run([*path, opt, str(p.max * 10 + 1)], capsys)
            _one_line_exit_2(code, out, err, opt)
        elif p.min is not None:
            code, out, err = run([*path, opt, str(p.min - 1)], capsys)
            _one_line_exit_2(code, out, err, opt)


REQUIRING = [(p, c) for p, c in COMMANDS if any(x.required for x in c.params)]


@pytest.mark.parametrize("path,cmd", REQUIRING, ids=[" ".join(p) for p, _ in REQUIRING])
def test_missing_required_option_or_argument_names_it(path, cmd, capsys):
    required = [p for p in cmd.params if p.required]
    code, out, err = run(list(path), capsys)
    first = required[0]
    _one_line_exit_2(code, out, err, first.opts[0] if first.param_type_name == "option" else first.metavar)


@pytest.mark.parametrize("argv,needle", [
    (["nope"], "nope"),
    (["plan", "--date", "2026-13-45"], "--date"),
    (["plan", "--date", "2026-02-13", "--store", "abc"], "--store"),
    (["backtest", "--origins", "abc"], "--origins"),
    (["backtest", "--until", "2026-02-30"], "--until"),
    (["serve", "--port", "70000"], "--port"),
    (["features", "build", "--until", "tomorrow"], "--until"),
    (["simulate", "--policy", "best"], "--policy"),
])
def test_issue_examples(argv, needle, capsys):
    code, out, err = run(argv, capsys)
    _one_line_exit_2(code, out, err, needle)


def test_bare_command_prints_help_and_exits_0(capsys):
    code, out, err = run([], capsys)
    assert code == 0 and "Usage: replenish" in out and "Traceback" not in out + err
    code, out, _ = run(["db"], capsys)
    assert code == 0 and "init" in out


def test_version_names_the_model_and_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REPLENISH__MLFLOW__TRACKING_URI", str(tmp_path / "mlruns"))
    code, out, err = run(["--version"], capsys)
    assert code == 0, err
    from replenish.about import package_version

    assert out.startswith(f"replenish {package_version()}")
    assert "model:" in out and "source:" in out and "features:" in out
    assert not (tmp_path / "mlruns").exists()  # asking creates nothing


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_help_has_an_example_formats_and_meaningful_metavars(path, cmd, capsys):
    code, out, _ = run([*path, "--help"], capsys)
    assert code == 0
    assert "Example" in out and any(f"$ {start}" in out for start in ("replenish", "export", "REPLENISH_"))
    assert "<bool>" not in out and "<str>" not in out and "<int" not in out and "<float" not in out
    for p in cmd.params:
        assert p.help, f"{' '.join(path)} {p.opts}: no help"
        if "--date" in p.opts or "--until" in p.opts or "--start" in p.opts or "--end" in p.opts:
            assert p.metavar == "YYYY-MM-DD"


def test_readers_never_create_a_database(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    url = f"sqlite:///{missing}"
    for argv in (["stats", "--db", url], ["simulate", "--db", url]):
        code, out, err = run(argv, capsys)
        _one_line_exit_2(code, out, err, "no SQLite database at")
    assert not (tmp_path / "no").exists()


def test_reader_opens_sqlite_read_only(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from forecasting.source.db import init_db, open_source

    url = f"sqlite:///{tmp_path / 'src.db'}"
    init_db(*open_source(url))
    engine, _ = open_source(url, readonly=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM t_store")).scalar() == 0
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("INSERT INTO t_user (user_id, registered_at) VALUES (1, '2026-01-01')"))


def test_console_entry_point_as_a_user_runs_it(tmp_path):
    """The installed script, in a subprocess: no traceback, exit 2, one line (and no library warnings)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "replenish.cli", "plan"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: Missing option '--date'. (see `replenish plan --help`)"
    assert proc.stdout == ""


@pytest.mark.parametrize("args, says", [(["--seeds", "0"], "--seeds 0"), (["--out", "README.md"], "is a file")])
def test_the_replay_benchmark_refuses_bad_arguments_before_it_starts(args, says):
    """A replay runs for 20 minutes: a bad argument is one line and exit 2 up front, not a traceback at the end."""
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_simulation.py"), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2
    assert says in p.stderr.strip().splitlines()[-1]
    assert "Traceback" not in p.stderr
