"""Bad DeepSeek-V4 inputs: verify reports each with the file and the tensor, and convert refuses it (exit 1, one line
naming both, nothing written that looks complete)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from dshub.checks import verify
from tests.support.ckpt_edit import INDEX, edit_json, read_shard, shard_of, write_shard

EXPERT = "layers.2.ffn.experts.3.w2.weight"
EXPERT_SCALE = "layers.2.ffn.experts.3.w2.scale"
FP8_SCALE = "layers.1.attn.wq_b.scale"
TID2EID = "layers.0.ffn.gate.tid2eid"


def _edit(ckpt: Path, tensor: str, fn: Callable[[dict, bytes], tuple[dict, bytes]]) -> str:
    p = shard_of(ckpt, tensor)
    header, blobs = read_shard(p)
    header[tensor], blobs[tensor] = fn(dict(header[tensor]), blobs[tensor])
    write_shard(p, header, blobs)
    return tensor


def _truncated_codes(ckpt: Path) -> str:
    def cut(h: dict, b: bytes) -> tuple[dict, bytes]:
        rows, cols = h["shape"]
        return {**h, "shape": [rows, cols - 16]}, b[: rows * (cols - 16)]
    return _edit(ckpt, EXPERT, cut)


def _scale_group_count(ckpt: Path) -> str:
    def fewer(h: dict, b: bytes) -> tuple[dict, bytes]:
        rows, groups = h["shape"]
        return {**h, "shape": [rows, groups - 1]}, b[: rows * (groups - 1)]
    return _edit(ckpt, EXPERT_SCALE, fewer)


def _nan_byte(tensor: str) -> Callable[[Path], str]:
    return lambda ckpt: _edit(ckpt, tensor, lambda h, b: (h, b"\xff" + b[1:]))


def _expert_missing(ckpt: Path) -> str:
    for name in (EXPERT, EXPERT_SCALE):
        p = shard_of(ckpt, name)
        header, blobs = read_shard(p)
        del header[name], blobs[name]
        write_shard(p, header, blobs)
    edit_json(ckpt / INDEX, lambda d: [d["weight_map"].pop(n) for n in (EXPERT, EXPERT_SCALE)])
    return EXPERT


def _hash_out_of_range(ckpt: Path) -> str:
    n_experts = json.loads((ckpt / "config.json").read_text())["n_routed_experts"]
    return _edit(ckpt, TID2EID, lambda h, b: (h, n_experts.to_bytes(4, "little", signed=True) + b[4:]))


# case -> (edit of a copied checkpoint returning the tensor the finding names, the check, words of the message)
CASES: dict[str, tuple[Callable[[Path], str], str, str]] = {
    "truncated-mxfp4": (_truncated_codes, "architecture", "MXFP4: two codes per byte"),
    "scale-group-count": (_scale_group_count, "mxfp4", "one scale per"),
    "mxfp4-e8m0-nan": (_nan_byte(EXPERT_SCALE), "mxfp4", "NaN byte 0xFF"),
    "fp8-e8m0-nan": (_nan_byte(FP8_SCALE), "fp8-scales", "0xFF is NaN"),
    "expert-missing": (_expert_missing, "architecture", "missing"),
    "hash-out-of-range": (_hash_out_of_range, "tables", "outside [0, 8)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_v4_input_is_one_line_naming_file_and_tensor(case: str, cli, tiny_v4_copy: Path, tmp_path: Path):
    edit, check, words = CASES[case]
    ckpt = tiny_v4_copy
    tensor = edit(ckpt)
    errors = [f for f in verify(ckpt).findings if f.severity == "error"]
    assert [(f.check, f.tensor) for f in errors] == [(check, tensor)], errors
    where = errors[0].file  # a missing tensor is named against the index that should list it
    assert words in errors[0].message and where == (INDEX if case == "expert-missing" else shard_of(tiny_v4_copy, tensor).name)
    r = cli("verify", ckpt)
    assert r.exit_code == 1 and "Traceback" not in r.output and tensor in r.output
    out = tmp_path / "bf16"
    r = cli("convert", ckpt, "--to", "bf16", "--out", out)
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and where in lines[0] and tensor in lines[0], r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_the_release_layouts_pass(tiny_v4: Path, tmp_path: Path):
    from dshub.checkpoint.synth import write_synthetic

    base = tmp_path / "base"
    write_synthetic(base, "tiny-v4-base")
    for path in (tiny_v4, base):
        report = verify(path)
        assert report.ok, report.findings
        assert {"mxfp4", "tables", "fp8-scales"} <= set(report.checks)


def test_fp8_scales_that_are_not_powers_of_two_are_refused_under_ue8m0(tiny_v4_copy: Path):
    """An F32 scale of 0.75 where config.json says scale_fmt ue8m0 (V4 and V3.1 ship powers of two)."""
    import struct

    from tests.support.ckpt_edit import retype
    retype(tiny_v4_copy, FP8_SCALE, "F32", 4)  # zero bytes: sizes differ
    _edit(tiny_v4_copy, FP8_SCALE, lambda h, b: (h, struct.pack("<f", 0.75) + struct.pack("<f", 1.0) * (len(b) // 4 - 1)))
    errors = [f for f in verify(tiny_v4_copy).findings if f.severity == "error"]
    assert [(f.check, f.tensor) for f in errors] == [("fp8-scales", FP8_SCALE)]
    assert "not powers of two" in errors[0].message


def test_synth_info_verify_through_the_cli(cli, tmp_path: Path):
    out = tmp_path / "v4"
    assert cli("synth", out, "--preset", "tiny-v4").exit_code == 0
    r = cli("info", out, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["architecture"] == "DeepseekV4ForCausalLM" and doc["mtp_layers"] == 1 and doc["dense_layers"] == 0
    assert {"F8_E4M3", "F8_E8M0", "I8", "I32"} <= set(doc["dtype_census"]) and doc["output_sizes"]["bf16"] > doc["bytes"]
    r = cli("verify", out, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True, r.output
