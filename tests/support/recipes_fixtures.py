"""Fixtures shared by the recipes tests (re-exported by tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_gguf(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint converted by dshub's own GGUF converter (Q8_0): a real single-file GGUF."""
    from typer.testing import CliRunner

    from dshub.cli import app

    out = tmp_path_factory.mktemp("gguf")
    r = CliRunner().invoke(app, ["convert", str(tiny_ckpt), "--to", "gguf", "--quant", "Q8_0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return next(out.glob("*.gguf"))
