"""Per-engine facts (images, ports, memory shares) and the lookup of per-(engine, release) facts (parsers, templates,
minimum versions), which live in each model family's module (dshub.arch).

Sources (../shared/reference/serving.md): vLLM §1.3-1.6 ([R] vllm-project/recipes @8959cf6, vLLM docs and
issues named inline); SGLang §2 (sglang docs, [SC] sgl-cookbook @7b5bd9c); llama.cpp §3 (docs/docker.md,
llama.cpp#14557, Unsloth). Parser names were checked against vLLM 0.33.0's parser registries and SGLang
0.5.23's `--reasoning-parser`/`--tool-call-parser` choices (see tests/recipes/test_validators.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from dshub.arch.family import RELEASES, ServingFacts
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
    kv_log: str | None = None  # the line the engine logs with its KV cache size, {tokens} filled in
    health_path: str = "/health"
    model_cache: str = "/root/.cache/huggingface"  # where the image expects the HF cache


ENGINES: dict[str, EngineFacts] = {
    # vLLM: default --gpu-memory-utilization 0.9; ~5 GB/GPU activations + graphs (serving.md §5 "vLLM sizing").
    "vllm": EngineFacts(
        "vllm", "0.33.0", 8000, ("vllm", "serve"), ("vllm", "serve"),
        {"nvidia": "vllm/vllm-openai", "amd": "vllm/vllm-openai-rocm"},
        frozenset({"fp8", "bf16", "int4", "fp4-fp8"}), 0.90, 5.0, True,
        kv_log="GPU KV cache size: {tokens:,} tokens"),  # per engine (one per DP rank); vllm/v1/core/kv_cache_utils.py
    # SGLang: --mem-fraction-static covers weights + KV only; activations live in the rest (serving.md §5).
    # 0.85 sits between the cookbook's 0.82 (H200/B200) and the LWS example's 0.93.
    "sglang": EngineFacts(
        "sglang", "0.5.23", 30000, ("python3", "-m", "sglang.launch_server"), ("python3", "-m", "sglang.launch_server"),
        {"nvidia": "lmsysorg/sglang", "amd": "lmsysorg/sglang"},
        frozenset({"fp8", "bf16", "int4", "fp4-fp8"}), 0.85, 0.0, True,
        kv_log="max_total_num_tokens={tokens}"),  # per DP rank (serving.md §2 LWS example's log line)
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


# The facts of one released model on one engine are its family module's (`Release.engines` in dshub.arch); this
# table keeps only releases no family module models (none today: DeepSeek-V4's moved to dshub.arch.deepseek_v4).
STATED_RELEASES: dict[tuple[str, str], ServingFacts] = {}


def family_facts(engine_name: str, release: str) -> ServingFacts:
    """The facts of release `release` (v3, r1, v32, ...) on an engine: its family module's, else the stated table's."""
    if release in RELEASES:
        _, r = RELEASES.get(release)
        return r.engines.get(engine_name, ServingFacts())
    return STATED_RELEASES.get((engine_name, release), ServingFacts())

