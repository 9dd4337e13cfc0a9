"""Environment variables per engine, hardware and release, as a table of rules (serving.md §1.1, §1.3, §2
per-hardware). Every variable carries its source; none is set beyond what that source covers (a release the source
does not name does not get it), and experimental engine switches are set only when asked for (`--experimental`)."""
from __future__ import annotations

from dataclasses import dataclass

from dshub.recipes.planner import Plan

V3_R1 = frozenset({"v3", "r1"})  # the releases vLLM's DeepSeek-V3/R1 recipe covers (DeepSeek-V3.md, DeepSeek-R1.yaml)


@dataclass(frozen=True)
class EnvRule:
    """Set `env` when every given condition matches the plan. `source` says where the fact comes from."""

    engine: str
    env: tuple[tuple[str, str], ...]
    source: str
    vendor: str | None = None
    arch: str | None = None
    gpu: str | None = None
    weights: str | None = None
    mtp: bool | None = None
    releases: frozenset[str] | None = None  # None: every release
    experimental: bool = False  # an engine's experimental switch: only with --experimental

    def matches(self, p: Plan, experimental: bool = False) -> bool:
        checks = ((self.vendor, p.gpu.vendor), (self.arch, p.gpu.arch), (self.gpu, p.gpu.name),
                  (self.weights, p.weights.name), (self.mtp, p.mtp))
        return (self.engine == p.engine.name and all(want is None or want == have for want, have in checks)
                and (self.releases is None or p.model.family in self.releases)
                and (experimental or not self.experimental))


ENV_RULES: tuple[EnvRule, ...] = (
    EnvRule("vllm", (("VLLM_USE_FLASHINFER_MOE_FP8", "1"),), "vllm recipes DeepSeek-R1.yaml: hopper env (V3/R1)",
            arch="hopper", weights="fp8", releases=V3_R1),
    EnvRule("vllm", (("VLLM_USE_FLASHINFER_MOE_FP4", "1"),), "vllm recipes DeepSeek-R1.yaml: blackwell env (R1 FP4)",
            arch="blackwell", weights="fp4-fp8", releases=frozenset({"r1"})),
    EnvRule("vllm", (("VLLM_ROCM_USE_AITER", "1"), ("VLLM_ROCM_USE_AITER_MOE", "1"), ("SAFETENSORS_FAST_GPU", "1")),
            "vllm recipes DeepSeek-R1.yaml: amd env", vendor="amd"),
    EnvRule("vllm", (("VLLM_USE_DEEP_GEMM", "0"),), "vllm envs.py: DeepGEMM off on H20 (V3.2 recipe)", gpu="h20"),
    EnvRule("vllm", (("VLLM_USE_DEEP_GEMM", "0"),), "vllm envs.py: DeepGEMM off on H20 (V3.2 recipe)", gpu="h20-141"),
    # A 700 GB load outlives the default engine start timeout (V4 PD recipe values).
    EnvRule("vllm", (("VLLM_ENGINE_READY_TIMEOUT_S", "3600"), ("VLLM_RPC_TIMEOUT", "600000")), "vllm V4 PD recipe"),
    EnvRule("sglang", (("SGLANG_USE_AITER", "1"), ("SGLANG_AITER_MLA_PERSIST", "1")), "sgl-cookbook MI300X/MI325X",
            vendor="amd"),
    EnvRule("sglang", (("RCCL_MSCCL_ENABLE", "0"), ("ROCM_QUICK_REDUCE_QUANTIZATION", "INT4")), "sgl-cookbook MI355X",
            gpu="mi355x"),
    EnvRule("sglang", (("SGLANG_ENABLE_JIT_DEEPGEMM", "false"),), "sgl-cookbook B200 FP8", gpu="b200", weights="fp8"),
    # SGLang's second speculative-decoding scheduler: the cookbook turns it on, SGLang ships it off (experimental).
    EnvRule("sglang", (("SGLANG_ENABLE_SPEC_V2", "1"),), "sgl-cookbook MTP", mtp=True, experimental=True),
)


def engine_env(p: Plan, experimental: bool = False) -> dict[str, str]:
    env: dict[str, str] = {}
    for rule in ENV_RULES:
        if rule.matches(p, experimental):
            env.update(rule.env)
    return env
