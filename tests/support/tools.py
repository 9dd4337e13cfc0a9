"""The tools the suite needs, found or failed for: `bash .ci/install.sh` installs every one of them, so a missing tool
is a broken setup and fails the test that needs it, with the command that fixes it. Nothing here skips."""
from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP = "`bash .ci/install.sh` installs every tool the tests use"
HOW: dict[str, str] = {
    "llama_cpp": "llama-cpp-python, built by .ci/llama-cpp.sh",
}


def missing(what: str, how: str) -> NoReturn:
    """Fail the current test (or the collection of its module) because `what` is not installed."""
    pytest.fail(f"{what} is not installed ({how}); {SETUP}", pytrace=False)


def require(module: str) -> ModuleType:
    """Import `module`, or fail saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(module, HOW.get(module, "from pyproject's [test] extra"))


def require_executable(name: str) -> str:
    """The path of executable `name` on PATH, or fail."""
    path = shutil.which(name)
    if path is None:
        missing(f"the `{name}` executable", "a system package")
    return path


def llama_cpp_cache() -> Path:
    """Where .ci/llama-cpp.sh keeps the llama-cpp-python sdist, its unpacked source and the built wheel."""
    return Path(os.environ.get("DSHUB_LLAMA_CACHE", Path.home() / ".cache" / "dshub" / "llama-cpp"))


def llama_cpp_vendor() -> Path:
    """vendor/llama.cpp of the unpacked llama-cpp-python sdist (convert_hf_to_gguf.py, gguf-py, conversion/)."""
    cache = llama_cpp_cache()
    found = sorted(cache.glob("src/llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not found:
        missing(f"llama.cpp's convert_hf_to_gguf.py (looked under {cache}/src)", ".ci/llama-cpp.sh unpacks it")
    return found[-1].parent


def require_validator_venv() -> Path:
    """The engine-parser venv of .ci/recipe-validators.sh, or fail."""
    from dshub.recipes.validate import validator_venv

    venv = validator_venv()
    if venv is None:
        missing("the recipe validator venv ($DSHUB_VALIDATORS or ~/.cache/dshub/recipe-validators)",
                "built by .ci/recipe-validators.sh")
    return venv


def require_triton_kernels() -> None:
    """Triton kernels can run here: on the GPU, or in Triton's CPU interpreter (set up by conftest.py)."""
    from dshub.quant.triton.parity import prepare_interpreter

    reason = prepare_interpreter()
    if reason:
        pytest.fail(f"the Triton kernels cannot run here: {reason}; {SETUP}", pytrace=False)
