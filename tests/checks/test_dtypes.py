"""Stored dtypes checked against the family's spec: verify reports them and every convert refuses them (exit 1, one
line naming the file and the tensor, nothing written that looks complete)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from dshub.checkpoint.reader import Checkpoint
from dshub.checks import verify
from dshub.errors import CheckpointError
from tests.support.ckpt_edit import read_shard, retype, shard_of, write_shard

KV_A = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"
KV_A_SCALE = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"
NORM = "model.layers.1.input_layernorm.weight"
ROUTER = "model.layers.1.mlp.gate.weight"
ROUTER_BIAS = "model.layers.1.mlp.gate.e_score_correction_bias"
EMBED = "model.embed_tokens.weight"


def _bf16_beside_scale(ckpt: Path) -> str:
    retype(ckpt, KV_A, "BF16", 2)
    return KV_A_SCALE


def _retyped(tensor: str, dtype: str, size: int) -> Callable[[Path], str]:
    def fn(ckpt: Path) -> str:
        retype(ckpt, tensor, dtype, size)
        return tensor
    return fn


# case -> edit of a copied checkpoint, returning the tensor the finding must name
DTYPE_CASES: dict[str, Callable[[Path], str]] = {
    "fp8-weight-as-u8": _retyped(KV_A, "U8", 1),
    "fp8-weight-as-e5m2-in-e4m3-family": _retyped(KV_A, "F8_E5M2", 1),
    "scale-as-i32": _retyped(KV_A_SCALE, "I32", 4),
    "scale-as-e8m0": _retyped(KV_A_SCALE, "F8_E8M0", 1),
    "bf16-weight-beside-scale": _bf16_beside_scale,
    "norm-as-e8m0": _retyped(NORM, "F8_E8M0", 1),
    "norm-as-u16": _retyped(NORM, "U16", 2),
    "router-as-i32": _retyped(ROUTER, "I32", 4),
    "router-bias-as-u8": _retyped(ROUTER_BIAS, "U8", 1),
    "embedding-as-fp8": _retyped(EMBED, "F8_E4M3", 1),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_wrong_dtype_fails_verify_and_convert(case: str, cli, tiny_copy: Path, tmp_path: Path):
    tensor = DTYPE_CASES[case](tiny_copy)
    shard = shard_of(tiny_copy, tensor).name
    report = verify(tiny_copy)
    hits = [f for f in report.findings if f.check == "dtypes"]
    assert [(f.file, f.tensor) for f in hits] == [(shard, tensor)], report.findings
    r = cli("verify", tiny_copy)
    assert r.exit_code == 1 and "Traceback" not in r.output and tensor in r.output
    for target in (("bf16",), ("int4",)):
        out = tmp_path / f"out-{target[0]}"
        r = cli("convert", tiny_copy, "--to", *target, "--out", out)
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and shard in lines[0] and tensor in lines[0], r.stderr
        assert not out.exists() or not any(out.iterdir())


def test_release_dtypes_pass(tiny_ckpt: Path, tiny_bf16: Path):
    for path in (tiny_ckpt, tiny_bf16):
        assert not [f for f in verify(path).findings if f.check == "dtypes"]


def test_scale_beside_a_kept_bf16_module_is_reported_once(tiny_copy: Path):
    """A BF16 weight is legal in an FP8 checkpoint (a module kept in higher precision); its leftover scale is not."""
    p = shard_of(tiny_copy, KV_A_SCALE)
    header, blobs = read_shard(p)
    del header[KV_A_SCALE], blobs[KV_A_SCALE]
    write_shard(p, header, blobs)
    retype(tiny_copy, KV_A, "BF16", 2)
    assert not [f for f in verify(tiny_copy).findings if f.check == "dtypes"]


@pytest.mark.parametrize("dtype,size", [("U16", 2)])
def test_reading_a_dtype_torch_cannot_hold_is_a_checkpoint_error(dtype: str, size: int, tiny_copy: Path):
    retype(tiny_copy, NORM, dtype, size)
    with pytest.raises(CheckpointError, match=f"{shard_of(tiny_copy, NORM).name}: tensor {NORM}: dtype {dtype}"):
        Checkpoint.open(tiny_copy).read(NORM)
