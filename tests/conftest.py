"""Shared fixtures: isolated HF caches, synthetic checkpoints written once per session, a CLI runner."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

# Triton's CPU interpreter must be chosen before anything imports triton (compressed-tensors does, at import):
# without a GPU the Triton kernel tests run in it. `--device auto` never picks it (see quant/device.py).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~20 s (CI runs it)")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny block-FP8 DeepSeek-V3 checkpoint (read-only: copy it before corrupting)."""
    from dshub.checkpoint.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth") / "tiny"
    write_synthetic(out, "tiny", seed=0)
    return out


@pytest.fixture
def tiny_copy(tiny_ckpt: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_bf16(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BF16 conversion of `tiny_ckpt`."""
    from dshub.converters import ConversionOptions, run_conversion

    out = tmp_path_factory.mktemp("bf16") / "tiny-bf16"
    run_conversion(tiny_ckpt, ConversionOptions("bf16", out))
    return out


@pytest.fixture
def cli():
    """Invoke the dshub CLI in-process; returns the click Result."""
    from dshub.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke
