"""Imports run one way: runtime services at the bottom, then nodes/, compiler/, engine/, agent/, adapters on top.

The test reads every module's import statements (function-level ones included) with `ast`, so a lazy import
inside a function cannot sneak a cycle back in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"runtime", "nodes", "compiler", "engine", "agent", "mcp_server", "nodeweaver", "evals"}

# package -> the packages of ours it must never import
FORBIDDEN = {
    "runtime": OURS - {"runtime"},
    "nodes": {"compiler", "engine", "agent", "mcp_server", "nodeweaver", "evals"},
    "compiler": {"engine", "agent", "mcp_server", "nodeweaver", "evals"},
    "engine": {"agent", "mcp_server", "nodeweaver", "evals"},
    "agent": {"mcp_server", "nodeweaver", "evals"},
    "mcp_server": {"evals"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level package names a module imports (absolute imports only; ours are all absolute)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def layer_violations() -> list[str]:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for name, line in imported_packages(path):
                if name in forbidden:
                    problems.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return problems


def test_imports_run_one_way():
    assert layer_violations() == []


def test_the_walker_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from engine.progress import x\n    import agent.graph\n")
    assert {name for name, _ in imported_packages(module)} == {"os", "engine", "agent"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_every_layer_exists(package):
    assert (REPO / package / "__init__.py").is_file()
