"""GGUF writer/reader: byte-identical with gguf-py's GGUFWriter, read back by GGUFReader, split sets, bad files."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from dshub.errors import GGUFError
from dshub.formats.gguf_file import (
    KV, VT, TensorInfo, file_size, read_gguf_header, split_kvs, split_names, split_set, split_tensors, write_gguf,
)
from dshub.quant.registry import get_codec
import dshub.quant.gguf  # noqa: F401

KVS = [
    KV("general.architecture", VT.STRING, "deepseek2"),
    KV("deepseek2.block_count", VT.UINT32, 2),
    KV("deepseek2.expert_weights_scale", VT.FLOAT32, 2.5),
    KV("deepseek2.expert_weights_norm", VT.BOOL, True),
    KV("tokenizer.ggml.tokens", VT.ARRAY, ["a", "b", "<｜end▁of▁sentence｜>"], VT.STRING),
    KV("tokenizer.ggml.token_type", VT.ARRAY, [1, 1, 3], VT.INT32),
]


def _tensors() -> dict[str, tuple[np.ndarray, str]]:
    g = np.random.default_rng(0)
    return {
        "token_embd.weight": (g.standard_normal((5, 64)).astype(np.float32), "Q8_0"),
        "blk.0.attn_norm.weight": (g.standard_normal(64).astype(np.float32), "F32"),
        "blk.0.ffn_gate_exps.weight": (g.standard_normal((3, 4, 64)).astype(np.float32), "Q4_0"),
        "output.weight": (g.standard_normal((7, 32)).astype(np.float32), "F16"),
    }


def _bytes(x: np.ndarray, t: str) -> np.ndarray:
    return get_codec(f"gguf_{t}")(torch.from_numpy(x.reshape(-1, x.shape[-1]))).numpy()


def _write(path: Path, max_tensors: int = 0) -> list[Path]:
    data = _tensors()
    infos = [TensorInfo(n, x.shape, t) for n, (x, t) in data.items()]
    groups = split_tensors(infos, max_tensors=max_tensors)
    names = split_names(path.stem, len(groups))
    out = []
    for i, (name, group) in enumerate(zip(names, groups)):
        kvs = split_kvs(KVS, i, len(groups), len(infos))

        def produce(t: TensorInfo):
            x, typ = data[t.name]
            if x.ndim == 3:  # stream expert by expert
                for e in range(x.shape[0]):
                    yield _bytes(x[e], typ)
            else:
                yield _bytes(x, typ)

        res = write_gguf(path.with_name(name), kvs, group, produce)
        assert res.size == file_size(kvs, group) == res.path.stat().st_size
        out.append(res.path)
    return out


def test_byte_identical_with_gguf_writer(tmp_path: Path) -> None:
    ours = _write(tmp_path / "ours.gguf")[0]
    w = gguf.GGUFWriter(tmp_path / "ref.gguf", "deepseek2")
    w.add_uint32("deepseek2.block_count", 2)
    w.add_float32("deepseek2.expert_weights_scale", 2.5)
    w.add_bool("deepseek2.expert_weights_norm", True)
    w.add_token_list(["a", "b", "<｜end▁of▁sentence｜>"])
    w.add_token_types([1, 1, 3])
    for n, (x, t) in _tensors().items():
        raw = _bytes(x, t).reshape(*x.shape[:-1], -1)
        w.add_tensor(n, raw, raw_dtype=gguf.GGMLQuantizationType[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert ours.read_bytes() == (tmp_path / "ref.gguf").read_bytes()


def test_read_back_with_gguf_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf")[0]
    r = gguf.GGUFReader(path)
    assert r.fields["deepseek2.block_count"].contents() == 2
    assert r.fields["tokenizer.ggml.tokens"].contents()[2] == "<｜end▁of▁sentence｜>"
    data = _tensors()
    for t in r.tensors:
        x, typ = data[t.name]
        assert t.tensor_type.name == typ
        assert tuple(int(d) for d in reversed(t.shape)) == x.shape
        back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(x.shape)
        tol = {"F32": 0, "F16": 1e-3, "Q8_0": 0.02, "Q4_0": 0.5}[typ]
        np.testing.assert_allclose(back, x, atol=tol * np.abs(x).max())
    ours = read_gguf_header(path)
    assert ours.kv["deepseek2.expert_weights_norm"] is True
    assert [t.name for t in ours.tensors] == [t.name for t in r.tensors]
    assert [ours.tensor_data(t)[0] for t in ours.tensors] == [int(t.data_offset) for t in r.tensors]


def test_split_set(tmp_path: Path) -> None:
    files = _write(tmp_path / "m.gguf", max_tensors=2)
    assert [f.name for f in files] == ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    assert split_set(files[0]) == files
    for i, f in enumerate(files):
        r = gguf.GGUFReader(f)
        assert r.fields["split.no"].contents() == i
        assert r.fields["split.count"].contents() == 2
        assert r.fields["split.tensors.count"].contents() == 4
        assert len(r.tensors) == 2
        assert ("deepseek2.block_count" in r.fields) == (i == 0)


def test_truncated_and_garbage_files_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf")[0]
    raw = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(raw[:-40])
    with pytest.raises(GGUFError, match="cut.gguf: tensor data ends at byte"):
        read_gguf_header(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(raw[:100])
    with pytest.raises(GGUFError, match="head.gguf: truncated while reading"):
        read_gguf_header(tmp_path / "head.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + raw[4:])
    with pytest.raises(GGUFError, match="bad magic"):
        read_gguf_header(tmp_path / "bad.gguf")


def test_wrong_byte_count_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="tensor x.weight: 10 bytes produced, 68 declared"):
        write_gguf(tmp_path / "m.gguf", KVS, [TensorInfo("x.weight", (2, 32), "Q8_0")], lambda t: [b"\0" * 10])
    assert list(tmp_path.iterdir()) == []
