"""The `native` codec backend: dshub's own C kernels (kq_native.c), built on first use, for Q2_K..Q6_K
and for the block-FP8 -> float32 dequantization that feeds them.

They compute llama.cpp's reference bytes (the torch port in kquants.py is their specification) with the groups of a
super-block searched side by side in SIMD lanes, several times faster than ggml's scalar search. Types and paths they
do not cover (an importance matrix, the other types) go to the next backend: ggml when its library loads, else torch.

Building: the C file ships with the package; the first use compiles it with the system C compiler (`$CC`, else `cc`,
`gcc` or `clang`) into `$DSHUB_NATIVE_CACHE` (default `~/.cache/dshub/native`), named by a hash of the source, the
compiler and its flags, so a machine builds it once; the build goes to a temporary name and is renamed into place.
Every load runs a self-test: a few super-blocks of each type must give the torch reference's bytes, else the library
is refused (a compiler that changes float semantics cannot write wrong bytes). No compiler, a failed build, a failed
self-test or `DSHUB_NATIVE=0` (no compiling at run time) make the backend unavailable with the reason;
`--codec-backend auto` then uses the next one.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import torch

from dshub.quant.fp8 import byte_lut
from dshub.quant.gguf.checks import check_finite, check_imatrix, check_rows
from dshub.quant.gguf.types import GGML_TYPES
from dshub.quant.gguf import ggml
from dshub.quant.registry import BackendUnavailable, LoadedOnce, get_codec, register_codec

SOURCE = Path(__file__).with_name("kq_native.c")
ABI = 4
TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
QK_K = 256
# -ffp-contract=off: no fused multiply-add (the reference rounds every product); never -ffast-math.
BASE_FLAGS = ("-O2", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-fno-strict-aliasing")
ARCH_FLAGS = (("-march=native",), ())  # tried in order: the build machine's vector units, then the compiler's default
SELF_TEST_BLOCKS = 6


class NativeUnavailable(BackendUnavailable):
    """The native kernels cannot be used here; the message says why."""


def cache_dir() -> Path:
    """Where built libraries are kept."""
    env = os.environ.get("DSHUB_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dshub" / "native"


def _compiler() -> str:
    if os.environ.get("DSHUB_NATIVE", "1").strip().lower() in ("0", "off", "no", "false"):
        raise NativeUnavailable("turned off by DSHUB_NATIVE=0")
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    raise NativeUnavailable("no C compiler found (set CC, or install gcc or clang)")


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"C compiler {cc!r} cannot be run: {e}") from None
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else cc


def build(cc: str | None = None) -> Path:
    """The compiled library for this source and machine, compiling it when the cache has none."""
    cc = cc or _compiler()
    source = SOURCE.read_bytes()
    ident = _compiler_id(cc)
    errors = []
    for arch in ARCH_FLAGS:
        flags = (*BASE_FLAGS, *arch)
        key = hashlib.sha256(b"\0".join([source, ident.encode(), " ".join(flags).encode(),
                                         platform.machine().encode(), _cpu_id().encode()])).hexdigest()[:20]
        target = cache_dir() / f"libdshub_kq-{key}.so"
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
            os.close(fd)
        except OSError as e:
            raise NativeUnavailable(f"cannot write the native kernels' cache {target.parent} ({e.strerror}); set "
                                    "DSHUB_NATIVE_CACHE to a writable directory") from None
        try:
            run = subprocess.run([*cc.split(), *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                                 timeout=300)
            if run.returncode == 0:
                with open(tmp, "rb") as f:  # on disk before it takes the name (a crash cannot leave a truncated cache)
                    os.fsync(f.fileno())
                os.replace(tmp, target)
                return target
            errors.append((run.stderr.strip().splitlines() or ["failed"])[-1])
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(str(e))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise NativeUnavailable(f"{cc} could not build {SOURCE.name}: {errors[-1]}")


def _cpu_id() -> str:
    """The CPU's feature flags (a library built with -march=native is only reused on the same kind of CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


