"""The datasets shipped inside the package, under ``cascade_routing/data``."""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Iterator
from pathlib import Path

from ..settings import BUNDLED

__all__ = ["bundled_datasets", "bundled_folder", "bundled_readme"]


def bundled_datasets() -> list[str]:
    """Names of the datasets shipped inside the package (for :func:`~.registry.load`)."""
    return sorted(BUNDLED)


def _check_name(name: str) -> str:
    if name not in BUNDLED:
        raise KeyError(f"no bundled dataset {name!r}; bundled: {bundled_datasets()}")
    return BUNDLED[name]


@contextlib.contextmanager
def bundled_folder(name: str) -> Iterator[Path]:
    """The folder of the bundled dataset ``name`` on the file system, for the block."""
    resource = importlib.resources.files("cascade_routing") / "data" / _check_name(name)
    with importlib.resources.as_file(resource) as path:
        yield Path(path)


def bundled_readme(name: str) -> str:
    """The README (origin, licence, changes) of a bundled dataset."""
    resource = importlib.resources.files("cascade_routing") / "data" / _check_name(name)
    return (resource / "README.md").read_text(encoding="utf-8")
