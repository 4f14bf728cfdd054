"""The documentation: the README stays short and the docs/ site builds strictly (a broken link, a missing anchor or
a page left out of the navigation fails), so the guides cannot silently rot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(project: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, env=ENV, timeout=300)


def nav_pages(cfg: dict) -> list[str]:
    pages: list[str] = []

    def walk(items) -> None:
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                walk(value)
            else:
                pages.append(value)

    walk(cfg["nav"])
    return pages


def test_site_builds_strict(tmp_path):
    proc = build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in ("index.html", "data-scientist/index.html", "integration/index.html", "operations/index.html",
                 "experiments/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_every_guide_is_in_the_navigation():
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = nav_pages(cfg)
    assert {"index.md", "data-scientist.md", "integration.md", "operations.md", "experiments.md"} <= set(pages)
    assert all((ROOT / "docs" / p).is_file() for p in pages)


@pytest.mark.parametrize("breakage", ["[the API](no-such-page.md)", "[scale-out](operations.md#no-such-section)"])
def test_a_broken_link_fails_the_build(tmp_path, breakage):
    """The strict build is what the tests rely on: prove it refuses a broken link or anchor."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    page = project / "docs" / "data-scientist.md"
    page.write_text(page.read_text(encoding="utf-8") + f"\n\nSee {breakage}.\n", encoding="utf-8")
    proc = build(project, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such" in proc.stdout + proc.stderr


def test_readme_is_short_and_points_at_the_guides():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text
    for guide in ("docs/data-scientist.md", "docs/integration.md", "docs/operations.md", "docs/experiments.md"):
        assert guide in text and (ROOT / guide).is_file()


def test_documented_commands_exist():
    """Every `replenish ...` command the guides show is a real command (names drift when commands are renamed)."""
    from replenish.cli import command

    root = command()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r"replenish ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", page.read_text(encoding="utf-8")):
            name, sub = m.group(1), m.group(2)
            cmd = root.commands.get(name)
            assert cmd is not None, (page.name, m.group(0))
            subs = getattr(cmd, "commands", {})
            if subs and not getattr(cmd, "invoke_without_command", False):
                assert sub in subs, (page.name, m.group(0))
