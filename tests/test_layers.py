"""Layers import one way: domain ← projections ← realtime; inference uses domain."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "domain": {"domain"},
    "projections": {"domain", "projections"},
    "realtime": {"domain", "projections", "realtime"},
    "inference": {"domain", "inference"},
}
OURS = {"domain", "projections", "realtime", "inference", "darkroom"}
DOMAIN_THIRD_PARTY = {"eventsourcing"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_beneath_it(package: str) -> None:
    offences = {
        str(path.relative_to(ROOT)): sorted((imports_of(path) & OURS) - ALLOWED[package])
        for path in modules(package)
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_the_domain_imports_nothing_but_the_standard_library_and_eventsourcing() -> None:
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    foreign = {
        str(path.relative_to(ROOT)): sorted(imports_of(path) - stdlib - OURS - DOMAIN_THIRD_PARTY)
        for path in modules("domain")
    }
    assert {k: v for k, v in foreign.items() if v} == {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the first-party modules it imports when it runs (function-level imports
    count; `if TYPE_CHECKING:` blocks do not). `from package import name` depends on the
    submodule when `name` is one, else on the package."""
    paths = {module_name(path): path for package in sorted(OURS) for path in modules(package)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                    for a in node.names
                )
        graph[name] = {other for other in found if other in paths and other != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
