"""The package's imports run one way: no cycles, and no module imports a layer above its own.

The imports are read from the source (``ast``), not by importing, so a lazy import inside a
function counts as much as one at the top of a file: it runs just the same when called, and one
under ``if TYPE_CHECKING:`` too: a type from a higher layer is a dependency all the same. An
``importlib.import_module(f"facescale.cli.{name}")`` counts as importing every module whose name
starts with the literal prefix (private ``_`` modules and the importer itself aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facescale"

# Lower may not import higher. Equal ranks may import each other (cycles are caught separately).
# A new top-level module or package gets a rank here, so its place is decided, not assumed.
LAYER_RANK = {
    "errors": 0,
    "atomic": 0,
    "config": 1,
    "config_peers": 1,
    "config_yaml": 1,
    "registry": 1,
    "distributed": 1,
    "models": 2,
    "optim_factory": 2,
    "data": 3,
    "heads": 3,
    "deploy": 4,
    "eval": 5,
    "train": 6,
    "bench": 7,
    "cli": 8,
}


def module_name(path: Path, root: Path) -> str:
    """``root/facescale/data/loader.py`` -> ``facescale.data.loader`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _dynamic_prefix(node: ast.Call) -> str | None:
    """The literal start of ``importlib.import_module("..." or f"...{x}")``, else None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in its source, for the package at ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                # ``from facescale import atomic`` imports the module facescale.atomic.
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Call) and (prefix := _dynamic_prefix(node)) is not None:
                targets = [
                    m for m in files if m.startswith(prefix) and not m.rsplit(".", 1)[-1].startswith("_")
                ]
            graph[mod].update(t for t in targets if t in files and t != mod)
    return graph


def layer(module: str) -> str | None:
    """The top-level name under the package (``facescale.data.loader`` -> ``data``); None for the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b (data 3 -> deploy 4)"`` for each import of a higher layer."""
    found = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            la, lb = layer(a), layer(b)
            if la is None or lb is None:
                continue
            if LAYER_RANK[lb] > LAYER_RANK[la]:
                found.append(f"{a} -> {b} ({la} {LAYER_RANK[la]} -> {lb} {LAYER_RANK[lb]})")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import each other round a loop (strongly connected, size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    # Iterative Tarjan: the graph is small, but recursion depth should not depend on it.
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_every_top_level_name_has_a_layer(graph: dict[str, set[str]]) -> None:
    unranked = sorted({name for m in graph if (name := layer(m)) is not None and name not in LAYER_RANK})
    assert not unranked, f"give these a rank in LAYER_RANK (tests/test_layers.py): {unranked}"


def test_no_module_imports_a_higher_layer(graph: dict[str, set[str]]) -> None:
    found = upward_imports(graph)
    assert not found, "imports that run up the layers:\n" + "\n".join(found)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "facescale" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "facescale"


def test_checks_catch_an_upward_import_a_cycle_and_a_dynamic_loop(tmp_path: Path) -> None:
    # The same faults this package once had, in miniature: each check must see them.
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "",
            "data/loader.py": "def build():\n    from facescale.data.dali import Dali\n",
            "data/dali.py": "from .loader import build\n",
            "data/render.py": "from facescale.deploy.alignment import align\n",
            "deploy/__init__.py": "",
            "deploy/alignment.py": "from facescale import errors\n",
            "errors.py": "",
            "cli/__init__.py": "",
            "cli/_helper.py": "",
            "cli/main.py": "import importlib\nimportlib.import_module(f'facescale.cli.{name}')\n",
            "cli/bench.py": "def f():\n    from facescale.cli.main import g\n",
        },
    )
    graph = import_graph(package)
    assert graph["facescale.deploy.alignment"] == {"facescale", "facescale.errors"}
    assert graph["facescale.cli.main"] == {"facescale.cli.bench"}  # not itself, not _helper
    assert upward_imports(graph) == [
        "facescale.data.render -> facescale.deploy.alignment (data 3 -> deploy 4)"
    ]
    assert import_cycles(graph) == [
        ["facescale.cli.bench", "facescale.cli.main"],
        ["facescale.data.dali", "facescale.data.loader"],
    ]
