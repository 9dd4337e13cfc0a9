"""`--codec-backend`: torch and ggml write the same files; types only ggml writes need it; a missing library is a
clear one-line error (or, under auto, a note and the torch reference), never a crash; imatrix-only types are refused
without one, naming the tensor."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dshub.converters import build_options, run_conversion
from dshub.errors import DeviceError, PolicyError, UsageError
from dshub.quant.gguf import ggml
from tests.support.gguf_files import write_imatrix


def convert(src: Path, out: Path, **params) -> dict:
    return run_conversion(src, build_options("gguf", out=out, **params), progress=False).to_dict()


def _gguf(out: Path) -> bytes:
    return next(out.glob("*.gguf")).read_bytes()


@pytest.fixture
def no_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ggml's library is gone (as on a machine without llama-cpp-python's libraries)."""
    missing = tmp_path / "gone" / "libggml-base.so"
    monkeypatch.setattr(ggml._library, "state", {})
    monkeypatch.setattr(ggml, "library_path", lambda: missing)
    return missing


def test_torch_and_ggml_write_the_same_file(tiny_ckpt: Path, tmp_path: Path) -> None:
    imx = write_imatrix(tmp_path / "imatrix.gguf", {"blk.1.ffn_down_exps.weight": (np.random.default_rng(0).random((8, 256)) + 0.1, np.full(8, 10.0))})
    docs = {b: convert(tiny_ckpt, tmp_path / b, quant="Q3_K_M", codec_backend=b, imatrix=str(imx),
                       tensor_type=["attn_kv_a=Q4_0", "shexp=Q5_1"]) for b in ("torch", "ggml")}
    assert docs["torch"]["codec_backend"] == "torch" and docs["ggml"]["codec_backend"] == "ggml"
    assert _gguf(tmp_path / "torch") == _gguf(tmp_path / "ggml")
    assert {"Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q5_1"} <= set(docs["ggml"]["types"])


def test_backend_is_not_part_of_the_resume_key() -> None:
    a = build_options("gguf", out=Path("o"), quant="Q4_K_M", codec_backend="torch")
    b = build_options("gguf", out=Path("o"), quant="Q4_K_M", codec_backend="ggml")
    assert a.key() == b.key()
    with pytest.raises(UsageError, match="--codec-backend 'c': choose one of auto, torch, ggml, native"):
        build_options("gguf", out=Path("o"), quant="Q4_K_M", codec_backend="c")


def test_ggml_only_types_need_the_ggml_backend(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--codec-backend torch cannot write IQ4_XS \(tensor blk.1.ffn_\w+_exps.weight\)"):
        convert(tiny_ckpt, tmp_path / "o", quant="Q4_K_M", codec_backend="torch", tensor_type=["_exps=IQ4_XS"])
    doc = convert(tiny_ckpt, tmp_path / "iq", quant="Q4_K_M", tensor_type=["_exps=IQ4_XS"])
    assert doc["codec_backend"] == "native+ggml" and doc["types"]["IQ4_XS"] == 6


def test_missing_library_auto_falls_back_with_a_note(tiny_ckpt: Path, tmp_path: Path, no_library: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = convert(tiny_ckpt, tmp_path / "o", quant="Q4_K_S")
    assert doc["codec_backend"] == "native"
    assert f"note: --codec-backend auto: ggml is not available ({no_library} does not exist" in capsys.readouterr().err


def test_missing_library_is_a_one_line_error(cli, tiny_ckpt: Path, tmp_path: Path, no_library: Path) -> None:
    res = cli("convert", tiny_ckpt, "--to", "gguf", "--quant", "Q4_K_M", "--out", tmp_path / "o", "--codec-backend", "ggml", "--json")
    assert res.exit_code == 1
    err = json.loads(res.stdout)["error"]
    assert err["type"] == "DeviceError" and "Traceback" not in res.output
    assert err["detail"] == f"--codec-backend ggml: {no_library} does not exist (llama-cpp-python installed without its libraries?); use --codec-backend torch"
    with pytest.raises(DeviceError, match=r"IQ4_NL \(tensor blk\.1\.ffn_gate_exps\.weight\) is written by ggml's quantizers only, "
                                          r"which cannot be used here: .* does not exist"):
        convert(tiny_ckpt, tmp_path / "o2", quant="Q4_K_M", tensor_type=["_exps=IQ4_NL"])
    assert not (tmp_path / "o2").exists()
    doc = convert(tiny_ckpt, tmp_path / "o3", quant="Q4_K_M", tensor_type=["_exps=IQ4_NL"], dry_run=True)
    assert doc["codec_backend"] == "unavailable" and doc["types"]["IQ4_NL"] == 6  # a dry run still prices it


def test_imatrix_only_types_are_refused_without_one(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"tensor blk.1.ffn_gate_exps.weight: gets IQ2_XS, which llama.cpp only quantizes "
                                          r"with an importance matrix .* no --imatrix was given; 2 tensor"):
        convert(tiny_ckpt, tmp_path / "o", quant="Q4_K_M", tensor_type=["gate_exps=IQ2_XS"])
    imx = write_imatrix(tmp_path / "imatrix.gguf", {"blk.1.ffn_gate_exps.weight": (np.ones((8, 256)), np.ones(8))})
    with pytest.raises(PolicyError, match=r"--imatrix .*imatrix.gguf: tensor blk.2.ffn_gate_exps.weight: .*the imatrix has no entry"):
        convert(tiny_ckpt, tmp_path / "o", quant="Q4_K_M", tensor_type=["gate_exps=IQ2_XS"], imatrix=str(imx))
    assert not list((tmp_path / "o").glob("*.gguf"))
    doc = convert(tiny_ckpt, tmp_path / "o", quant="Q4_K_M", tensor_type=["gate_exps=IQ2_XS"], dry_run=True)
    assert len(doc["imatrix_missing"]) == 2
