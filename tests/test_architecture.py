"""The dependency rule of ARCHITECTURE.md, checked on the source: no import cycle, and each module imports only from
its own layer or below. Imports inside functions and under `if TYPE_CHECKING:` count; nothing is exempt."""
from __future__ import annotations

from pathlib import Path

from tests.support.import_graph import Edge, cycle_in, import_graph, strongly_connected

# Lowest first. A name covers the module and everything under it, except "dshub", which is the package's __init__ only.
LAYERS: dict[str, int] = {
    "dshub.quant": 0,
    "dshub.errors": 1, "dshub.constants": 1, "dshub.fsutil": 1, "dshub.raycluster": 1,
    "dshub.formats": 2, "dshub.arch": 2, "dshub.checkpoint": 2,
    "dshub.hub": 3, "dshub.checks": 3,
    "dshub.converters": 4,
    "dshub.recipes": 5, "dshub.summary": 5,
    "dshub.pipeline": 6, "dshub.api": 6, "dshub.cli": 6, "dshub": 6,
}


def layer_of(module: str) -> int | None:
    """The layer of the longest table name that covers `module`; None when none does."""
    if module == "dshub":
        return LAYERS["dshub"]
    names = [n for n in LAYERS if n != "dshub" and (module == n or module.startswith(n + "."))]
    return LAYERS[max(names, key=len)] if names else None


def format_cycle(cycle: list[Edge]) -> str:
    return " -> ".join([cycle[0].source] + [f"{e.target} [{e.where()}]" for e in cycle])


def test_no_import_cycle() -> None:
    graph = import_graph()
    components = strongly_connected(graph)
    report = [f"cycle among {', '.join(c)}:\n    {format_cycle(cycle_in(c, graph))}" for c in components]
    assert not report, f"{len(report)} import cycle(s):\n" + "\n".join(report)


def test_every_module_has_a_layer() -> None:
    missing = [m for m in import_graph() if layer_of(m) is None]
    assert not missing, f"modules outside the LAYERS table (add them to it): {missing}"


def test_imports_point_down_the_layers() -> None:
    violations = []
    for module, edges in import_graph().items():
        a = layer_of(module)
        for e in edges:
            b = layer_of(e.target)
            if a is not None and b is not None and b > a:
                violations.append(f"{module} -> {e.target} (layer {a} -> layer {b})  at {e.where()}")
    assert not violations, f"{len(violations)} import(s) against the dependency rule:\n" + "\n".join(violations)



# ----------------------------------------------------------------------------------- the reader itself, on a toy tree
def _toy(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "pkg" = "pkg", "pkg.ext" = "ext" }\n')
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    root = _toy(tmp_path, {
        "pkg/__init__.py": "import importlib\ndef f():\n    return importlib.import_module('pkg.lazy')\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import Thing\n",
        "pkg/b.py": "def g():\n    from . import c\n",
        "pkg/c.py": "from .sub import d\nimport pkg.sub.e\n",
        "pkg/lazy.py": "", "pkg/table.py": "import importlib\nT = {'x': 'pkg.lazy'}\nNAME = 'pkg'\n"
                                           "def f(n):\n    return importlib.import_module(T[n])\n",
        "pkg/sub/__init__.py": "from .. import a\nfrom pkg.ext import name_in_init\n",
        "pkg/sub/d.py": "", "pkg/sub/e.py": "",
        "ext/__init__.py": "", "ext/x.py": "from pkg.ext import x\n",  # a self-import is no edge
    })
    graph = {m: sorted(e.target for e in edges) for m, edges in import_graph(root).items()}
    assert graph == {
        "pkg": ["pkg.lazy"], "pkg.a": ["pkg.b"], "pkg.b": ["pkg.c"], "pkg.c": ["pkg.sub.d", "pkg.sub.e"],
        "pkg.lazy": [], "pkg.table": ["pkg.lazy"], "pkg.sub": ["pkg.a", "pkg.ext"], "pkg.sub.d": [], "pkg.sub.e": [],
        "pkg.ext": [], "pkg.ext.x": [],
    }


def test_tarjan_finds_each_cycle_and_a_path_through_it(tmp_path: Path) -> None:
    root = _toy(tmp_path, {
        "pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n", "pkg/b.py": "def f():\n    import pkg.c\n",
        "pkg/c.py": "from pkg import a\n", "pkg/d.py": "import pkg.e\n", "pkg/e.py": "import pkg.d\nimport pkg.a\n",
        "ext/__init__.py": "",
    })
    graph = import_graph(root)
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"]]
    assert [e.target for e in cycle_in(["pkg.a", "pkg.b", "pkg.c"], graph)] == ["pkg.b", "pkg.c", "pkg.a"]
    assert cycle_in(["pkg.a", "pkg.b", "pkg.c"], graph)[1].line == 2  # the function-level import, with its line


def test_layer_table_lookup() -> None:
    assert layer_of("dshub") == 6 and layer_of("dshub.quant.gguf.types") == 0
    assert layer_of("dshub.converters.gguf.policy") == 4 and layer_of("dshub.constants") == 1
    assert layer_of("dshub.constantsx") is None and layer_of("dshub.new_thing") is None
