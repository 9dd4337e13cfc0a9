"""The legacy GGUF codecs (F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0) as registered: `codec(x, imatrix=None)`.

Without an imatrix these types use the reference quantizers in `legacy.py`. With one, Q4_0/Q4_1/Q5_0/Q5_1 take
llama.cpp's `quantize_row_q*_impl` paths: each value weighted by `qw · sqrt(σ² + x²)` (σ² = Σx²/n over the whole row),
scales searched with make_qx_quants (Q4_0/Q5_0) or make_qkx3_quants (Q4_1/Q5_1). F32/F16/BF16/Q8_0 have no
importance-weighted path in llama.cpp and ignore it. `quantize(type, x, imatrix, device)` and `quantize_slices`
dispatch any GGUF type through the codec registry.
"""
from __future__ import annotations

from typing import Callable

import torch

from dshub.quant.registry import get_codec, register_codec
from dshub.quant.gguf.kq_common import F32, make_qkx2, make_qx, seqsum, sqrt_f32
from dshub.quant.gguf.legacy import QUANTIZERS, _f16_bytes, _high_bits, _nibbles
from dshub.quant.gguf.checks import check_finite
from dshub.quant.gguf.types import GGML_TYPES

QK = 32
CHUNK_ELEMENTS = 1 << 21


def _weights(xr: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """Per-value weights [32, S] for rows `xr` [r, cols]: qw[col] · sqrt(σ²_row + x²), σ² summed sequentially."""
    rows, cols = xr.shape
    xt = xr.t().contiguous()
    sigma2 = seqsum(xt * xt) / float(cols)  # [r]
    xs = xr.reshape(-1, QK).t()
    s2 = sigma2.repeat_interleave(cols // QK)
    q = qw.view(-1, QK).repeat(rows, 1).t()
    return q * sqrt_f32(xs * xs + s2)


def _bytes(L: torch.Tensor) -> torch.Tensor:
    """Element-major [32, S] levels -> uint8 [S, 32] blocks, as legacy.py's packers take them."""
    return L.t().to(torch.uint8)


def _f16(v: torch.Tensor) -> torch.Tensor:
    return _f16_bytes(v[:, None])


def _q4_0(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d, L = make_qx(xs, 8, w)
    return torch.cat([_f16(d), _nibbles(_bytes(L))], dim=1)


def _q5_0(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d, L = make_qx(xs, 16, w)
    q = _bytes(L)
    return torch.cat([_f16(d), _high_bits(q), _nibbles(q)], dim=1)


def _q4_1(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d, the_min, L = make_qkx2(xs, w, 15, -0.9, 0.05, 36, False)
    return torch.cat([_f16(d), _f16(-the_min), _nibbles(_bytes(L))], dim=1)


def _q5_1(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d, the_min, L = make_qkx2(xs, w, 31, -0.9, 0.05, 36, False)
    q = _bytes(L)
    return torch.cat([_f16(d), _f16(-the_min), _high_bits(q), _nibbles(q)], dim=1)


_IMPLS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1,
}


def _legacy_imatrix(name: str, x: torch.Tensor, imatrix: torch.Tensor) -> torch.Tensor:
    t = GGML_TYPES[name]
    rows, cols = x.shape
    if x.dtype != F32 or cols % QK:
        raise ValueError(f"{name}: expected float32 rows of a multiple of {QK}, got {tuple(x.shape)} {x.dtype}")
    if imatrix.numel() != cols:
        raise ValueError(f"{name}: importance matrix has {imatrix.numel()} values, expected {cols} (one per column)")
    check_finite(x, name)
    out = torch.empty((rows, cols // QK * t.type_size), dtype=torch.uint8)
    qw = imatrix.to(F32).contiguous()
    step = max(1, CHUNK_ELEMENTS // cols)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        xr = x[r0:r1].contiguous()
        w = _weights(xr, qw)
        out[r0:r1] = _IMPLS[name](xr.reshape(-1, QK).t().contiguous(), w.contiguous()).view(r1 - r0, -1)
    return out


def _codec(name: str) -> Callable[..., torch.Tensor]:
    plain = QUANTIZERS[name]

    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        if imatrix is not None and name in _IMPLS:
            return _legacy_imatrix(name, x, imatrix)
        return plain(x)

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes (llama.cpp reference; with an imatrix, its _impl path where it has one)."
    return codec


for _name in QUANTIZERS:
    register_codec(f"gguf_{_name}", "cpu")(_codec(_name))


def quantize(type_name: str, x: torch.Tensor, imatrix: torch.Tensor | None = None, device: str = "cpu") -> torch.Tensor:
    """Quantize float32 `x` [rows, cols] to GGUF type `type_name`, as llama-quantize would (imatrix optional)."""
    codec = get_codec(f"gguf_{type_name.upper()}", device)
    return codec(x) if imatrix is None else codec(x, imatrix=imatrix)


def quantize_slices(codec: Callable[..., torch.Tensor], x: torch.Tensor, imatrix, row0: int, rows_per_slice: int) -> torch.Tensor:
    """Quantize rows `row0 ..` of a (possibly 3-D) tensor with `codec` (a registered `gguf_<TYPE>` codec), where
    slice `s` (expert or head, `rows_per_slice` rows each) uses importance row `imatrix[s]` (float32 [slices, cols],
    numpy or torch); `rows_per_slice` 0 means one slice."""
    imx = torch.as_tensor(imatrix, dtype=F32)
    if rows_per_slice <= 0:
        return codec(x, imatrix=imx[0])
    out, r = [], 0
    while r < x.shape[0]:
        s = (row0 + r) // rows_per_slice
        end = min(x.shape[0], (s + 1) * rows_per_slice - row0)
        out.append(codec(x[r:end], imatrix=imx[s]))
        r = end
    return torch.cat(out, dim=0)
