"""Every CLI option or argument that more than one command takes (or that has one meaning everywhere), declared once."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dshub.cli.output import json_requested


def lowercase(value: object) -> object:
    """Callback of the choice options users type: `--engine SGLang`, `--to BF16` mean the same as lowercase."""
    return value.lower() if isinstance(value, str) else value


def choice(option: str, help: str, **kw: object) -> typer.Option:  # noqa: A002 - typer's own keyword
    """An option naming one of a set (case-insensitive; an unknown one fails listing the known, with a guess)."""
    return typer.Option(option, help=help, callback=lowercase, **kw)


# ---- every command
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.", is_eager=True, callback=json_requested)]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop before writing anything.")]

# ---- synth / info / verify
PathArg = Annotated[Path, typer.Argument(help="Checkpoint directory (HF layout).")]

# ---- convert
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Parallel worker threads.")]
DeviceOpt = Annotated[str, choice("--device", "auto | cpu | cuda")]

# ---- download
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit (default: main; master on ModelScope).")]
PatternOpt = Annotated[Optional[list[str]], typer.Option(help="fnmatch pattern on repo paths; repeatable.")]

# ---- plan / recipe
ModelArg = Annotated[str, typer.Argument(help="Catalog name (e.g. deepseek-r1), hub id, or local checkpoint dir.")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU type, e.g. h100, h200, h20, b200, mi300x.")]
GpuMemoryOpt = Annotated[Optional[str], typer.Option("--gpu-memory", metavar="SIZE", help="Memory per GPU as the card reports it (nvidia-smi memory.total), e.g. 143771MiB or 140.4GiB (default: the hardware table's figure).")]
HostRamOpt = Annotated[Optional[str], typer.Option("--host-ram", metavar="SIZE", help="System RAM of the box, e.g. 128GiB: llama.cpp plans the experts it keeps in RAM against it.")]
GpnOpt = Annotated[Optional[int], typer.Option("--gpus-per-node", min=1, help="GPUs per node (default: the card's usual 8).")]
NodesOpt = Annotated[int, typer.Option("--nodes", min=1, help="Number of nodes.")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="fp8 | bf16 | int4 | fp4-fp8 | gguf:TYPE (default: as shipped).")]
ContextOpt = Annotated[Optional[int], typer.Option("--context", min=1, help="Context length to serve (default: the most that fits).")]
EngineOpt = Annotated[str, choice("--engine", "vllm | sglang | llamacpp")]
GoalOpt = Annotated[str, choice("--goal", "latency (TP/TEP) | throughput (DP+EP)")]
MtpOpt = Annotated[Optional[bool], typer.Option("--mtp/--no-mtp", help="MTP speculative decoding (default: on for latency).")]
KvOpt = Annotated[Optional[str], choice("--kv-dtype", "KV cache: bf16 | fp8 (vLLM/SGLang); bf16 | q8_0 | q4_0 (llama.cpp).")]
FractionOpt = Annotated[Optional[float], typer.Option("--memory-fraction", min=0.1, max=1.0, help="Share of GPU memory the engine may use.")]
VersionOpt = Annotated[Optional[str], typer.Option("--engine-version", help="Engine release (default: the one recipes are validated against).")]

# ---- convert / run / download: where the work runs
ExecutorOpt = Annotated[str, choice("--executor", "local (threads here) | ray (one task per file on a Ray cluster; needs the ray extra: pip install dshub\\[ray]).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join, e.g. 10.0.0.1:6379 (default: RAY_ADDRESS, else a local one).")]
