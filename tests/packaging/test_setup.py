"""The test setup keeps its promise: `.ci/run` runs the README's test command, that command installs every tool the
tests use, a missing tool fails a test, and a test skips only for want of a CUDA GPU."""
from __future__ import annotations

import ast
import re

import pytest

from tests.support.tools import REPO_ROOT, require

CUDA_ONLY = "CUDA GPU"  # the one reason a skip may give
LOAD_BY_PATH = ("spec_from_file_location", "run_path", "SourceFileLoader")  # how a test would import a script


def readme_test_command() -> str:
    """The command in the README's code block after "Run every test"."""
    text = (REPO_ROOT / "README.md").read_text()
    m = re.search(r"Run every test[^\n]*\n+```bash\n(.+?)\n```", text)
    assert m, "README has no 'Run every test' code block"
    return m.group(1).strip()


def test_ci_run_runs_exactly_the_readme_test_command() -> None:
    cmd = readme_test_command()
    lines = [ln.strip() for ln in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert cmd in lines, f".ci/run does not run the README's test command {cmd!r}"


def test_the_test_command_installs_every_tool_and_fails_on_any_step() -> None:
    script = (REPO_ROOT / ".ci" / "install.sh").read_text()
    assert readme_test_command() == "bash .ci/install.sh && python3 -m pytest"  # pytest only after every install step
    assert "set -euo pipefail" in script and "|| " not in script  # no step's failure is waved through
    for step in ('pip install --quiet -e ".[test]"', "bash .ci/llama-cpp.sh", "bash .ci/recipe-validators.sh"):
        assert step in script, step


def test_a_missing_tool_fails_the_test() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"dshub_no_such_tool is not installed .*bash \.ci/install\.sh"):
        require("dshub_no_such_tool")


def _skips(tree: ast.AST) -> list[tuple[int, str, str | None]]:
    """(line, call, reason) of every skip-like call: pytest.skip / importorskip / mark.skip / mark.skipif / xfail."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in ("skip", "skipif", "importorskip", "xfail"):
                texts = [a.value for a in [*node.args, *(k.value for k in node.keywords if k.arg in ("reason", "msg"))]
                         if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                found.append((node.lineno, name, " ".join(texts) or None))
    return found


def test_tests_skip_only_for_a_cuda_gpu() -> None:
    bad = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        if path.name == "test_setup.py":
            continue  # this file names the calls it looks for
        for line, call, reason in _skips(ast.parse(path.read_text())):
            if call in ("importorskip", "xfail") or reason is None or CUDA_ONLY not in reason:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line}: {call}({reason!r})")
    assert not bad, "skips for a reason other than a missing CUDA GPU (a missing tool must fail):\n" + "\n".join(bad)


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every import (`from m import n` gives m and m.n) and every call that loads a file by path."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            out += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in LOAD_BY_PATH:
            out.append((node.lineno, f"{ast.unparse(node.func)}(...): loads a file as a module"))
    return out


def test_no_test_imports_another_test_module_or_a_bench_script() -> None:
    """Shared code lives in tests.support; benchmarks are scripts, run (not imported) where a test checks them."""
    bad = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        for line, name in _imported_names(ast.parse(path.read_text())):
            last = name.rsplit(".", 1)[-1]
            if last.startswith("test_") or name.split(".")[0] == "bench" or name.endswith("loads a file as a module"):
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line}: {name}")
    assert not bad, "\n".join(bad)