class _Lib:
    """The loaded library with typed entry points, self-tested against the torch reference."""

    def __init__(self, path: Path):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise NativeUnavailable(f"{path} cannot be loaded: {e}") from None
        lib.dshub_kq_abi.restype = ctypes.c_int
        if lib.dshub_kq_abi() != ABI:
            raise NativeUnavailable(f"{path} has layout {lib.dshub_kq_abi()}, dshub expects {ABI}")
        self.fns = {}
        for name in TYPES:
            fn = getattr(lib, f"dshub_quantize_{name.lower()}")
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            self.fns[name] = fn
        self.dequant_fns = {}
        for dtype, fn in ((torch.float32, lib.dshub_fp8_block_dequant_f32), (torch.bfloat16, lib.dshub_fp8_block_dequant_bf16)):
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 5
            self.dequant_fns[dtype] = fn
        self.lib, self.path = lib, path
        self._self_test()

    def fp8_dequant(self, weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """fp32(w) * fp32(scale_inv) per block in one pass (weight [rows, cols] of an 8-bit float), as float32
        (exact) or rounded to bfloat16 (nearest even)."""
        rows, cols = weight.shape
        br, bc = block
        w = weight.contiguous().view(torch.uint8)
        s = scale_inv.to(torch.float32).contiguous()
        if s.shape != (-(-rows // br), -(-cols // bc)):
            raise ValueError(f"scale_inv has shape {tuple(s.shape)}, expected {(-(-rows // br), -(-cols // bc))} for "
                             f"{rows} x {cols} in {br} x {bc} blocks")
        lut = torch.from_numpy(byte_lut(weight.dtype))
        out = torch.empty((rows, cols), dtype=dtype)
        self.dequant_fns[dtype](w.data_ptr(), lut.data_ptr(), s.data_ptr(), out.data_ptr(), rows, cols, br, bc, s.shape[1])
        return out

    def run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """float32 [rows, cols] (contiguous, cols a multiple of 256) -> the type's bytes [rows, row bytes]."""
        rows, cols = x.shape
        out = torch.empty((rows, GGML_TYPES[name].row_bytes(cols)), dtype=torch.uint8)
        self.fns[name](x.data_ptr(), out.data_ptr(), rows * cols // QK_K)  # ctypes releases the GIL
        return out

    def _self_test(self) -> None:
        from dshub.quant.fp8 import dequant_fp8_block_bf16, dequant_fp8_block_f32  # the references, to check a library
        from dshub.quant.gguf.kquants import QUANTIZERS

        g = torch.Generator().manual_seed(20261201)
        x = torch.randn((SELF_TEST_BLOCKS, QK_K), generator=g) * torch.logspace(-3, 2, SELF_TEST_BLOCKS)[:, None]
        x[1, :40] = 0.0  # an all-zero group and a constant one: the searches' early exits
        x[2, 64:96] = 0.25
        for name in TYPES:
            if not torch.equal(self.run(name, x), QUANTIZERS[name](x)):
                raise NativeUnavailable(f"{self.path}: {name} differs from the reference quantizer on the self-test "
                                        "(a compiler changing float semantics?); not used")
        codes = torch.arange(256, dtype=torch.uint8)  # every e4m3 value (nan included), at odd offsets
        w = torch.cat([codes, codes.flip(0)]).repeat(3)[:3 * 150].view(3, 150).view(torch.float8_e4m3fn)
        s = torch.tensor([[0.5, -3e-3], [7.0, 1e-30]])
        for dtype, ref in ((torch.float32, dequant_fp8_block_f32), (torch.bfloat16, dequant_fp8_block_bf16)):
            got, want = self.fp8_dequant(w, s, (2, 128), dtype), ref(w, s, (2, 128))
            if not torch.equal(got.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                               want.view(torch.int16 if dtype == torch.bfloat16 else torch.int32)):
                raise NativeUnavailable(f"{self.path}: FP8 dequantization to {dtype} differs from the reference on "
                                        "the self-test; not used")


_library = LoadedOnce(lambda: _Lib(build()))
load = _library.load  # built and loaded once per process; NativeUnavailable (the same each time) when it cannot be
unavailable_reason = _library.unavailable_reason  # why the native kernels cannot be used here, or None


def quantize(name: str, x: torch.Tensor) -> torch.Tensor:
    """float32 [rows, cols] -> `name`'s reference bytes by the native kernels."""
    check_rows(x, name, QK_K, "super-block size")
    check_finite(x, name)
    return load().run(name, x.contiguous())


def _codec(name: str) -> Callable[..., torch.Tensor]:
    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        if imatrix is not None:  # the _impl search is not ported: the next backend computes it
            check_imatrix(imatrix, name, x.shape[1])
            return fallback(name)(x, imatrix)
        return quantize(name, x)

    codec.__name__ = f"native_quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes by dshub's native kernels (imatrix: the next backend)."
    return codec


def fallback(name: str) -> Callable[..., torch.Tensor]:
    """The codec that computes what the native kernels do not: ggml's when its library loads, else torch's."""
    return get_codec(f"gguf_{name}", "cpu", "ggml" if ggml.unavailable_reason() is None else "torch")


for _name in TYPES:
    register_codec(f"gguf_{_name}", "native")(_codec(_name))


@register_codec("fp8_block_dequant_f32", "native")
def dequant_fp8_block_f32(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Exact fp32(w) * fp32(scale_inv) per block (edges cropped), the torch reference's values in one native pass."""
    return load().fp8_dequant(weight, scale_inv, block)


@register_codec("fp8_block_dequant_bf16_rows", "native")
def dequant_fp8_block_bf16_rows(weight: torch.Tensor, scale_inv: torch.Tensor,
                                block: tuple[int, int] = (128, 128)) -> Iterator[torch.Tensor]:
    """bf16(fp32(w) * fp32(scale_inv)), the torch reference's bits, one row block at a time (never the whole tensor)."""
    lib, br = load(), block[0]
    s = scale_inv.to(torch.float32)
    for i, r0 in enumerate(range(0, weight.shape[0], br)):
        yield lib.fp8_dequant(weight[r0:r0 + br], s[i:i + 1], block, torch.bfloat16)
