"""Imports run one way (docs/ARCHITECTURE.md, Layers): a walk over every module's imports fails on a
forbidden edge.

The walk reads the source with `ast`, so it sees every import: at the top, inside functions and under
TYPE_CHECKING. Folders map to import names as pyproject's package-dir says (indexer/ is repolm.indexer).
A module breaks a rule when it, or a package module it reaches through its imports, imports what the
rule forbids; the failure names the chain of imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (the modules under this name, may not reach an import under these names, because)
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("repolm.server", ("repolm.training",), "the LSP edge never imports training"),
    ("repolm.training", ("repolm.server",), "training uses the cores in repolm.assist, not the LSP edge"),
    ("repolm.assist", ("repolm.server", "repolm.training"), "the cores sit below the LSP edge and training"),
    ("repolm.prompt", ("torch", "repolm.indexer"), "the prompt contract needs neither torch nor the index"),
    ("repolm", ("repolm.cli",), "the CLI is the top: nothing imports it"),
)
INDEXER_MAY_IMPORT = ("repolm.config", "repolm.indexer")  # of the package's own modules


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def package_modules() -> dict[str, Path]:
    """Every module of the package by import name, found through pyproject's package-dir mapping."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    modules: dict[str, Path] = {}
    for package, folder in setuptools["package-dir"].items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """What one module imports: package modules by their full name, anything else by its top name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to the module's package (a package's __init__ is its own)
                package = name.split(".")[: None if path.name == "__init__.py" else -1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            # `from package import module` imports that module; `from module import name`, the module.
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target not in modules and _within(target, "repolm") and "." in target:
                target = target.rsplit(".", 1)[0]
            found.add(target if target in modules else target.split(".")[0])
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every forbidden import reached from a module a rule covers, with the chain that reaches it."""
    own = [m for m in graph if m.startswith("repolm.")]
    beside_indexer = tuple(m for m in own if not any(_within(m, allowed) for allowed in INDEXER_MAY_IMPORT))
    rules = [*RULES, ("repolm.indexer", beside_indexer, "the indexer imports only repolm.config")]
    found = []
    for source, forbidden, why in rules:
        for start in sorted(m for m in graph if _within(m, source)):
            parents: dict[str, str | None] = {start: None}
            queue = deque([start])
            while queue:
                module = queue.popleft()
                for target in sorted(graph[module]):
                    if any(_within(target, f) for f in forbidden):
                        chain = [target, module]
                        while (parent := parents[chain[-1]]) is not None:
                            chain.append(parent)
                        found.append(f"{' -> '.join(reversed(chain))}: {why}")
                    elif target in graph and target not in parents:
                        parents[target] = module
                        queue.append(target)
    return found


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle among the package's modules (a package importing its own modules aside), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if target not in graph or target == module:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_the_walk_sees_the_whole_package() -> None:
    graph = import_graph()
    assert {"repolm.cli", "repolm.prompt", "repolm.assist.engine", "repolm.indexer.builder"} <= set(graph)
    assert {"repolm.server.lsp", "repolm.training.raft_plan", "repolm.indexer.code_chunks"} <= set(graph)
    assert "repolm.assist.engine" in graph["repolm.server.lsp"]  # from repolm.assist.engine import ...
    assert "repolm.assist.explain" in graph["repolm.assist.ask"]  # from .explain import verify
    assert "repolm.training.metrics" in graph["repolm.training.evaluate"]  # from . import metrics
    assert "repolm.training.registry" in graph["repolm.cli"]  # inside a function
    assert "torch" in graph["repolm.model"] and "repolm.config" in graph["repolm.indexer.builder"]


def test_no_module_imports_across_a_layer_it_must_not() -> None:
    assert violations(import_graph()) == []


def test_a_forbidden_edge_fails_with_its_chain() -> None:
    graph = import_graph()
    graph["repolm.assist.workspace"] = graph["repolm.assist.workspace"] | {"repolm.training.registry"}
    graph["repolm.indexer.tokens"] = graph["repolm.indexer.tokens"] | {"repolm.prompt"}
    graph["repolm.training.gate"] = graph["repolm.training.gate"] | {"repolm.cli"}
    found = violations(graph)
    assert (
        "repolm.server.lsp -> repolm.assist.workspace -> repolm.training.registry: the LSP edge"
        in "\n".join(found)
    )
    assert any(f.startswith("repolm.indexer.tokens -> repolm.prompt: the indexer") for f in found)
    assert any(f.startswith("repolm.training.gate -> repolm.cli: the CLI is the top") for f in found)


def test_no_import_cycles() -> None:
    assert cycle(import_graph()) == []


def test_importing_the_prompt_contract_loads_no_torch() -> None:
    check = "import sys, repolm.prompt; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
