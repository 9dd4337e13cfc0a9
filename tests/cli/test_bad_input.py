"""Every bad input: a one-line error naming file and tensor, exit 1, no traceback, nothing left looking complete."""
from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from dshub.checkpoint.reader import Checkpoint
from dshub.constants import TMP_SUFFIX
from dshub.checkpoint.writer import tensor_bytes

INDEX = "model.safetensors.index.json"
KV_A = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"


def header_of(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_with_header(path: Path, header: dict, data: bytes) -> None:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def shard_of(ckpt: Path, tensor: str) -> Path:
    return ckpt / json.loads((ckpt / INDEX).read_text())["weight_map"][tensor]


def edit_header(ckpt: Path, tensor: str, fn: Callable[[dict, bytes], tuple[dict, bytes]]) -> Path:
    p = shard_of(ckpt, tensor)
    header, data = header_of(p)
    header, data = fn(header, data)
    write_with_header(p, header, data)
    return p


def edit_index(ckpt: Path, fn: Callable[[dict], None]) -> None:
    doc = json.loads((ckpt / INDEX).read_text())
    fn(doc["weight_map"])
    (ckpt / INDEX).write_text(json.dumps(doc))


def replace_tensor(ckpt: Path, name: str, value: torch.Tensor) -> None:
    """Overwrite a tensor's bytes in place (same dtype and shape)."""
    c = Checkpoint.open(ckpt)
    e = c.entry(name)
    with open(shard_of(ckpt, name), "r+b") as f:
        f.seek(e.start)
        f.write(tensor_bytes(value))


def _truncate(ckpt: Path) -> str:
    p = shard_of(ckpt, KV_A)
    os.truncate(p, p.stat().st_size - 100)
    return p.name


def _header_too_long(ckpt: Path) -> str:
    p = shard_of(ckpt, KV_A)
    raw = bytearray(p.read_bytes())
    raw[:8] = struct.pack("<Q", len(raw) + 10)
    p.write_bytes(bytes(raw))
    return "larger than the file"


def _header_not_json(ckpt: Path) -> str:
    p = shard_of(ckpt, KV_A)
    raw = bytearray(p.read_bytes())
    raw[8:12] = b"<htm"
    p.write_bytes(bytes(raw))
    return "not valid JSON"


def _overlap(ckpt: Path) -> str:
    def fn(h: dict, d: bytes):
        off = h[KV_A]["data_offsets"]
        h[KV_A]["data_offsets"] = [off[0] - 8, off[1] - 8]
        return h, d
    edit_header(ckpt, KV_A, fn)
    return KV_A


def _gap(ckpt: Path) -> str:
    def fn(h: dict, d: bytes):
        for v in h.values():
            if isinstance(v, dict) and "data_offsets" in v and v["data_offsets"][0] >= h[KV_A]["data_offsets"][0]:
                v["data_offsets"] = [v["data_offsets"][0] + 16, v["data_offsets"][1] + 16]
        return h, d[: h[KV_A]["data_offsets"][0] - 16] + bytes(16) + d[h[KV_A]["data_offsets"][0] - 16 :]
    edit_header(ckpt, KV_A, fn)
    return KV_A


def _bytes_mismatch(ckpt: Path) -> str:
    def fn(h: dict, d: bytes):
        h[KV_A]["dtype"] = "BF16"
        return h, d
    edit_header(ckpt, KV_A, fn)
    return KV_A


def _index_missing_shard(ckpt: Path) -> str:
    edit_index(ckpt, lambda wm: wm.__setitem__(KV_A, "model-00099-of-00099.safetensors"))
    return "model-00099-of-00099.safetensors"


def _index_escape(ckpt: Path) -> str:
    edit_index(ckpt, lambda wm: wm.__setitem__(KV_A, "../outside.safetensors"))
    return "escapes"


def _index_absolute(ckpt: Path) -> str:
    edit_index(ckpt, lambda wm: wm.__setitem__(KV_A, "/etc/passwd"))
    return "escapes"


def _tensor_twice(ckpt: Path) -> str:
    # Add KV_A's layer-norm neighbour to a second shard as well.
    name = "model.norm.weight"
    other = next(p for p in sorted(ckpt.glob("*.safetensors")) if p != shard_of(ckpt, name))
    h, d = header_of(other)
    val = Checkpoint.open(ckpt).read(name)
    h[name] = {"dtype": "BF16", "shape": list(val.shape), "data_offsets": [len(d), len(d) + val.numel() * 2]}
    write_with_header(other, h, d + bytes(tensor_bytes(val)))
    return name


def _missing_scale(ckpt: Path) -> str:
    scale = KV_A.replace(".weight", ".weight_scale_inv")

    def fn(h: dict, d: bytes):
        a, b = h.pop(scale)["data_offsets"]
        for v in h.values():
            if isinstance(v, dict) and "data_offsets" in v and v["data_offsets"][0] >= b:
                v["data_offsets"] = [v["data_offsets"][0] - (b - a), v["data_offsets"][1] - (b - a)]
        return h, d[:a] + d[b:]
    edit_header(ckpt, scale, fn)
    edit_index(ckpt, lambda wm: wm.pop(scale))
    return scale


def _scale_wrong_shape(ckpt: Path) -> str:
    scale = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"  # (3, 2) for a 384 x 192 weight

    def fn(h: dict, d: bytes):
        r, c = h[scale]["shape"]
        h[scale]["shape"] = [c, r]
        return h, d
    edit_header(ckpt, scale, fn)
    return scale


def _scale_nan(ckpt: Path) -> str:
    scale = KV_A.replace(".weight", ".weight_scale_inv")
    v = Checkpoint.open(ckpt).read(scale).clone()
    v[0, 0] = float("nan")
    replace_tensor(ckpt, scale, v)
    return scale


def _scale_zero(ckpt: Path) -> str:
    scale = KV_A.replace(".weight", ".weight_scale_inv")
    v = Checkpoint.open(ckpt).read(scale).clone()
    v[-1, -1] = 0.0
    replace_tensor(ckpt, scale, v)
    return scale


def _config_missing_field(ckpt: Path) -> str:
    cfg = json.loads((ckpt / "config.json").read_text())
    del cfg["kv_lora_rank"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    return "kv_lora_rank"


def _pickle_file(ckpt: Path) -> str:
    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return "pytorch_model.bin"


BAD_INPUTS: dict[str, Callable[[Path], str]] = {
    "truncated": _truncate,
    "header-longer-than-file": _header_too_long,
    "header-not-json": _header_not_json,
    "overlapping-offsets": _overlap,
    "gapped-offsets": _gap,
    "dtype-shape-bytes-mismatch": _bytes_mismatch,
    "index-missing-shard": _index_missing_shard,
    "index-escapes-dir": _index_escape,
    "index-absolute-path": _index_absolute,
    "tensor-in-two-shards": _tensor_twice,
    "missing-scale": _missing_scale,
    "scale-wrong-shape": _scale_wrong_shape,
    "scale-nan": _scale_nan,
    "scale-zero": _scale_zero,
    "config-missing-field": _config_missing_field,
    "pickle-file": _pickle_file,
}


def assert_clean_failure(result, must_mention: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert must_mention in result.output, result.output


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_verify_and_convert_cleanly(case: str, cli, tiny_copy: Path, tmp_path: Path):
    needle = BAD_INPUTS[case](tiny_copy)
    r = cli("verify", tiny_copy)
    assert_clean_failure(r, needle)
    out = tmp_path / "out"
    r = cli("convert", tiny_copy, "--to", "bf16", "--out", out)
    assert_clean_failure(r, needle)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line
    assert not out.exists() or not any(out.iterdir())


def test_verify_json_lists_findings_with_file_and_tensor(cli, tiny_copy: Path):
    _scale_nan(tiny_copy)
    r = cli("verify", tiny_copy, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert not doc["ok"]
    f = doc["findings"][0]
    assert f["tensor"] == KV_A.replace(".weight", ".weight_scale_inv") and f["file"].endswith(".safetensors")


def test_verify_deep_finds_nan_weights(cli, tiny_copy: Path):
    name = "model.layers.0.input_layernorm.weight"
    v = Checkpoint.open(tiny_copy).read(name).clone()
    v[3] = float("inf")
    replace_tensor(tiny_copy, name, v)
    assert cli("verify", tiny_copy).exit_code == 0
    r = cli("verify", tiny_copy, "--deep")
    assert r.exit_code == 1 and name in r.output


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_inside_input_is_refused(where: str, cli, tiny_copy: Path):
    out = tiny_copy if where == "same" else tiny_copy / "converted"
    before = sorted(p.name for p in tiny_copy.iterdir())
    r = cli("convert", tiny_copy, "--to", "bf16", "--out", out)
    assert_clean_failure(r, "must not be the input directory")
    assert sorted(p.name for p in tiny_copy.iterdir()) == before


def test_usage_errors_exit_2(cli, tiny_ckpt: Path, tmp_path: Path):
    r = cli("convert", tiny_ckpt, "--to", "nope", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "known:" in r.output
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", tmp_path / "o", "--group-size", "64")
    assert r.exit_code == 2 and "group_size" in r.output
    r = cli("convert", tiny_ckpt, "--to", "gguf", "--quant", "Q8_0", "--out", tmp_path / "o", "--mtp", "--drop-mtp")
    assert r.exit_code == 2 and "contradict" in r.output and not (tmp_path / "o").exists()
    r = cli("synth", tmp_path / "s", "--preset", "huge")
    assert r.exit_code == 2 and "tiny" in r.output


def test_cuda_without_gpu_is_a_clear_error(cli, tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if torch.cuda.is_available():
        pytest.skip("checks the answer on a machine without a CUDA GPU; this one has one")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the interpreter would stand in for a GPU
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", tmp_path / "o", "--device", "cuda")
    assert r.exit_code == 1 and "--device cuda" in r.output and "cpu" in r.output and "Traceback" not in r.output


def test_disk_full_while_writing_is_clean(tiny_ckpt: Path, tmp_path: Path):
    """RLIMIT_FSIZE makes writes fail past 2 MB, as a full disk does: a clean error, temp files removed."""
    out = tmp_path / "full"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    cmd = [sys.executable, "-m", "dshub.cli", "convert", str(tiny_ckpt), "--to", "bf16", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert "disk full" in r.stderr and "Traceback" not in r.stderr
    assert sum(line.startswith("error:") for line in r.stderr.splitlines()) == 1
    assert not list(out.glob(f"*{TMP_SUFFIX}"))
    assert not (out / "model.safetensors.index.json").exists()


def test_unreadable_manifest_in_out_dir_is_a_clear_error(cli, tiny_ckpt: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dshub-manifest.json").write_text("{not json")
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out)
    assert_clean_failure(r, "dshub-manifest.json")
    assert sorted(p.name for p in out.iterdir()) == ["dshub-manifest.json"]
