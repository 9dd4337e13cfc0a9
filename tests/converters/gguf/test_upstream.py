"""Against llama.cpp's own converter: convert_hf_to_gguf.py (from the llama-cpp-python sdist that .ci/llama-cpp.sh
unpacks) turns the same FP8 checkpoint into a GGUF whose tensors are byte-identical to ours and whose metadata agrees.

Its tokenizer check hashes the encoding of a fixed text and only knows published tokenizers; our synthetic one is
not among them, so the child process answers "deepseek-v3" for it (what the pre-tokenizer definition says).
"""
from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from dshub.converters import build_options, run_conversion
from tests.support.tools import llama_cpp_vendor
from tests.support.upstream import assert_same_tensors, convert_hf_to_gguf

pytestmark = pytest.mark.slow


# Keys only upstream writes (derived from the directory name or model card, or defaults we leave out).
UPSTREAM_ONLY = {"tokenizer.ggml.add_sep_token", "GGUF.kv_count"}


@pytest.mark.parametrize("quant", ["Q8_0", "F16"])
def test_same_bytes_as_convert_hf_to_gguf(tiny_ckpt: Path, tmp_path: Path, quant: str) -> None:
    vendor = llama_cpp_vendor()
    ref_path = tmp_path / "ref.gguf"
    proc = convert_hf_to_gguf(vendor, tiny_ckpt, ref_path, quant.lower())
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "ours", **{"quant": quant}), progress=False).to_dict()
    assert_same_tensors(tmp_path / "ours" / doc["files"][0]["name"], ref_path)
    ours, ref = gguf.GGUFReader(tmp_path / "ours" / doc["files"][0]["name"]), gguf.GGUFReader(ref_path)
    kv_ours = {k: f.contents() for k, f in ours.fields.items()}
    kv_ref = {k: f.contents() for k, f in ref.fields.items() if k not in UPSTREAM_ONLY}
    assert str(kv_ref.pop("general.name")).lower() == kv_ours.pop("general.name")
    missing = {k: v for k, v in kv_ref.items() if k not in kv_ours}
    assert not missing
    differ = {k: (kv_ours[k], v) for k, v in kv_ref.items() if kv_ours[k] != v and not (
        isinstance(v, float) and kv_ours[k] == pytest.approx(v))}
    assert not differ
