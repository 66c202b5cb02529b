"""The package's version, from its installed metadata: pyproject.toml is the one place it is written."""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "pokemon-generator-api"


@cache
def version() -> str:
    """`pyproject.toml`'s version as installed; "0+unknown" when run from a tree that was never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
