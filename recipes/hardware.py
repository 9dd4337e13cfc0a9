"""Accelerator table: memory as the card reports it, interconnect, low-precision support. Facts, one row per card.

Memory is what the driver reports (`nvidia-smi` memory.total in MiB, `rocm-smi` VRAM total in bytes), the figure the
engines budget against, not the marketed size: an H200 sold as "141 GB" reports 143771 MiB = 140.4 GiB = 150.8 GB.
Each row names where its figure comes from; rows with no report found keep the marketed size (10^9 bytes) and say so
(`--gpu-memory` overrides any of them). Other facts: NVIDIA's product specifications (Ada sm_89 has FP8 tensor cores,
Blackwell adds FP4), AMD's Instinct data sheets (MI300X/MI325X FP8, MI355X adds MXFP4), serving.md §5 "Cards".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dshub.errors import UsageError

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class GPU:
    """One accelerator model. `memory_bytes` is the device memory the driver reports; `memory_source` says how we
    know it."""

    name: str
    label: str
    memory_bytes: int
    memory_source: str
    vendor: str  # "nvidia" | "amd"
    arch: str  # "ampere" | "ada" | "hopper" | "blackwell" | "cdna3" | "cdna4"
    interconnect: str  # "nvlink" | "nvlink-reduced" | "nvl72" | "xgmi" | "pcie"
    fp8: bool  # native FP8 tensor cores
    fp4: bool  # native FP4 (NVFP4 / MXFP4)
    gpus_per_node: int = 8
    product: str | None = None  # the product name the driver reports (nvidia-smi), where a capture shows it

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GiB

    def to_dict(self) -> dict[str, object]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "memory_gib": round(self.memory_gib, 2)}


def _smi(mib: int, where: str) -> tuple[int, str]:
    return mib * MiB, f"nvidia-smi memory.total {mib} MiB ({where})"


def _marketed(gb: float) -> tuple[int, str]:
    return int(gb * 1e9), f"marketed {gb:g} GB (no driver report found; pass --gpu-memory with what the card reports)"


_H100 = _smi(81559, "modal-labs/modal-client#2797, NVIDIA/nccl#1264")
_H200 = _smi(143771, "public nvidia-smi captures of H200 nodes")
_ROWS: tuple[GPU, ...] = (
    GPU("a100-40", "NVIDIA A100 40GB", *_smi(40960, "modal-labs/modal-client#2797"), "nvidia", "ampere", "nvlink", False, False, product="NVIDIA A100-SXM4-40GB"),
    GPU("a100", "NVIDIA A100 80GB", *_smi(81920, "modal-labs/modal-client#2797"), "nvidia", "ampere", "nvlink", False, False, product="NVIDIA A100-SXM4-80GB"),
    GPU("h100", "NVIDIA H100 80GB SXM", *_H100, "nvidia", "hopper", "nvlink", True, False, product="NVIDIA H100 80GB HBM3"),
    GPU("h100-nvl", "NVIDIA H100 NVL 94GB", 99961274368, "driver total 99961274368 B (fastfetch-cli/fastfetch#1658)",
        "nvidia", "hopper", "pcie", True, False, product="NVIDIA H100 NVL"),
    # H800: the China-market H100 with NVLink cut to 400 GB/s; the same 80 GB HBM3 board as the H100 SXM.
    GPU("h800", "NVIDIA H800 80GB", _H100[0], "as the H100 SXM (same 80 GB HBM3 board): " + _H100[1],
        "nvidia", "hopper", "nvlink-reduced", True, False),
    GPU("h20", "NVIDIA H20 96GB", *_smi(97871, "NVIDIA/nvtrust#128"), "nvidia", "hopper", "nvlink", True, False, product="NVIDIA H20"),
    GPU("h20-141", "NVIDIA H20-3e 141GB", _H200[0], "as the H200 (same 141 GB HBM3e): " + _H200[1],
        "nvidia", "hopper", "nvlink", True, False),
    GPU("h200", "NVIDIA H200 141GB", *_H200, "nvidia", "hopper", "nvlink", True, False, product="NVIDIA H200"),
    GPU("b200", "NVIDIA B200 180GB", *_smi(183359, "NVIDIA/TensorRT-LLM#10278"), "nvidia", "blackwell", "nvlink", True, True, product="NVIDIA B200"),
    GPU("b300", "NVIDIA B300 ~268GB", *_marketed(268), "nvidia", "blackwell", "nvlink", True, True),
    GPU("gb200", "NVIDIA GB200 NVL72 (~192GB per GPU)", *_marketed(192), "nvidia", "blackwell", "nvl72", True, True, 4),
    GPU("gb300", "NVIDIA GB300 NVL72 (288GB per GPU)", *_marketed(288), "nvidia", "blackwell", "nvl72", True, True, 4),
    GPU("mi300x", "AMD Instinct MI300X 192GB", 206141652992,
        "rocm-smi VRAM Total Memory 206141652992 B (ROCm/legacy-rocm-build#4750)", "amd", "cdna3", "xgmi", True, False),
    GPU("mi325x", "AMD Instinct MI325X 256GB", *_marketed(256), "amd", "cdna3", "xgmi", True, False),
    GPU("mi355x", "AMD Instinct MI355X 288GB", *_marketed(288), "amd", "cdna4", "xgmi", True, True),
    GPU("l40s", "NVIDIA L40S 48GB", *_smi(46068, "modal-labs/modal-client#2797"), "nvidia", "ada", "pcie", True, False, product="NVIDIA L40S"),
    GPU("rtx4090", "NVIDIA GeForce RTX 4090 24GB", *_smi(24564, "RLinf/RLinf#255"), "nvidia", "ada", "pcie", True, False, 1, product="NVIDIA GeForce RTX 4090"),
    GPU("rtx5090", "NVIDIA GeForce RTX 5090 32GB", *_smi(32607, "noonghunna/club-3090#1261"), "nvidia", "blackwell", "pcie",
        True, True, 1, product="NVIDIA GeForce RTX 5090"),
    GPU("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell 96GB", *_marketed(96), "nvidia", "blackwell", "pcie", True, True),
)

GPUS: dict[str, GPU] = {g.name: g for g in _ROWS}

# Other spellings users type -> table key.
_ALIASES: dict[str, str] = {
    "a100-80": "a100", "a100-80g": "a100", "a100-40g": "a100-40", "h100-80": "h100", "h100-sxm": "h100",
    "h20-96": "h20", "h20-3e": "h20-141", "h200-141": "h200", "mi300": "mi300x", "rtx-4090": "rtx4090",
    "rtx-5090": "rtx5090", "rtxpro6000": "rtx-pro-6000", "pro6000": "rtx-pro-6000",
}


def gpu(name: str) -> GPU:
    """Look a card up by name (case and `_`/space insensitive). Unknown names list the known ones."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key not in GPUS:
        raise UsageError(f"--gpu {name!r}: unknown GPU; known: {', '.join(GPUS)}")
    return GPUS[key]


_SIZE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>gib|gb|mib|mb|g|m)?", re.IGNORECASE)
_UNITS = {"gib": GiB, "g": GiB, None: GiB, "gb": 10**9, "mib": MiB, "m": MiB, "mb": 10**6}


def parse_memory(text: str, option: str = "--gpu-memory") -> int:
    """A memory size (`--gpu-memory`, `--host-ram`): `140.4GiB`, `143771MiB` (nvidia-smi), `150.7GB`; a bare number
    is GiB."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or float(m["n"]) <= 0:
        raise UsageError(f"{option} {text!r}: expected a size such as 143771MiB, 140.4GiB or 150.7GB")
    return int(float(m["n"]) * _UNITS[m["unit"].lower() if m["unit"] else None])


def with_memory(card: GPU, text: str | None) -> GPU:
    """The card with `--gpu-memory` in place of the table's figure."""
    if text is None:
        return card
    return replace(card, memory_bytes=parse_memory(text), memory_source=f"--gpu-memory {text}")
