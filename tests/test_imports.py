"""No import circles in charlm: no module imports one that imports it back, through any chain.

Every import statement counts: module-level, inside functions, under `if TYPE_CHECKING:`,
absolute and relative. `from charlm.a import b` imports the submodule charlm.a.b when there is
one, else the module charlm.a; a package's __init__ is a node of its own (charlm.a).
"""

from __future__ import annotations

import ast
from pathlib import Path

import charlm

PACKAGE_DIR = Path(charlm.__file__).parent


def module_files(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under package_dir."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join([package, *parts])] = path
    return files


def imported_modules(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that the source of `module` imports, wherever the import is."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_nearest_module(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(node, module, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else _nearest_module(base, known))
    found.discard(None)
    return found


def _absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` names (a relative X is resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _nearest_module(name: str, known: set[str]) -> str | None:
    """name, or its longest prefix that is a known module (None outside the package)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    files = module_files(package_dir, package)
    known = set(files)
    return {name: imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle (two or more modules, or a module
    importing itself), each sorted; Tarjan's algorithm without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            following = next(successors, None)
            if following is not None:
                if following not in index:
                    index[following] = low[following] = len(index)
                    stack.append(following)
                    on_stack.add(following)
                    work.append((following, iter(sorted(graph.get(following, ())))))
                elif following in on_stack:
                    low[node] = min(low[node], index[following])
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
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


# --- the checker itself --------------------------------------------------------------------


KNOWN = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}


def test_every_kind_of_import_is_seen():
    source = """
import os
import pkg.sub.b
from pkg import a
from pkg.sub.b import some_function
from . import c
from .. import a as again
from ..sub import c as also
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from pkg.a import Thing
def late():
    import pkg.sub
"""
    assert imported_modules(source, "pkg.sub.b", False, KNOWN) == {"pkg.sub.b", "pkg.a", "pkg.sub.c", "pkg.sub"}
    # in a package's __init__, "." is the package itself
    assert imported_modules("from . import b\nfrom .c import x", "pkg.sub", True, KNOWN) == {
        "pkg.sub.b", "pkg.sub.c"}


def test_cycles_finds_every_circle_and_only_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"f"}, "g": {"d"}}
    assert cycles(graph) == [["a", "b", "c"], ["f"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# --- charlm ---------------------------------------------------------------------------------


def test_the_graph_covers_charlm():
    graph = import_graph(PACKAGE_DIR, "charlm")
    assert "charlm.train.trainer" in graph and "charlm" in graph
    assert "charlm.train.evaluate" in graph["charlm.train.trainer"]


def test_charlm_has_no_import_cycles():
    found = cycles(import_graph(PACKAGE_DIR, "charlm"))
    assert not found, "modules that import each other, through some chain:\n" + "\n".join(
        " <-> ".join(component) for component in found)
