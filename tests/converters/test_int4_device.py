"""`--to int4 --device cuda` (Triton kernels; Triton's CPU interpreter when there is no GPU) writes the same bytes
as the torch CPU path. Runs the CLI in a subprocess so TRITON_INTERPRET is set before triton is imported."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import triton  # noqa: F401  (the [test] extra installs it; the kernels need it)

from dshub.checkpoint.synth import write_synthetic
from tests.support.tools import REPO_ROOT


@pytest.mark.slow
def test_triton_path_is_byte_identical_with_cpu(tmp_path):
    src = tmp_path / "tiny"
    write_synthetic(src, "tiny", seed=2)
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / device
        args = [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "int4", "--out", str(outs[device]),
                "--device", device, "--format", "awq", "--asymmetric", "--group-size", "64", "--json"]
        r = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f'"device": "{device}"' in r.stdout
    files = sorted(p.name for p in outs["cpu"].iterdir() if p.suffix in (".safetensors", ".json") and p.name != "dshub-manifest.json")
    assert any(f.endswith(".safetensors") for f in files)
    for name in files:
        assert (outs["cpu"] / name).read_bytes() == (outs["cuda"] / name).read_bytes(), name
