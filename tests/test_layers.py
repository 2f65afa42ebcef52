"""Straight layers: every import of the package and of its Hydra plugins (function-level and ``TYPE_CHECKING`` ones
included) goes down the layers of docs/architecture.md, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imprint_bench"
PLUGINS = ROOT / "hydra_plugins"

#: The layers of docs/architecture.md, bottom first (a module's layer is that of its longest listed prefix).
LAYERS: list[list[str]] = [
    ["errors", "identity", "rng", "schema"],
    ["data", "backbones", "features"],
    ["imprint"],
    ["grid", "plan", "results", "config", "config_schema", "model"],
    ["evaluate", "runner", "sweep", "tracking", "report", "cluster"],
    ["callbacks", "__main__"],
    ["hydra_plugins"],  # the imprint sweeper: Hydra loads it, it drives the package
]
#: The package's lazy public face (it resolves names with importlib) and the config package (YAML only).
EXEMPT = {"imprint_bench", "imprint_bench.conf"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    if module.startswith("hydra_plugins"):
        return len(LAYERS) - 1
    rest = module.split(".")[1:]
    for index, names in enumerate(LAYERS):
        if rest and rest[0] in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to docs/architecture.md and LAYERS")


def _imports(path: Path) -> set[str]:
    """Modules of the package imported by ``path`` (type-only imports count: a cycle through them is a cycle)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imprint_bench"):
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("imprint_bench"))
    return found


MODULES = {_module_name(p): p for p in [*PACKAGE.rglob("*.py"), *PLUGINS.rglob("*.py")]
           if "conf" not in p.relative_to(PACKAGE.parent).parts}


def _graph() -> dict[str, set[str]]:
    return {name: {m for m in _imports(path) if m in MODULES and m not in EXEMPT} - {name}
            for name, path in MODULES.items() if name not in EXEMPT}


GRAPH = _graph()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers(module):
    upward = [m for m in GRAPH[module] if _layer(m) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports upward: {upward}"


def test_no_import_cycles():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
