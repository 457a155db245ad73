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
