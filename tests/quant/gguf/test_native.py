"""The native K-quant kernels (kq_native.c): byte-identical to the torch reference and to ggml on rows that exercise
every branch of the searches; the build is cached and checked; a machine without a compiler gets a reason, and `auto`
goes on without them; an importance matrix goes to the next backend."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dshub.quant.gguf import ggml, native
from dshub.quant.backends import resolve_backend
from dshub.quant.gguf.kquants import QUANTIZERS
from dshub.quant.registry import BackendUnavailable, get_codec
from tests.support.llama_oracle import ggml_quantize
from tests.support.tools import require


def _rows(cols: int) -> torch.Tensor:
    """Rows of many kinds: scales from subnormal to 1e30, FP8-derived values, sparse, one-signed, constant and zero
    groups, -0.0, integer grids and heavy tails."""
    g = torch.Generator().manual_seed(11)
    r = lambda: torch.randn(cols, generator=g)  # noqa: E731
    rows = [r() * s for s in (1e-42, 1e-38, 1e-8, 0.02, 1.0, 1e4, 1e30)]
    rows.append((r() * 100).to(torch.float8_e4m3fn).to(torch.float32) * 1e-3)
    rows.append(r() * (torch.rand(cols, generator=g) < 0.05))
    rows += [torch.rand(cols, generator=g), -torch.rand(cols, generator=g), r() ** 7]
    rows.append(torch.randint(-3, 4, (cols,), generator=g).to(torch.float32))
    rows.append(r() * torch.logspace(-20, 20, cols))
    c = r()
    c.view(-1, 16)[::3] = 0.5
    c.view(-1, 32)[1::5] = -0.0
    rows += [c, torch.zeros(cols), -torch.zeros(cols)]
    return torch.stack(rows).contiguous()


@pytest.mark.parametrize("name", native.TYPES)
def test_native_gives_the_reference_bytes(name: str) -> None:
    x = _rows(1024)
    got = native.quantize(name, x)
    assert got.shape == (x.shape[0], 1024 // 256 * ggml.GGML_TYPES[name].type_size)
    assert torch.equal(got, QUANTIZERS[name](x)), f"{name}: native differs from the torch reference"


@pytest.mark.parametrize("name", native.TYPES)
def test_native_gives_llama_cpps_bytes(name: str) -> None:
    require("llama_cpp")
    x = _rows(512)
    assert native.quantize(name, x).numpy().tobytes() == ggml_quantize(name, x.numpy()).tobytes()


def test_bad_input_is_a_value_error_naming_the_type() -> None:
    codec = get_codec("gguf_Q4_K", "cpu", "native")
    with pytest.raises(ValueError, match="Q4_K: row length 300 is not a multiple of the super-block size 256"):
        codec(torch.zeros(2, 300))
    x = torch.zeros(3, 512)
    x[2, 17] = float("nan")
    with pytest.raises(ValueError, match="Q4_K: non-finite value nan at row 2, column 17"):
        codec(x)
    big = torch.full((2, 256), 3e38)  # finite values whose sum overflows are still accepted
    assert torch.equal(codec(big), QUANTIZERS["Q4_K"](big))


def test_an_importance_matrix_goes_to_the_next_backend() -> None:
    require("llama_cpp")
    x, qw = _rows(512)[2:6], torch.rand(512) + 0.1
    assert torch.equal(get_codec("gguf_Q4_K", "cpu", "native")(x, qw), ggml.quantize("Q4_K", x, qw))
    assert torch.equal(get_codec("gguf_Q3_K", "cpu", "native+ggml")(x), ggml.quantize("Q3_K", x))


def test_the_build_is_cached_and_named_by_its_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSHUB_NATIVE_CACHE", str(tmp_path))
    first = native.build()
    assert first.parent == tmp_path and first.name.startswith("libdshub_kq-") and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind
    assert native._Lib(first).path == first  # loads and passes its self-test


def test_no_compiler_is_a_reason_and_auto_goes_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DSHUB_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang either
    monkeypatch.setattr(native._library, "state", {})
    assert native.unavailable_reason() == "no C compiler found (set CC, or install gcc or clang)"
    notes: list[str] = []
    chain = resolve_backend("auto", note=notes.append)
    assert "native" not in chain.split("+")
    assert notes[0].startswith("--codec-backend auto: native is not available (no C compiler found")
    with pytest.raises(BackendUnavailable, match="--codec-backend native: no C compiler found.*; use --codec-backend auto"):
        resolve_backend("native")


def test_an_unwritable_cache_is_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DSHUB_NATIVE_CACHE", str(blocker / "native"))
    monkeypatch.setattr(native._library, "state", {})
    assert native.unavailable_reason().startswith(f"cannot write the native kernels' cache {blocker / 'native'} (")
    assert native.unavailable_reason().endswith("set DSHUB_NATIVE_CACHE to a writable directory")


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSHUB_NATIVE", "0")
    monkeypatch.setattr(native._library, "state", {})
    assert native.unavailable_reason() == "turned off by DSHUB_NATIVE=0"
    assert resolve_backend("auto", note=None) == "ggml"


def test_a_library_that_disagrees_is_refused(tmp_path: Path) -> None:
    """A build whose float semantics differ (here -ffast-math, which reassociates the sums) fails the self-test. In a
    child process: loading a -ffast-math library turns on flush-to-zero for the whole process."""
    code = ("import sys; from dshub.quant.gguf import native; "
            "native.BASE_FLAGS = (*native.BASE_FLAGS[:-2], '-ffast-math'); "
            "native._Lib(native.build())")
    env = {**os.environ, "DSHUB_NATIVE_CACHE": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0
    assert "differs from the reference quantizer on the self-test" in run.stderr.splitlines()[-1]


@pytest.mark.parametrize("shape, block", [((300, 700), (128, 128)), ((128, 256), (128, 128)), ((5, 3), (2, 2))])
def test_fp8_dequant_gives_the_reference_bits(shape: tuple[int, int], block: tuple[int, int]) -> None:
    from dshub.quant.fp8 import dequant_fp8_block_bf16, dequant_fp8_block_f32

    g = torch.Generator().manual_seed(2)
    w = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).view(torch.float8_e4m3fn)  # nan codes included
    s = torch.randn((-(-shape[0] // block[0]), -(-shape[1] // block[1])), generator=g) * 1e-2
    f32 = get_codec("fp8_block_dequant_f32", "cpu", "native")(w, s, block)
    assert torch.equal(f32.view(torch.int32), dequant_fp8_block_f32(w, s, block).view(torch.int32))
    rows = list(get_codec("fp8_block_dequant_bf16_rows", "cpu", "native")(w, s, block))
    assert [r.shape[0] for r in rows] == [min(block[0], shape[0] - r0) for r0 in range(0, shape[0], block[0])]
    assert torch.equal(torch.cat(rows).view(torch.int16), dequant_fp8_block_bf16(w, s, block).view(torch.int16))
    with pytest.raises(ValueError, match=r"scale_inv has shape \(1, 1\), expected"):
        native.load().fp8_dequant(w, s[:1, :1], block)


def test_the_portable_build_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built for the compiler's baseline CPU (no -march=native: the fallback when the native flags fail), the kernels
    still pass the self-test and write the reference's bytes."""
    monkeypatch.setenv("DSHUB_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "ARCH_FLAGS", ((),))
    lib = native._Lib(native.build())
    x = _rows(512)
    for name in native.TYPES:
        assert torch.equal(lib.run(name, x), QUANTIZERS[name](x)), name
