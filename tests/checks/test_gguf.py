"""`dshub info` / `dshub verify` on GGUF files and split sets: clean output passes, damaged sets name file and tensor."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dshub.converters import build_options, run_conversion
from dshub.formats.gguf_file import KV, TensorInfo, read_gguf_header, write_gguf
from dshub.checks import verify


@pytest.fixture(scope="module")
def split_dir(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf-split")
    run_conversion(tiny_ckpt, build_options("gguf", out=out, **{"quant": "Q8_0", "split_max_tensors": 20}), progress=False)
    return out


def rewrite(src: Path, dst: Path, *, drop_keys: tuple[str, ...] = (), set_keys: dict | None = None,
            drop_tensors: tuple[str, ...] = (), extra: TensorInfo | None = None) -> None:
    """Copy a GGUF file with some metadata or tensors changed (tensor bytes copied from the original)."""
    h = read_gguf_header(src)
    kvs = [KV(k, h.kv_types[k], (set_keys or {}).get(k, v), None) for k, v in h.kv.items() if k not in drop_keys]
    kvs = [KV(k.key, k.vtype, k.value, _sub(h, k.key)) for k in kvs]
    tensors = [t for t in h.tensors if t.name not in drop_tensors] + ([extra] if extra else [])
    raw = src.read_bytes()

    def produce(t: TensorInfo):
        if extra is not None and t.name == extra.name:
            return [bytes(t.nbytes)]
        start, end = h.tensor_data(t)
        return [raw[start:end]]

    write_gguf(dst, kvs, [TensorInfo(t.name, t.shape, t.ggml_type) for t in tensors], produce)


def _sub(h, key):
    from dshub.formats.gguf_file import VT

    v = h.kv[key]
    if h.kv_types[key] is not VT.ARRAY:
        return None
    return VT.STRING if v and isinstance(v[0], str) else VT.INT32 if key.endswith("token_type") else VT.UINT32


def test_clean_split_set_info_and_verify(split_dir: Path, cli) -> None:
    files = sorted(split_dir.glob("*.gguf"))
    report = verify(files[1])  # any file of the set finds the others
    assert report.ok and report.shards == 3 and report.tensors == 52, report.findings
    res = cli("info", split_dir, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["format"] == "gguf" and doc["file_type"] == "Q8_0" and doc["tensors"] == 52
    assert doc["types"]["F32"]["tensors"] == 17 and doc["hparams"]["expert_gating_func"] == 2
    assert [f["tensors"] for f in doc["files"]] == [20, 20, 12]
    assert cli("verify", files[0]).exit_code == 0


def test_missing_split_file(split_dir: Path, tmp_path: Path, cli) -> None:
    for f in sorted(split_dir.glob("*.gguf"))[:2]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    report = verify(tmp_path)
    assert not report.ok
    assert any(f.file == "tiny-Q8_0-00003-of-00003.gguf" and "missing" in f.message for f in report.findings)
    res = cli("verify", tmp_path, "--json")
    assert res.exit_code == 1 and not json.loads(res.stdout)["ok"]
    res = cli("info", tmp_path)
    assert res.exit_code == 1 and "missing tiny-Q8_0-00003-of-00003.gguf" in res.output


def test_damaged_files_are_named(split_dir: Path, tmp_path: Path) -> None:
    files = sorted(split_dir.glob("*.gguf"))
    first = files[0]
    h = read_gguf_header(first)
    victim = h.tensors[3].name
    rewrite(first, tmp_path / "a.gguf", drop_keys=tuple(k for k in h.kv if k.startswith("split.")),
            extra=TensorInfo("blk.0.attn_kv_b.weight", (512, 128), "F16"), drop_tensors=(victim,))
    msgs = {(f.tensor, f.severity): f.message for f in verify(tmp_path / "a.gguf").findings}
    assert "not part of the deepseek2 layout" in msgs[("blk.0.attn_kv_b.weight", "error")]
    assert "missing" in msgs[(victim, "error")]

    rewrite(first, tmp_path / "b.gguf", drop_keys=("deepseek2.expert_gating_func",) + tuple(k for k in h.kv if k.startswith("split.")))
    found = verify(tmp_path / "b.gguf").findings
    assert any(f.severity == "warning" and "softmax gating" in f.message for f in found)

    d = tmp_path / "set"
    d.mkdir()
    for f in files:
        (d / f.name).write_bytes(f.read_bytes())
    rewrite(files[2], d / files[2].name, set_keys={"split.count": 4})
    assert any("split.count=4" in f.message and f.file == files[2].name for f in verify(d).findings)

    raw = files[1].read_bytes()
    (d / files[1].name).write_bytes(raw[: len(raw) // 2])
    found = verify(d).findings
    assert any(f.check == "gguf-header" and f.file == files[1].name and "truncated" in f.message for f in found)


def test_deep_verify_finds_nan_values_and_scales(tiny_ckpt: Path, tmp_path: Path, cli) -> None:
    run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path, **{"quant": "Q8_0"}), progress=False)
    path = tmp_path / "tiny-Q8_0.gguf"
    h = read_gguf_header(path)
    by = {t.name: t for t in h.tensors}
    raw = bytearray(path.read_bytes())
    q, norm = by["blk.1.ffn_up_exps.weight"], by["blk.0.attn_norm.weight"]
    start = h.tensor_data(q)[0] + 3 * 34  # block 3's fp16 scale
    raw[start:start + 2] = b"\x00\x7c"  # +Inf
    start = h.tensor_data(norm)[0] + 4 * 5  # element 5
    raw[start:start + 4] = b"\x00\x00\xc0\x7f"  # NaN
    path.write_bytes(bytes(raw))
    assert verify(path).ok  # structure is fine; values are only read with --deep
    found = {f.tensor: f.message for f in verify(path, deep=True).findings if f.severity == "error"}
    assert found == {"blk.1.ffn_up_exps.weight": "1 NaN/Inf block scales (Q8_0)", "blk.0.attn_norm.weight": "1 NaN/Inf values (F32)"}
    res = cli("verify", path, "--deep")
    assert res.exit_code == 1 and "blk.1.ffn_up_exps.weight" in res.output
