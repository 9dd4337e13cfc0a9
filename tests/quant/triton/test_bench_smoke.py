"""bench/kernels.py stays runnable without a GPU: its --smoke mode runs every registered kernel in the
Triton interpreter, checks each against its torch reference, and prints the table."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.tools import REPO_ROOT

ROOT = REPO_ROOT


@pytest.mark.slow
def test_kernel_bench_smoke_run_is_bit_exact():
    import triton  # noqa: F401  (the [test] extra installs it)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "kernels.py"), "--smoke", "--no-convert", "--json"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    ran = [k for k in doc["kernels"] if k["status"] != "no kernel"]
    assert {k["codec"] for k in ran} >= {"fp8_block_dequant_bf16", "mxfp4_dequant_bf16", "int4_quantize_fp8", "gguf_Q8_0"}
    assert all(k["status"] == "bit-exact" and k["mbytes"] > 0 for k in ran), ran
