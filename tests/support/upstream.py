"""llama.cpp's own converter, run as a child process: convert_hf_to_gguf.py from the llama-cpp-python sdist.

Its tokenizer check hashes the encoding of a fixed text and knows only published tokenizers; ours is synthetic, so the
child answers "deepseek-v3" for it (what the pre-tokenizer definition says). Everything else runs as upstream wrote it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONVERT_HF_TO_GGUF = """
import runpy, sys
vendor, src, out, outtype = sys.argv[1:5]
sys.path[:0] = [vendor, vendor + "/gguf-py"]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-v3"
sys.argv = ["convert_hf_to_gguf.py", src, "--outtype", outtype, "--outfile", out]
runpy.run_path(vendor + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def convert_hf_to_gguf(vendor: Path, src: Path, out: Path, outtype: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run upstream's converter on checkpoint `src`, writing `out` as `outtype` (q8_0, f16, bf16, ...)."""
    env = {**os.environ, "NO_LOCAL_GGUF": "1"}  # its gguf-py, not the installed one
    return subprocess.run([sys.executable, "-c", CONVERT_HF_TO_GGUF, str(vendor), str(src), str(out), outtype],
                          capture_output=True, text=True, env=env, timeout=timeout)


def assert_same_tensors(ours: Path, ref: Path) -> dict:
    """Both GGUF files hold the same tensors: names, types, shapes and bytes. Returns the reference's tensors."""
    import gguf
    import numpy as np

    t_ours = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    t_ref = {t.name: t for t in gguf.GGUFReader(ref).tensors}
    assert set(t_ours) == set(t_ref)
    for name, t in t_ref.items():
        o = t_ours[name]
        assert (o.tensor_type, list(o.shape)) == (t.tensor_type, list(t.shape)), name
        assert np.array_equal(np.asarray(o.data).view(np.uint8), np.asarray(t.data).view(np.uint8)), name
    return t_ref
