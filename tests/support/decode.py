"""Independent readers and decoders the conversion tests compare dshub's output with: every tensor of a
safetensors directory, block-FP8 with per-tile scales, MXFP4 (e2m1 codes, e8m0 scales per 32) from the bits."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open


def load_all(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for shard in sorted(path.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def fp8_reference(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """One 128x128 tile at a time, its scale as a Python float (e8m0 widened by torch), cropped at the edges."""
    rows, cols = weight.shape
    out = torch.empty(rows, cols, dtype=torch.bfloat16)
    for i in range(0, rows, 128):
        for j in range(0, cols, 128):
            s = float(scale[i // 128, j // 128].to(torch.float32))
            out[i : i + 128, j : j + 128] = (weight[i : i + 128, j : j + 128].to(torch.float32) * s).to(torch.bfloat16)
    return out


def mxfp4_reference(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """e2m1 from its bits (sign, 2-bit exponent with bias 1, 1-bit mantissa) times 2^(byte - 127) per 32 inputs."""
    b = codes.view(torch.uint8).to(torch.int32)
    c = torch.stack((b & 0xF, b >> 4), dim=-1).reshape(codes.shape[0], -1)
    sign, exp, man = c >> 3, (c >> 1) & 3, (c & 1).to(torch.float32)
    mag = torch.where(exp == 0, man * 0.5, (1 + man * 0.5) * torch.exp2((exp - 1).to(torch.float32)))
    e = scale.view(torch.uint8).to(torch.int32).repeat_interleave(32, dim=1) - 127
    return torch.ldexp(torch.where(sign == 1, -mag, mag), e).to(torch.bfloat16)
