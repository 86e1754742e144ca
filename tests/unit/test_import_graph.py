"""Arrows between the project's modules point one way: no import cycle among first-party modules, counting
imports made inside functions too (a lazy import hides a cycle from Python, not from the reader)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"lab": "lab", "cdk": "cdk", "lambdas": "lambdas", "bench": "bench",
            "lifeline_agent": "agent/lifeline_agent"}  # fmt: skip


def first_party_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((package, *parts))] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str | None] = set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {owner(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""  # from . / from .. import
                source = ".".join(part for part in (base, node.module) if part)
                targets |= {owner(f"{source}.{alias.name}") for alias in node.names}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import() -> None:
    graph = {"lab.cli": {"lab.demo"}, "lab.demo": {"lab.drill"}, "lab.drill": {"lab.cli"}, "lab.pki": set()}
    assert cycles(graph) == [["lab.cli", "lab.demo", "lab.drill"]]


def test_relative_imports_are_followed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from .a import thing\n")
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
               "pkg.b": tmp_path / "pkg" / "b.py"}  # fmt: skip
    assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b"]]


def test_first_party_modules_import_one_way() -> None:
    modules = first_party_modules()
    assert {"lab.cli", "lab.drill", "cdk.stack", "cdk.nag", "lifeline_agent.reconcile"} <= modules.keys()
    assert cycles(import_graph(modules)) == []
