"""Independent INT4 readers, written from the published layouts (hub-int4.md B5/B6), not from dshub's packers:
compressed-tensors pack-quantized, GPTQ v1 and AWQ GEMM words back to unsigned levels and zero points."""
from __future__ import annotations

import numpy as np
import torch


def nibbles(words: torch.Tensor) -> np.ndarray:
    """[..., w] int32 -> [..., w, 8] unsigned nibbles, nibble i = bits 4i..4i+3."""
    u = words.numpy().astype(np.int64) & 0xFFFFFFFF
    return np.stack([(u >> (4 * i)) & 0xF for i in range(8)], axis=-1)


def read_ct(t: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
    out, inp = t["weight_shape"].tolist()
    q = nibbles(t["weight_packed"]).reshape(out, -1)[:, :inp] - 8
    z = None
    if "weight_zero_point" in t:
        zp = t["weight_zero_point"]  # [ceil(out/8), groups], packed along dim 0
        z = nibbles(zp.T.contiguous()).reshape(zp.shape[1], -1)[:, :out].T - 8
    return q, z


def read_gptq(t: dict[str, torch.Tensor], g: int) -> tuple[np.ndarray, np.ndarray]:
    """W[k, n] = scales[g_idx[k], n] * (q[k, n] - (stored_z + 1)); qweight[r, n] holds q[8r + i, n] at 4i."""
    qw = t["qweight"].numpy().astype(np.int64) & 0xFFFFFFFF
    k8, n = qw.shape
    q = np.zeros((k8 * 8, n), dtype=np.int64)
    for i in range(8):
        q[i::8, :] = (qw >> (4 * i)) & 0xF
    z = nibbles(t["qzeros"]).reshape(t["qzeros"].shape[0], -1) + 1
    assert np.array_equal(t["g_idx"].numpy(), np.arange(k8 * 8) // g)
    return q, z


def read_awq(t: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """qweight[k, c] nibble p holds column 8c + [0,2,4,6,1,3,5,7][p]."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]

    def cols(words: torch.Tensor) -> np.ndarray:
        nb = nibbles(words)  # [r, c, 8] by nibble position
        v = np.zeros_like(nb)
        for p, col in enumerate(order):
            v[..., col] = nb[..., p]
        return v.reshape(words.shape[0], -1)

    return cols(t["qweight"]), cols(t["qzeros"])
