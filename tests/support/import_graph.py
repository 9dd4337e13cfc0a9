"""The project's import graph, read from the source with `ast` (nothing is imported).

Modules are named as the wheel installs them: pyproject's `package-dir` maps each folder to its import name
(`converters/x.py` -> `dshub.converters.x`). Every import counts, wherever it stands: module level, inside a function,
under `if TYPE_CHECKING:`, and `importlib.import_module("literal")` (or a table of dotted module names beside a
computed `import_module`). `import a.b.c` is an edge to `a.b.c` only; `from p import n` is an edge to `p.n` when that
is a module, else to `p`.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `path:line`."""

    source: str
    target: str
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def setuptools_config(root: Path = REPO_ROOT) -> dict:
    """pyproject's [tool.setuptools] table."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_dirs(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Import name -> folder, from pyproject's [tool.setuptools] package-dir."""
    return {name: root / folder for name, folder in setuptools_config(root)["package-dir"].items()}


def module_files(dirs: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file for every .py under the mapped folders (a package is named by its __init__.py)."""
    out: dict[str, Path] = {}
    for name, folder in sorted(dirs.items(), key=lambda kv: len(kv[0])):
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            if "__pycache__" in rel:
                continue
            out[".".join((name, *rel))] = path  # longer mappings come later and win (dshub/converters vs converters/)
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_targets(tree: ast.AST, known: set[str]) -> list[tuple[str, int]]:
    """import_module/__import__ calls: a literal argument; for a computed one, every dotted literal in the file that
    names a module (a lazy-export table such as `{"convert": "dshub.api"}`)."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        getattr(n.func, "attr", None) == "import_module" or getattr(n.func, "id", None) in ("import_module", "__import__"))]
    found = []
    for call in calls:
        arg = call.args[0] if call.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append((arg.value, call.lineno))
        else:
            found += [(c.value, c.lineno) for c in ast.walk(tree)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str) and "." in c.value and c.value in known]
    return found


def imports_of(module: str, path: Path, known: set[str]) -> list[Edge]:
    """Every import in `path` that names one of the `known` modules (self-imports dropped)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    raw: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            raw += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                raw.append((sub if sub in known else base, node.lineno))
    raw += _dynamic_targets(tree, known)
    edges = {Edge(module, target, rel, line) for target, line in raw if target in known and target != module}
    return sorted(edges, key=lambda e: (e.line, e.target))


def import_graph(root: Path = REPO_ROOT) -> dict[str, list[Edge]]:
    """Module -> its edges to other project modules."""
    files = module_files(package_dirs(root))
    known = set(files)
    return {m: imports_of(m, p, known) for m, p in sorted(files.items())}


def strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module, each sorted, in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for edge in edges:
                nxt = edge.target
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, []))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))
    return sorted(components)


def cycle_in(component: list[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """One shortest cycle through the component's first module (breadth-first inside the component)."""
    members, start = set(component), component[0]
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in members:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if edge.target not in came:
                    came[edge.target] = edge
                    nxt_frontier.append(edge.target)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start} in {component}")  # cannot happen for a Tarjan component
