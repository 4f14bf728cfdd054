"""The package version, for ``replenish --version`` and the API's OpenAPI document (one source: pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DIST = "luckin-replenishment"


def package_version() -> str:
    try:
        return version(DIST)
    except PackageNotFoundError:  # a source tree that was never installed
        import tomllib

        from forecasting.config import PROJECT_ROOT

        with open(PROJECT_ROOT / "pyproject.toml", "rb") as fh:
            return tomllib.load(fh)["project"]["version"]
