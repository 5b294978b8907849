"""The package reads one way: cli → experiments → strategies → engine → backend → kernels, with
estimators and validation underneath, and no import running back up to ``__init__``.

The imports are read from the source with ``ast`` (imports under ``if TYPE_CHECKING:`` are
annotations only and do not count).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "cascade_routing"

#: Each top-level module or subpackage and its layer: a module may import its own group and
#: groups of lower layers only.
LAYERS = {
    "_version": 0,
    "options": 0,
    "validation": 1,
    "_exact": 1,
    "_reference": 1,
    "_core": 1,
    "c_api": 1,
    "_numba": 2,
    "_backend": 3,
    "engine": 4,
    "estimators": 4,
    "answers": 4,
    "strategies": 5,
    "distributed": 6,
    "learn": 6,
    "experiments": 7,
    "serve": 7,
    "cli": 8,
    "__main__": 9,
}
#: What the package's ``__init__`` may import: the service path, not the optional parts.
INIT_MAY_IMPORT = {"_version", "options", "validation", "_backend", "engine", "estimators"}
INIT_MAY_IMPORT |= {"answers", "strategies"}


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_module(parts: list[str]) -> bool:
    base = PACKAGE.joinpath(*parts)
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[list[str], int]]:
    """The package modules ``path`` imports (as parts below the package) with line numbers."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotation_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            annotation_only.update(id(n) for n in ast.walk(node))
    found: list[tuple[list[str], int]] = []
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "cascade_routing":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                sub = [*target, alias.name]
                found.append((sub if _is_module(sub) else target, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cascade_routing":
                    found.append((parts[1:], node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    groups = {_module_name(p)[0] for p in SOURCES if _module_name(p)}
    assert groups <= set(LAYERS), f"give these a layer in LAYERS: {groups - set(LAYERS)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_run_down_the_layers(path: Path) -> None:
    me = _module_name(path)
    bad = []
    for target, line in _imports(path):
        if not target:
            bad.append(f"line {line}: imports the package __init__")
            continue
        if not me:  # the package __init__
            if target[0] not in INIT_MAY_IMPORT:
                bad.append(f"line {line}: __init__ imports optional part {target[0]}")
            continue
        if target[0] != me[0] and LAYERS[target[0]] >= LAYERS[me[0]]:
            bad.append(f"line {line}: {'.'.join(me)} imports {'.'.join(target)} (not below it)")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The reader of imports finds an upward import and one of the package __init__."""
    engine = PACKAGE / "engine.py"
    found = [t for t, _ in _imports(engine)]
    assert ["_backend"] in found and ["validation"] in found
    strategies_base = PACKAGE / "strategies" / "base.py"
    assert any(t[0] == "engine" for t, _ in _imports(strategies_base))
    assert LAYERS["engine"] < LAYERS["strategies"] < LAYERS["experiments"] < LAYERS["cli"]
