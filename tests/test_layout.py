"""The layout shows the architecture (shared/DESIGN.md, "Layers" and "Rooms inside diamond/"): the import graph of
the whole project has no circle, every import points down the layers, and `diamond/` keeps a few rooms at its top.

Every import counts, also one inside a function and a module named in a string (`importlib.import_module("x")`,
`"pkg.module:function"` entry points): a lazy import still ties two modules together. A name only compared
with (`spec.entry == "ablations.static_wm:run"`) is not an import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diamond", "evaluation", "reports", "ablations", "slurm")
# Layers from the bottom: a module may import its own layer and the layers below, never one above.
LAYERS = ("diamond.run", "diamond.models", "diamond.loop", "diamond", "evaluation", "slurm", "reports",
          "ablations", "run_suite")
_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$")


def modules() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its __init__)."""
    out = {"run_suite": ROOT / "run_suite.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module `name` means: itself, or (for `from pkg import attr`) its longest known prefix."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `module` imports anywhere in its file, or names in a string constant."""
    tree, found, named = ast.parse(path.read_text(), str(path)), set(), set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    compared = {id(c) for n in ast.walk(tree) if isinstance(n, ast.Compare) for c in ast.walk(n)}  # a name, no import
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.match(node.value) \
                and id(node) not in compared:
            named.add(node.value.partition(":")[0])  # a string counts only when it names a module exactly
    resolved = {_resolve(n, known) for n in found if n.split(".")[0] in (*PACKAGES, "run_suite")}
    return {m for m in resolved | (named & set(known)) if m and m != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    """The index in LAYERS of the longest layer name that `module` starts with."""
    matches = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    return max(matches, key=lambda i: len(LAYERS[i]))


def test_the_import_graph_has_no_circle() -> None:
    assert cycles(graph()) == []


def test_cycles_finds_a_circle_through_a_lazy_import(tmp_path: Path) -> None:
    """The check can fail: the config ↔ registry circle of before the split, made of one lazy import."""
    edges = {"a.config": {"a.errors"}, "a.registry": {"a.config"}, "a.errors": set()}
    assert cycles(edges) == []
    edges["a.config"].add("a.registry")
    assert cycles(edges) == [["a.config", "a.registry"]]
    source = tmp_path / "config.py"
    source.write_text("def check(spec):\n    import importlib\n"
                      "    return importlib.import_module('diamond.loop.envs')\n")
    assert imports("diamond.loop.config", source, modules()) == {"diamond.loop.envs"}


def test_imports_point_down_the_layers() -> None:
    upward = sorted(f"{m} -> {n}" for m, targets in graph().items() for n in targets if layer(n) > layer(m))
    assert upward == []


@pytest.mark.parametrize("room", ["run", "models", "loop"])
def test_each_room_says_what_it_holds(room: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "diamond" / room / "__init__.py").read_text()))
    assert doc and len(doc.split()) > 30


def test_diamond_has_a_few_entries_at_its_top() -> None:
    entries = sorted(p.name for p in (ROOT / "diamond").iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", "bench", "evaluate.py", "loop", "models", "play", "run", "train.py"]
