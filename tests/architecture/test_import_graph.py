"""The package's shape, checked: imports point one way, nothing imports in a circle, and no module reaches into
another module's private (underscore) names.

The layers, lowest first (a module may import its own layer and those below, never above):

    core  <  io  <  preprocess, augment, metrics, measure  <  classical
          <  models, plans, train, infer, explain, report, zoo  <  tasks  <  pipelines  <  api
          <  testing  <  cli, serve

Within a layer, packages may import one another only without a cycle. Imports are read from the source (also those
inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import medimg

ROOT = Path(medimg.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("", "core"),
    ("io",),
    ("preprocess", "augment", "metrics", "measure"),
    ("classical",),
    ("models", "plans", "train", "infer", "explain", "report", "zoo"),
    ("tasks",),
    ("pipelines",),
    ("api",),
    ("testing",),
    ("cli", "serve", "__main__"),
]
LAYER_OF = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}


def _module_name(path: Path) -> str:
    parts = ("medimg", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, list[tuple[str, tuple[str, ...], int]]]:
    """module -> [(imported module, names imported from it, line)]."""
    out: dict[str, list[tuple[str, tuple[str, ...], int]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        mod = _module_name(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "medimg" or target.startswith("medimg."):
                    found.append((target, tuple(a.name for a in node.names), node.lineno))
            elif isinstance(node, ast.Import):
                found += [(a.name, (), node.lineno) for a in node.names if a.name.startswith("medimg")]
        out[mod] = found
    return out


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _resolve(target: str, names: tuple[str, ...], modules: set[str]) -> list[str]:
    """The modules an import statement reaches: ``from pkg import mod`` reaches ``pkg.mod`` when that is a module."""
    reached = [target] if target in modules else []
    for n in names:
        if f"{target}.{n}" in modules:
            reached.append(f"{target}.{n}")
    if not reached:  # ``import medimg.x.y`` of a name that is not a module: its package
        parent = target
        while parent and parent not in modules:
            parent = parent.rpartition(".")[0]
        reached = [parent] if parent else []
    return reached


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _imports()}
    assert not sorted(packages - set(LAYER_OF)), "add new packages to LAYERS (and to ARCHITECTURE.md)"


def test_no_upward_imports():
    bad = []
    for mod, imports in _imports().items():
        src = _package(mod)
        for target, _names, line in imports:
            dst = _package(target)
            if LAYER_OF[dst] > LAYER_OF[src]:
                bad.append(f"{mod}:{line} imports {target} ({src} is below {dst})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    imports = _imports()
    modules = set(imports)
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, found in imports.items():
        for target, names, _line in found:
            for dst in _resolve(target, names, modules):
                # a package's __init__ importing its modules is an edge too: a module that imports its own
                # package's __init__ closes a cycle through it
                if dst != mod:
                    graph[mod].add(dst)
    assert not _cycles(graph), "import cycles:\n" + "\n".join(" <-> ".join(c) for c in _cycles(graph))


def test_no_import_cycles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, found in _imports().items():
        for target, _names, _line in found:
            if _package(target) != _package(mod):
                graph[_package(mod)].add(_package(target))
    assert not _cycles(graph), "package cycles: " + "; ".join(" <-> ".join(c) for c in _cycles(graph))


def test_no_private_names_cross_modules():
    """``from medimg.x import _helper`` (or a private module of another package) is refused: shared helpers are
    public, in the module that owns them (or in ``core``)."""
    bad = []
    for mod, found in _imports().items():
        for target, names, line in found:
            private_module = [p for p in target.split(".")[1:] if p.startswith("_") and not p.startswith("__")]
            if private_module and _package(target) != _package(mod):
                bad.append(f"{mod}:{line} imports the private module {target}")
            bad += [f"{mod}:{line} imports {target}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__") and target != mod]
    assert not bad, f"{len(bad)} private imports across modules:\n" + "\n".join(bad)


def test_no_command_module_imports_another():
    """``cli/cmd_*.py`` parse, call the library and print: what two commands share lives in the library (or in the
    ``cli/_*.py`` parsing helpers), never in another command."""
    bad = []
    for mod, found in _imports().items():
        if not mod.startswith("medimg.cli.cmd_"):
            continue
        for target, names, line in found:
            reached = [target] + [f"{target}.{n}" for n in names]
            bad += [f"{mod}:{line} imports {r}" for r in reached if r.startswith("medimg.cli.cmd_") and r != mod]
    assert not bad, "command modules importing each other:\n" + "\n".join(bad)
