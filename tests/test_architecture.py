"""The house rules, checked on the source: data flows one way and nothing imports in a circle.

Every import counts, the lazy ones inside functions too (a circle closed by a lazy import is still a
circle, just one that bites later); only those under `TYPE_CHECKING` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGES = ("core", "handlers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def _imported(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    names: set[str] = set()
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
    for candidate in candidates:
        if candidate in modules:
            names.add(candidate)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _imported(node, modules)
        # Importing `a.b.c` runs `a/__init__` and `a/b/__init__` first.
        for target in list(edges):
            parts = target.split(".")
            edges |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules}
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if node.startswith(target + "."):
                continue  # a package's own __init__ runs before its modules: not a circle
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_module_imports_in_a_circle() -> None:
    assert _cycle(import_graph()) is None


def test_the_circle_check_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_core_never_imports_handlers() -> None:
    for module, targets in import_graph().items():
        if module.startswith("core"):
            assert not {target for target in targets if target.startswith("handlers")}, module


def _mentions(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Name | ast.alias) and name in (getattr(node, "id", None), getattr(node, "name", None))
        for node in ast.walk(tree)
    )


@pytest.mark.parametrize("name", ["Settings", "get_settings", "load_settings"])
def test_only_the_composition_root_reads_settings_in_core(name: str) -> None:
    readers = sorted(
        module for module, path in _modules().items() if module.startswith("core") and _mentions(path, name)
    )
    assert set(readers) <= {"core.config", "core.wiring"}, readers


def test_no_process_wide_metrics_sink() -> None:
    import core.metrics

    assert not hasattr(core.metrics, "use_metrics")
    assert not hasattr(core.metrics, "metrics")
