"""Shared fixtures: isolated HF caches, synthetic checkpoints written once per session, a CLI runner; the fake hub,
the Ray cluster and the recipes' GGUF (from tests/support) are re-exported here so every test module can ask for them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.support.fakehub import hub, repo_files  # noqa: F401  (fixtures)
from tests.support.ray_cluster import cluster  # noqa: F401  (fixture)
from tests.support.recipes_fixtures import tiny_gguf  # noqa: F401  (fixture)
from tests.support.tools import require_triton_kernels

# Triton's CPU interpreter must be chosen before anything imports triton (compressed-tensors does, at import):
# without a GPU the Triton kernel tests run in it. `--device auto` never picks it (see quant/device.py).
# Importing triton now (prepare_interpreter does, when it is installed) fixes that choice for the whole session, whatever
# a test later does to the environment; the `triton_kernels` fixture fails the tests that need kernels if it cannot.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from dshub.quant.triton.parity import prepare_interpreter  # noqa: E402  (only once TRITON_INTERPRET is set)

prepare_interpreter()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~20 s (CI runs it)")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def _synth(factory: pytest.TempPathFactory, name: str, preset: str) -> Path:
    from dshub.checkpoint.synth import write_synthetic

    out = factory.mktemp("synth") / name
    write_synthetic(out, preset, seed=0)
    return out


def _bf16(src: Path, factory: pytest.TempPathFactory) -> Path:
    from dshub.converters import build_options, run_conversion

    out = factory.mktemp("bf16") / f"{src.name}-bf16"
    run_conversion(src, build_options("bf16", out=out))
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny block-FP8 DeepSeek-V3 checkpoint (read-only: copy it before corrupting)."""
    return _synth(tmp_path_factory, "tiny", "tiny")


@pytest.fixture
def tiny_copy(tiny_ckpt: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_bf16(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BF16 conversion of `tiny_ckpt`."""
    return _bf16(tiny_ckpt, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_v32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny block-FP8 DeepSeek-V3.2 checkpoint (preset tiny-v32: the lightning indexer in every layer; read-only)."""
    return _synth(tmp_path_factory, "DeepSeek-V3.2-tiny", "tiny-v32")


@pytest.fixture(scope="session")
def tiny_v32_bf16(tiny_v32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BF16 conversion of `tiny_v32`."""
    return _bf16(tiny_v32, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_v4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DeepSeek-V4 checkpoint (original names, MXFP4 experts, e8m0 scales); read-only."""
    from dshub.checkpoint.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth") / "tiny-v4"
    write_synthetic(out, "tiny-v4", seed=0)
    return out


@pytest.fixture
def tiny_v4_copy(tiny_v4: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny V4 checkpoint that a test may damage."""
    dst = tmp_path / "v4"
    shutil.copytree(tiny_v4, dst)
    return dst


@pytest.fixture
def cli():
    """Invoke the dshub CLI in-process; returns the click Result."""
    from dshub.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def triton_kernels() -> None:
    """Fails the test when the Triton kernels cannot run here (neither a GPU nor Triton's CPU interpreter)."""
    require_triton_kernels()
