"""Per-engine and per-(engine, model family) facts: images, ports, parsers, templates, minimum versions.

Sources (../shared/reference/serving.md): vLLM §1.3-1.6 ([R] vllm-project/recipes @8959cf6, vLLM docs and
issues named inline); SGLang §2 (sglang docs, [SC] sgl-cookbook @7b5bd9c); llama.cpp §3 (docs/docker.md,
llama.cpp#14557, Unsloth). Parser names were checked against vLLM 0.33.0's parser registries and SGLang
0.5.23's `--reasoning-parser`/`--tool-call-parser` choices (see tests/test_recipes_validators.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from dshub.errors import UsageError

from dshub.recipes.hardware import GPU


@dataclass(frozen=True)
class EngineFacts:
    """What every recipe for one engine shares."""

    name: str
    validated_version: str  # the release our tests check generated commands against; the default
    port: int
    host_argv: tuple[str, ...]  # how the server starts on a host install
    container_argv: tuple[str, ...]  # ... and inside the engine's image
    images: dict[str, str]  # vendor -> image repository
    formats: frozenset[str]  # weight formats it loads (gguf:* as "gguf")
    memory_fraction: float  # default share of device memory the engine may use
    reserved_gb: float  # activations + CUDA graphs taken out of that share, per GPU
    multi_node: bool
    health_path: str = "/health"
    model_cache: str = "/root/.cache/huggingface"  # where the image expects the HF cache


ENGINES: dict[str, EngineFacts] = {
    # vLLM: default --gpu-memory-utilization 0.9; ~5 GB/GPU activations + graphs (serving.md §5 "vLLM sizing").
    "vllm": EngineFacts(
        "vllm", "0.33.0", 8000, ("vllm", "serve"), ("vllm", "serve"),
        {"nvidia": "vllm/vllm-openai", "amd": "vllm/vllm-openai-rocm"},
        frozenset({"fp8", "bf16", "int4", "fp4-fp8"}), 0.90, 5.0, True),
    # SGLang: --mem-fraction-static covers weights + KV only; activations live in the rest (serving.md §5).
    # 0.85 sits between the cookbook's 0.82 (H200/B200) and the LWS example's 0.93.
    "sglang": EngineFacts(
        "sglang", "0.5.23", 30000, ("python3", "-m", "sglang.launch_server"), ("python3", "-m", "sglang.launch_server"),
        {"nvidia": "lmsysorg/sglang", "amd": "lmsysorg/sglang"},
        frozenset({"fp8", "bf16", "int4", "fp4-fp8"}), 0.85, 0.0, True),
    # llama.cpp: the whole card, less compute buffers (our estimate: 4 GB per GPU for DeepSeek MLA at -ub 512).
    "llamacpp": EngineFacts(
        "llamacpp", "b10434", 8080, ("llama-server",), ("/app/llama-server",),
        {"nvidia": "ghcr.io/ggml-org/llama.cpp", "amd": "ghcr.io/ggml-org/llama.cpp"},
        frozenset({"gguf"}), 1.0, 4.0, False, model_cache="/models"),
}


def engine(name: str) -> EngineFacts:
    key = name.strip().lower().replace(".", "").replace("-", "").replace("_", "")
    if key not in ENGINES:
        raise UsageError(f"--engine {name!r}: unknown engine; known: {', '.join(ENGINES)}")
    return ENGINES[key]


def image_for(eng: EngineFacts, gpu: GPU, version: str, override: str | None = None) -> str:
    """The container image for an engine release on a GPU (serving.md §1.4, §2 Docker, §3 Images)."""
    if override:
        return override
    return f"{eng.images[gpu.vendor]}:{IMAGE_TAGS[eng.name](version, gpu)}"


IMAGE_TAGS: dict[str, Callable[[str, GPU], str]] = {
    # vLLM: vX.Y.Z on NVIDIA; the ROCm repository publishes latest/nightly only (vllm recipes computeDockerMeta).
    "vllm": lambda v, gpu: f"v{v}" if gpu.vendor == "nvidia" else "latest",
    # SGLang ROCm images name the ROCm release and card family: v0.5.x-rocm700-mi30x / -rocm720-mi35x.
    "sglang": lambda v, gpu: f"v{v}" + ROCM_SUFFIX.get(gpu.arch, ""),
    # llama.cpp publishes server-cuda / server-rocm images per build: server-cuda-b<N>.
    "llamacpp": lambda v, gpu: ("server-rocm" if gpu.vendor == "amd" else "server-cuda") + f"-{v}",
}
ROCM_SUFFIX = {"cdna3": "-rocm700-mi30x", "cdna4": "-rocm720-mi35x"}
UNPINNED_TAGS = {"latest", "nightly"}


def version_key(v: str) -> tuple[int, ...]:
    """Comparable release number: `0.33.0` -> (0, 33, 0); llama.cpp `b10434` -> (10434,)."""
    nums = re.findall(r"\d+", v)
    if not nums:
        raise UsageError(f"--engine-version {v!r}: not a release number")
    return tuple(int(n) for n in nums)


@dataclass(frozen=True)
class FamilyFacts:
    """One model family on one engine."""

    reasoning_parser: str | None = None
    tool_parser: str | None = None
    chat_template: str | None = None  # path inside the engine's image
    tokenizer_mode: str | None = None
    min_version: str | None = None
    min_version_source: str = ""
    mtp_tokens: int = 3
    extra_args: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    unsupported_vendors: frozenset[str] = field(default_factory=frozenset)
    prefer_layouts: tuple[str, ...] = ()  # layout kinds to try first, whatever the goal
    prefer_reason: str = ""


_VLLM_TPL = "/vllm-workspace/examples/tool_chat_template_{}.jinja"
_SGL_TPL = "/sgl-workspace/sglang/examples/chat_template/tool_chat_template_{}.jinja"
_V3_MIN = ("0.12.0", "vllm recipes: min_vllm_version 0.12.0 (DeepSeek-R1.yaml)")

FAMILIES: dict[tuple[str, str], FamilyFacts] = {
    # vLLM (serving.md §1.3 "Reasoning parser", "Tools"; PR#18874 for the R1 tool template)
    ("vllm", "v3"): FamilyFacts("deepseek_v3", "deepseek_v3", _VLLM_TPL.format("deepseekv3"), None, *_V3_MIN),
    ("vllm", "r1"): FamilyFacts("deepseek_r1", "deepseek_v3", _VLLM_TPL.format("deepseekr1"), None, *_V3_MIN),
    ("vllm", "v31"): FamilyFacts("deepseek_v3", "deepseek_v31", _VLLM_TPL.format("deepseekv31"), None, *_V3_MIN),
    ("vllm", "v32"): FamilyFacts(
        "deepseek_v3", "deepseek_v32", None, "deepseek_v32", "0.18.0", "vllm recipes: V3.2 min_vllm_version 0.18.0",
        notes=("V3.2 on Hopper needs DeepGEMM v2.1.1.post3 in the image (vllm recipes V3.2 guide).",),
        prefer_layouts=("dep",),
        prefer_reason="TP8 pads FlashMLA-Sparse's 16 heads per rank to 64; the V3.2 guide uses -dp 8 --enable-expert-parallel"),
    ("vllm", "kimi_k2"): FamilyFacts(None, "kimi_k2", None, None, *_V3_MIN),
    ("vllm", "kimi_k2_thinking"): FamilyFacts("kimi_k2", "kimi_k2", None, None, *_V3_MIN),
    ("vllm", "v4"): FamilyFacts(
        "deepseek_v4", "deepseek_v4", None, "deepseek_v4", "0.20.0", "vllm recipes: V4 needs vLLM >= 0.20",
        # V4 on MI300X is unsupported (vllm recipes V4 guide).
        mtp_tokens=2, extra_args=("--block-size", "256"), unsupported_vendors=frozenset({"amd"})),
    # SGLang (serving.md §2 "Parsers"; names differ from vLLM's)
    ("sglang", "v3"): FamilyFacts("deepseek-v3", "deepseekv3", _SGL_TPL.format("deepseekv3")),
    ("sglang", "r1"): FamilyFacts("deepseek-r1", "deepseekv3", _SGL_TPL.format("deepseekr1")),
    ("sglang", "v31"): FamilyFacts("deepseek-v3", "deepseekv31", _SGL_TPL.format("deepseekv31")),
    ("sglang", "v32"): FamilyFacts("deepseek-v3", "deepseekv32", prefer_layouts=("dp-attention",),
                                   prefer_reason="sglang deepseek_v32.md serves V3.2 with --tp 8 --dp 8 --enable-dp-attention"),
    ("sglang", "kimi_k2"): FamilyFacts(None, "kimi_k2"),
    ("sglang", "kimi_k2_thinking"): FamilyFacts("kimi_k2", "kimi_k2"),
    ("sglang", "v4"): FamilyFacts("deepseek-v4", "deepseekv4", unsupported_vendors=frozenset({"amd"})),
    # llama.cpp: chat template comes from the GGUF (--jinja); no parser flags.
    ("llamacpp", "v3"): FamilyFacts(),
    ("llamacpp", "r1"): FamilyFacts(),
    ("llamacpp", "v31"): FamilyFacts(),
    ("llamacpp", "v32"): FamilyFacts(notes=("DeepSeek-V3.2 GGUFs need a llama.cpp build with PR#23346 (2026-05).",)),
    ("llamacpp", "kimi_k2"): FamilyFacts(),
    ("llamacpp", "kimi_k2_thinking"): FamilyFacts(),
    ("llamacpp", "v4"): FamilyFacts(notes=("DeepSeek-V4 GGUF support is tracked in llama.cpp#22319.",)),
}


def family_facts(engine_name: str, family: str) -> FamilyFacts:
    return FAMILIES.get((engine_name, family), FamilyFacts())


# DeepSeek's recommended sampling for llama-server (serving.md §3 "Templates and sampling").
LLAMACPP_SAMPLING: tuple[str, ...] = ("--temp", "0.6", "--top-p", "0.95")
