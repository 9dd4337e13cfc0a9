"""bench/kernels.py stays runnable without a GPU: its --smoke mode runs every registered kernel in the
Triton interpreter, checks each against its torch reference, and prints the table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_kernel_bench_smoke_run_is_bit_exact():
    pytest.importorskip("triton")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "kernels.py"), "--smoke", "--no-convert", "--json"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    ran = [k for k in doc["kernels"] if k["status"] != "no kernel"]
    assert {k["codec"] for k in ran} >= {"fp8_block_dequant_bf16", "mxfp4_dequant_bf16", "int4_quantize_fp8", "gguf_Q8_0"}
    assert all(k["status"] == "bit-exact" and k["mbytes"] > 0 for k in ran), ran
