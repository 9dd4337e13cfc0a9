"""Every Triton kernel compiles to a GPU binary (PTX and cubin for sm_80 and sm_90) on a machine without a GPU.

The interpreter accepts code the GPU compiler rejects (non-constexpr globals, `div_rn` on unequal shapes, ...),
so CI also compiles each kernel ahead of time with Triton's bundled ptxas. Runs in a subprocess: the test
session uses the interpreter (TRITON_INTERPRET=1), under which kernels cannot be compiled.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.tools import REPO_ROOT as ROOT

I32 = "i32"
# kernel -> list of (pointer/scalar argument types, constexprs, options) variants
F8 = {"BLOCK_R": 128, "BLOCK_C": 128, "TILE_R": 32, "TILE_C": 128}


def specs() -> list[tuple[str, object, dict[str, str], dict[str, object], dict[str, object]]]:
    """(label, kernel, argument types, constexprs, compile options) for every kernel variant the codecs launch."""
    import numpy as np

    from dshub.quant.mxfp4 import E8M0_NAN, E8M0_ZERO_BITS, F32_QNAN_BITS
    from dshub.quant.triton import fp8, gguf_kquants, gguf_legacy, int4, mxfp4

    nofma = {"enable_fp_fusion": False}
    out = []
    for bf16 in (True, False):
        out.append((f"fp8 bf16={bf16}", fp8._fp8_block_dequant_kernel,
                    {"w_ptr": "*u8", "s_ptr": "*fp32", "lut_ptr": "*fp32", "out_ptr": "*i16" if bf16 else "*fp32",
                     "rows": I32, "cols": I32, "s_stride": I32}, {**F8, "OUT_BF16": bf16}, {"num_warps": fp8.NUM_WARPS}))
        out.append((f"mxfp4 bf16={bf16}", mxfp4._mxfp4_dequant_kernel,
                    {"q_ptr": "*u8", "s_ptr": "*u8", "out_ptr": "*i16" if bf16 else "*fp32", "rows": I32, "k": I32, "nblk": I32},
                    {"BLOCK": 32, "TR": mxfp4.TILE_R, "TC": mxfp4.TILE_C, "OUT_BF16": bf16, "ZERO_BITS": E8M0_ZERO_BITS,
                     "NAN_BYTE": E8M0_NAN, "NAN_BITS": F32_QNAN_BITS}, {"num_warps": mxfp4.NUM_WARPS}))
    for src, sym, sbf16, g in ((2, True, True, 128), (1, False, False, 32), (0, False, True, 64)):
        out.append((f"int4 quant src={src} sym={sym} bf16={sbf16} g={g}", int4._int4_quant_kernel,
                    {"x_ptr": ["*fp32", "*i16", "*u8"][src], "si_ptr": "*fp32", "lut_ptr": "*fp32", "q_ptr": "*i8",
                     "s_ptr": "*i16" if sbf16 else "*fp16", "z_ptr": "*i8", "rows": I32, "cols": I32, "si_stride": I32, "ngroups": I32},
                    {"G": g, "TR": int4.TILE_ELEMS // g, "SRC": src, "FROM_FP8": src == 2, "BR": 128, "BC": 128, "SYM": sym,
                     "SCALE_BF16": sbf16, "TINY": float(np.finfo(np.float16).tiny)}, {**nofma, "num_warps": int4.NUM_WARPS}))
    for awq in (False, True):
        out.append((f"int4 pack awq={awq}", int4._pack_kernel,
                    {"src_ptr": "*i8", "out_ptr": "*i32", **{n: I32 for n in ("src_rows", "src_cols", "out_rows", "out_cols",
                                                                            "ra", "rb", "rj", "ca", "cb", "cj")}},
                    {"OFFSET": 8, "AWQ": awq, "TA": int4.PACK_TILE[0], "TB": int4.PACK_TILE[1]}, {}))
    blocks = {"x_ptr": "*fp32", "out_ptr": "*u8", "flag_ptr": "*i32", "nblocks": I32}
    for name, (kern, params) in gguf_legacy.KERNELS.items():
        out.append((f"gguf {name}", kern, blocks, {"TB": gguf_legacy.BLOCKS_PER_PROGRAM, **params}, nofma))
    tb = {"TB": gguf_kquants.SB_PER_PROGRAM}
    out += [
        ("gguf Q6_K search", gguf_kquants._q6k_search_kernel,
         {"x_ptr": "*fp32", "lv_ptr": "*u8", "out_ptr": "*u8", "steps_ptr": "*fp32", "flag_ptr": "*i32", "nsb": I32},
         {**tb, "EPS": gguf_kquants.GROUP_MAX_EPS}, nofma),
        ("gguf Q6_K pack", gguf_kquants._q6k_pack_kernel, {"lv_ptr": "*u8", "out_ptr": "*u8", "nsb": I32}, tb, {}),
        ("gguf Q4_K search", gguf_kquants._q4k_search_kernel,
         {"x_ptr": "*fp32", "lv_ptr": "*u8", "lsm_ptr": "*u8", "out_ptr": "*u8", "steps_ptr": "*fp32", "flag_ptr": "*i32", "nsb": I32},
         tb, {**nofma, "num_warps": 2}),
        ("gguf Q4_K pack", gguf_kquants._q4k_pack_kernel, {"lv_ptr": "*u8", "lsm_ptr": "*u8", "out_ptr": "*u8", "nsb": I32}, tb, {}),
    ]
    return out


def compile_all(archs: tuple[int, ...]) -> list[str]:
    """Compile every spec for every arch; return one line per failure."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failures = []
    for label, kern, types, consts, options in specs():
        sig = {**types, **{n: "constexpr" for n in consts}}
        missing = [n for n in kern.arg_names if n not in sig]
        if missing:
            failures.append(f"{label}: spec lacks {missing}")
            continue
        src = ASTSource(kern, {n: sig[n] for n in kern.arg_names}, {(kern.arg_names.index(n),): v for n, v in consts.items()})
        for arch in archs:
            try:
                triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
            except Exception as e:  # report every kernel, not just the first
                failures.append(f"{label} sm_{arch}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}")
    return failures


@pytest.mark.slow
def test_every_kernel_compiles_for_the_gpu(tmp_path):
    import triton  # noqa: F401  (the [test] extra installs it)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(ROOT), TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    problems = compile_all((80, 90))
    print("\n".join(problems) or "all kernels compiled")
    sys.exit(1 if problems else 0)
