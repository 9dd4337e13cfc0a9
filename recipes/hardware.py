"""Accelerator table: memory, interconnect, low-precision support. Facts, one row per card.

Sources: memory sizes from ../shared/reference/serving.md §5 "Cards" (which cites the vLLM recipes'
hardware taxonomy for B200's usable 180 GB); RTX 4090/5090 memory and FP8/FP4 support from NVIDIA's
product specifications (Ada sm_89 has FP8 tensor cores, Blackwell adds FP4); AMD MI3xx from AMD's
Instinct data sheets (MI300X/MI325X FP8, MI355X adds MXFP4).
"""
from __future__ import annotations

from dataclasses import dataclass

from dshub.errors import UsageError


@dataclass(frozen=True)
class GPU:
    """One accelerator model. `memory_gb` is usable device memory in 10^9 bytes."""

    name: str
    label: str
    memory_gb: float
    vendor: str  # "nvidia" | "amd"
    arch: str  # "ampere" | "ada" | "hopper" | "blackwell" | "cdna3" | "cdna4"
    interconnect: str  # "nvlink" | "nvlink-reduced" | "nvl72" | "xgmi" | "pcie"
    fp8: bool  # native FP8 tensor cores
    fp4: bool  # native FP4 (NVFP4 / MXFP4)
    gpus_per_node: int = 8

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_ROWS: tuple[GPU, ...] = (
    GPU("a100-40", "NVIDIA A100 40GB", 40, "nvidia", "ampere", "nvlink", False, False),
    GPU("a100", "NVIDIA A100 80GB", 80, "nvidia", "ampere", "nvlink", False, False),
    GPU("h100", "NVIDIA H100 80GB SXM", 80, "nvidia", "hopper", "nvlink", True, False),
    GPU("h100-nvl", "NVIDIA H100 NVL 94GB", 94, "nvidia", "hopper", "pcie", True, False),
    # H800: the China-market H100 with NVLink cut to 400 GB/s.
    GPU("h800", "NVIDIA H800 80GB", 80, "nvidia", "hopper", "nvlink-reduced", True, False),
    GPU("h20", "NVIDIA H20 96GB", 96, "nvidia", "hopper", "nvlink", True, False),
    GPU("h20-141", "NVIDIA H20-3e 141GB", 141, "nvidia", "hopper", "nvlink", True, False),
    GPU("h200", "NVIDIA H200 141GB", 141, "nvidia", "hopper", "nvlink", True, False),
    GPU("b200", "NVIDIA B200 (180GB usable)", 180, "nvidia", "blackwell", "nvlink", True, True),
    GPU("b300", "NVIDIA B300 ~268GB", 268, "nvidia", "blackwell", "nvlink", True, True),
    GPU("gb200", "NVIDIA GB200 NVL72 (~192GB per GPU)", 192, "nvidia", "blackwell", "nvl72", True, True, 4),
    GPU("gb300", "NVIDIA GB300 NVL72 (288GB per GPU)", 288, "nvidia", "blackwell", "nvl72", True, True, 4),
    GPU("mi300x", "AMD Instinct MI300X 192GB", 192, "amd", "cdna3", "xgmi", True, False),
    GPU("mi325x", "AMD Instinct MI325X 256GB", 256, "amd", "cdna3", "xgmi", True, False),
    GPU("mi355x", "AMD Instinct MI355X 288GB", 288, "amd", "cdna4", "xgmi", True, True),
    GPU("l40s", "NVIDIA L40S 48GB", 48, "nvidia", "ada", "pcie", True, False),
    GPU("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24, "nvidia", "ada", "pcie", True, False, 1),
    GPU("rtx5090", "NVIDIA GeForce RTX 5090 32GB", 32, "nvidia", "blackwell", "pcie", True, True, 1),
    GPU("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell 96GB", 96, "nvidia", "blackwell", "pcie", True, True),
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
