"""The import graph of this repository's Python, and its cycles.

``python tests/importgraph.py`` prints every import cycle among the
project's modules (:data:`OURS`) and exits 1 if
there is one; ``tests/test_layout.py`` runs the same check.  Imports inside
functions count: a deferred import hides a circle, it does not remove it.
The graph is read from the source (:mod:`ast`), nothing is imported.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Import roots: where the venv and DaCHS find our top-level names.
ROOTS = (REPO, REPO / "resdir" / "res")
#: Our top-level packages and modules.
OURS = ("ml", "harps_synth", "harps_data", "harps_service", "harps_site")


def modules() -> dict[str, Path]:
    """Dotted name -> source file of every module of ours."""
    found: dict[str, Path] = {}
    for root in ROOTS:
        for top in OURS:
            single = root / f"{top}.py"
            if single.is_file():
                found[top] = single
            pkg = root / top
            if not (pkg / "__init__.py").is_file():
                continue
            for path in sorted(pkg.rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                found[name] = path
    return found


def _imported(node: ast.AST, module: str, is_pkg: bool) -> Iterator[str]:
    """Dotted names an import statement refers to (modules or their members)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = module.split(".")
            parent = parent if is_pkg else parent[:-1]
            parent = parent[:len(parent) - node.level + 1]
            base = ".".join([*parent, base] if base else parent)
        for alias in node.names:
            yield f"{base}.{alias.name}"


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (anywhere in its source)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            for target in _imported(node, name, is_pkg):
                # "from pkg import mod" names a module; "from mod import f" its module
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    found = cycles(graph())
    for component in found:
        print("import cycle:", " <-> ".join(component))
    if not found:
        print(f"no import cycles among {len(modules())} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
