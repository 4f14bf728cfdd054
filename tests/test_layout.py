"""The package layout: imports point one way, so the shared core can be reused and the stages stay separable.

Why a test: a single convenient import (a helper of planning/ used from forecasting/, the CLI's option parser used
from serving/) is all it takes to tie the layers together, and nothing else would notice. Every import is read from
the source (``ast``), function-level ones included, so lazy imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("forecasting", "features", "training", "serving", "planning", "generator", "replenish")
# package -> the project packages it must never import
FORBIDDEN = {
    "forecasting": set(PACKAGES) - {"forecasting"},
    **{p: {"replenish"} for p in ("features", "training", "serving", "planning")},
}
CORE_PARTS = ("source", "inventory", "evaluation")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``import a.b`` and ``from a.b import c`` give ``a.b``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def violations(package: str, forbidden: set[str], root: Path = ROOT) -> list[str]:
    return sorted(
        f"{path.relative_to(root)} imports {mod}"
        for path in (root / package).rglob("*.py")
        for mod in imported_modules(path)
        if mod.split(".")[0] in forbidden
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    assert any((ROOT / package).rglob("*.py")), package
    assert violations(package, FORBIDDEN[package]) == []


def test_the_check_sees_a_lazy_import(tmp_path):
    """Prove the scan would fail: a function-level import of planning from the core is reported."""
    pkg = tmp_path / "forecasting" / "inventory"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from planning.plan import run\n    return run\n", encoding="utf-8")
    assert violations("forecasting", FORBIDDEN["forecasting"], tmp_path) == [
        "forecasting/inventory/bad.py imports planning.plan"
    ]


def test_core_is_split_by_job():
    """``forecasting/`` keeps only its shared modules at the top; each job is a sub-package that says what it is."""
    core = ROOT / "forecasting"
    for part in CORE_PARTS:
        doc = ast.get_docstring(ast.parse((core / part / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) <= 3, part
    top = {p.stem for p in core.glob("*.py")} - {"__init__"}
    assert top == {"config", "errors", "uncertainty", "cluster", "version"}
    subdirs = {p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert subdirs == set(CORE_PARTS)
