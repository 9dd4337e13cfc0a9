"""Memory planner: weights per GPU for each parallel layout, the MLA KV cache, headroom, and from them the
longest context and the concurrency that fit. Refuses layouts that cannot work, with the reason, and suggests
the nearest requests that do.

Arithmetic (../shared/reference/serving.md §5):
- MLA KV bytes per token = (kv_lora_rank + qk_rope_head_dim) x layers x dtype bytes (V3: 576 x 61 x 2 = 70,272);
  every GPU of an attention group holds the whole cache of its requests ("-tp 8 causes 8x KV cache
  duplication"), unless decode context parallel splits it (-dcp) or attention is data-parallel.
- KV budget per GPU = memory fraction x memory - weights per GPU - activations/CUDA graphs.
- FP8 checkpoints use 128x128 blocks: every TP slice of a quantized weight must be a multiple of 128
  (TP32 on V3's 18432-wide MLP fails: vllm#12256, sglang#3345).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dshub.errors import PlanRefused, UsageError

from dshub.recipes.engine_facts import EngineFacts, engine as engine_facts, family_facts, version_key
from dshub.recipes.formats import WeightFormat, weight_format
from dshub.recipes.sizes import planned_components
from dshub.recipes.hardware import GPU, gpu as gpu_facts, parse_memory, with_memory
from dshub.recipes.layouts import Layout, candidates
from dshub.recipes.models import ModelInfo, resolve_model

GB = 1e9
LLAMACPP_DEFAULT_CONTEXT = 32768  # serving.md §3: DeepSeek's sampling advice holds to 128K; 32K keeps the cache small
LLAMACPP_SLOTS = {"latency": 1, "throughput": 4}  # llama-server --parallel
CONTEXT_STEP = 1024  # a context limited by the KV budget is rounded down to this
MAX_ALTERNATIVES = 4
MIN_CONTEXT = 4096  # a layout that cannot hold one request this long is refused
GOALS = ("latency", "throughput")
BORDERLINE = 0.05  # a verdict this close to the memory limit (either side) is marked borderline
BORDERLINE_WHY = ("within 5% of the memory limit: what the card really has free decides (check `nvidia-smi`, "
                  "pass --gpu-memory)")

# KV cache element bytes by dtype name (engines' spellings map onto these). q8_0/q4_0: ggml blocks of 32.
KV_DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
KV_DTYPES_BY_ENGINE: dict[str, tuple[str, ...]] = {
    "vllm": ("bf16", "fp8"), "sglang": ("bf16", "fp8"), "llamacpp": ("bf16", "q8_0", "q4_0"),
}


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    model: str
    engine: str = "vllm"
    gpu: str = "h200"
    gpus_per_node: int | None = None
    nodes: int = 1
    weights: str | None = None  # None: as shipped
    context: int | None = None
    goal: str = "latency"
    mtp: bool | None = None  # None: on for latency when the model has an MTP layer
    kv_dtype: str | None = None
    engine_version: str | None = None
    memory_fraction: float | None = None
    gpu_memory: str | None = None  # what the card reports (--gpu-memory), in place of the hardware table's figure
    host_ram: str | None = None  # system RAM of the box (--host-ram): llama.cpp keeps offloaded experts there


@dataclass
class Evaluation:
    """One layout, sized. `reasons` is empty when it works."""

    layout: Layout
    reasons: list[str] = field(default_factory=list)
    weights_per_gpu: int = 0
    weight_parts: dict[str, int] = field(default_factory=dict)
    kv_budget_per_gpu: int = 0
    kv_bytes_per_token_per_gpu: int = 0
    tokens_per_group: int = 0
    total_tokens: int = 0
    max_context: int = 0
    concurrency: int = 0
    experts_on_cpu_layers: int = 0
    experts_on_cpu_bytes: int = 0
    margin: float | None = None  # (limit - need) / limit for the tightest memory check: < 0 refused

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def borderline(self) -> bool:
        """Within BORDERLINE of the limit either way: the card's real free memory (driver, other processes, the
        engine's own overheads) decides, not this estimate."""
        return self.margin is not None and abs(self.margin) <= BORDERLINE

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict(), "ok": self.ok, "reasons": list(self.reasons),
            "weights_per_gpu_gb": round(self.weights_per_gpu / GB, 2),
            "weight_parts_gb": {k: round(v / GB, 2) for k, v in self.weight_parts.items() if v},
            "kv_budget_per_gpu_gb": round(self.kv_budget_per_gpu / GB, 2),
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu,
            "kv_tokens_per_group": self.tokens_per_group, "kv_tokens_total": self.total_tokens,
            "max_context": self.max_context, "concurrency_at_context": self.concurrency,
            "experts_on_cpu_layers": self.experts_on_cpu_layers,
            "experts_on_cpu_gb": round(self.experts_on_cpu_bytes / GB, 2),
            "margin": None if self.margin is None else round(self.margin, 4), "borderline": self.borderline,
        }


@dataclass
class Plan:
    """The sized request: the layout chosen (or None) and every candidate with its numbers or reasons."""

    request: Request
    model: ModelInfo
    gpu: GPU
    engine: EngineFacts
    engine_version: str
    weights: WeightFormat
    kv_dtype: str
    mtp: bool
    gpus_per_node: int
    memory_fraction: float
    context: int | None
    kv_bytes_per_token: int
    evaluations: list[Evaluation]
    chosen: Evaluation | None
    notes: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed on stderr (and in recipe headers)

    @property
    def nodes(self) -> int:
        return self.request.nodes

    @property
    def serve_context(self) -> int:
        """The context the recipe configures: the request's, else the longest the chosen layout holds."""
        assert self.chosen is not None
        return self.context or self.chosen.max_context

    def reasons(self) -> list[str]:
        return [f"{e.layout.label} ({e.layout.kind}): {r}" for e in self.evaluations for r in e.reasons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(), "gpu": self.gpu.to_dict(), "engine": self.engine.name,
            "engine_version": self.engine_version, "nodes": self.nodes, "gpus_per_node": self.gpus_per_node,
            "gpus": self.nodes * self.gpus_per_node, "goal": self.request.goal, "weights": self.weights.name,
            "weights_total_gb": round(total_weight_bytes(self.model, self.weights, self.mtp) / GB, 1),
            "weights_total_bytes": total_weight_bytes(self.model, self.weights, self.mtp),
            "kv_dtype": self.kv_dtype, "kv_bytes_per_token": self.kv_bytes_per_token, "mtp": self.mtp,
            "memory_fraction": self.memory_fraction, "context": self.context,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "candidates": [e.to_dict() for e in self.evaluations],
            "notes": list(self.notes), "alternatives": list(self.alternatives), "warnings": list(self.warnings),
            "host_ram_bytes": host_ram_bytes(self.request),
        }


# ----------------------------------------------------------------------------------------------- sizes
def component_bytes(model: ModelInfo, fmt: WeightFormat) -> dict[str, int]:
    """Bytes per component: the checkpoint's real bytes when the format is what it stores; else what dshub's own
    converter would write (its shape-only plan); else the format's per-parameter estimate."""
    if model.stored_bytes and fmt.name == model.shipped:
        return {**{c: 0 for c in model.params}, **model.stored_bytes}
    if not model.modelled:
        return {"total": int(model.stated_bytes or 0)}
    planned = planned_components(model, fmt)
    return planned if planned is not None else fmt.bytes(model.params)


def total_weight_bytes(model: ModelInfo, fmt: WeightFormat, mtp: bool) -> int:
    b = component_bytes(model, fmt)
    return sum(v for k, v in b.items() if k != "mtp" or mtp)


def kv_bytes_per_token(model: ModelInfo, engine: str, kv_dtype: str, mtp: bool) -> int:
    """MLA cache bytes per token over all layers (plus the MTP layer's when it runs), and the family's side cache
    (V3.2's indexer keys). 0 when not modelled."""
    if not model.modelled:
        return 0
    layers = model.layers + (model.mtp_layers if mtp else 0)
    own = model.kv_bytes_per_layer.get((engine, kv_dtype))  # an engine's own cache layout (the family's fact)
    side = model.side_kv_bytes(engine, KV_DTYPE_BYTES[kv_dtype]) * layers if model.side_kv_bytes else 0  # V3.2's indexer keys
    if own is not None:
        return own * layers + side
    return int(model.kv_elems_per_layer * layers * KV_DTYPE_BYTES[kv_dtype]) + side


def weights_per_gpu(model: ModelInfo, fmt: WeightFormat, lay: Layout, mtp: bool) -> dict[str, int]:
    """Each component's bytes on the busiest GPU of the layout."""
    b = component_bytes(model, fmt)
    if "total" in b:  # stated size only: assume an even spread
        return {"total": -(-b["total"] // lay.gpus)}
    expert_split = lay.ep if lay.ep > 1 else lay.mlp_tp
    split = {"attn": lay.attn_tp, "expert": expert_split, "shared": lay.dense_split, "dense": lay.dense_split,
             "embed": lay.mlp_tp, "head": lay.mlp_tp, "other": 1, "mtp": expert_split}
    out = {}
    for comp, n in b.items():
        if comp == "mtp" and not mtp:
            continue
        per = n / split.get(comp, 1)
        if comp in ("embed", "head"):
            per = per if lay.pp == 1 else per / 2  # first stage holds the embedding, last the head
        elif comp != "mtp":
            per = per / lay.pp
        out[comp] = int(per)
    return out


# ----------------------------------------------------------------------------------------------- guards
EXPERT_LAYOUTS = frozenset({"tep", "tep-dcp", "dep", "tp-dp", "dp-attention"})  # layouts built around routed experts

def tp_guards(model: ModelInfo, fmt: WeightFormat, lay: Layout) -> list[str]:
    """Head, expert and quantization-block divisibility for a layout."""
    reasons = []
    if model.max_tp and lay.tp > model.max_tp:
        reasons.append(f"TP{lay.tp} exceeds {model.name}'s cap of TP{model.max_tp}: {model.max_tp_source}")
    if not model.modelled:
        return reasons
    if model.heads % lay.attn_tp:
        reasons.append(f"{model.heads} attention heads are not divisible by attention TP {lay.attn_tp}")
    if not model.n_experts and lay.kind in EXPERT_LAYOUTS:
        reasons.append(f"{lay.kind} spreads routed experts; {model.name} is dense (plain tp, tp-pp or layer split)")
    if lay.ep > 1 and model.n_experts % lay.ep:
        reasons.append(f"{model.n_experts} routed experts are not divisible by EP {lay.ep}")
    if fmt.block:
        expert_split = 1 if lay.ep > 1 else lay.mlp_tp
        split = {"attn": lay.attn_tp, "dense": lay.dense_split, "shared": lay.dense_split, "expert": expert_split}
        for comp, widths in model.tp_split_dims.items():
            if comp not in fmt.blocked:
                continue
            for w in widths:
                s = split[comp]
                if s > 1 and (w % s or (w // s) % fmt.block):
                    reasons.append(f"{comp} width {w} / TP{s} = {w / s:g} is not a multiple of the {fmt.name} "
                                   f"block {fmt.block} (vllm#12256, sglang#3345)")
    return reasons


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate(model: ModelInfo, gpu: GPU, eng: EngineFacts, fmt: WeightFormat, lay: Layout, *, mtp: bool,
             kv_per_token: int, fraction: float, context: int | None, goal: str = "latency") -> Evaluation:
    ev = Evaluation(lay, reasons=tp_guards(model, fmt, lay))
    if eng.name == "llamacpp":
        return _evaluate_llamacpp(ev, model, gpu, eng, fmt, mtp=False, kv_per_token=kv_per_token, context=context,
                                  goal=goal)
    parts = weights_per_gpu(model, fmt, lay, mtp)
    ev.weight_parts = parts
    ev.weights_per_gpu = sum(parts.values())
    usable = fraction * gpu.memory_bytes - eng.reserved_gb * GB
    ev.kv_budget_per_gpu = int(usable - ev.weights_per_gpu)
    need = context or MIN_CONTEXT
    per_gpu = kv_per_token / lay.pp / lay.dcp
    ev.margin = (usable - ev.weights_per_gpu - need * per_gpu) / usable
    if ev.kv_budget_per_gpu <= 0:
        ev.reasons.append(f"weights need {ev.weights_per_gpu / GB:.1f} GB per GPU; {gpu.name} leaves "
                          f"{usable / GB:.1f} GB at memory fraction {fraction}" + _borderline(ev))
        return ev
    if not kv_per_token:  # KV not modelled (V4): weights checked, context from the model card
        ev.max_context = context or model.max_context
        return ev
    ev.kv_bytes_per_token_per_gpu = int(per_gpu)
    ev.tokens_per_group = int(ev.kv_budget_per_gpu / per_gpu)
    ev.total_tokens = ev.tokens_per_group * lay.attn_groups
    if ev.tokens_per_group < need:
        ev.reasons.append(f"KV cache holds {ev.tokens_per_group:,} tokens per attention group "
                          f"({ev.kv_budget_per_gpu / GB:.1f} GB per GPU after weights); one {need:,}-token request "
                          f"needs {need * per_gpu / GB:.1f} GB" + _borderline(ev))
    by_kv = ev.tokens_per_group // CONTEXT_STEP * CONTEXT_STEP
    ev.max_context = min(model.max_context or by_kv, by_kv)
    ev.concurrency = ev.total_tokens // (context or ev.max_context or 1)
    return ev


def _borderline(ev: Evaluation) -> str:
    return f" (borderline: {BORDERLINE_WHY})" if ev.borderline else ""


def _evaluate_llamacpp(ev: Evaluation, model: ModelInfo, gpu: GPU, eng: EngineFacts, fmt: WeightFormat, *,
                       mtp: bool, kv_per_token: int, context: int | None, goal: str) -> Evaluation:
    """llama.cpp: one KV pool spread with the layers; routed experts of the first N layers go to system RAM
    (`--n-cpu-moe N`) until the rest fits (serving.md §3 "MoE offload")."""
    lay = ev.layout
    parts = component_bytes(model, fmt)
    parts = {k: v for k, v in parts.items() if k != "mtp"}  # llama.cpp does not load the MTP layer
    vram = lay.gpus * (gpu.memory_bytes - eng.reserved_gb * GB)
    ctx = context or min(model.max_context or LLAMACPP_DEFAULT_CONTEXT, LLAMACPP_DEFAULT_CONTEXT)
    slots = LLAMACPP_SLOTS[goal]
    kv = ctx * slots * kv_per_token  # llama-server's -c is shared by its --parallel slots
    resident = sum(v for k, v in parts.items() if k != "expert")
    experts = parts.get("expert", 0)
    free = vram - resident - kv
    ev.margin = free / vram  # experts fill what is left, so only the resident part can be tight
    ev.kv_bytes_per_token_per_gpu = kv_per_token  # split over GPUs with the layers, never replicated
    if free < 0:
        ev.reasons.append(f"non-expert weights ({resident / GB:.1f} GB) and a {slots}x{ctx:,}-token KV cache ({kv / GB:.1f} GB) "
                          f"exceed {lay.gpus}x {gpu.name} ({vram / GB:.0f} GB after compute buffers)" + _borderline(ev))
        return ev
    per_layer = experts / max(1, model.moe_layers)
    cpu_layers = 0 if experts <= free else min(model.moe_layers, int(-(-(experts - free) // per_layer)))
    ev.experts_on_cpu_layers = cpu_layers
    ev.experts_on_cpu_bytes = int(cpu_layers * per_layer)
    ev.weights_per_gpu = int((resident + experts - ev.experts_on_cpu_bytes) / lay.gpus)
    ev.weight_parts = {"resident": resident, "experts_gpu": int(experts - ev.experts_on_cpu_bytes),
                       "experts_cpu": ev.experts_on_cpu_bytes}
    ev.kv_budget_per_gpu = int(kv / lay.gpus)
    ev.tokens_per_group = ctx * slots
    ev.total_tokens = ctx * slots
    ev.max_context = ctx
    ev.concurrency = slots
    return ev


# ----------------------------------------------------------------------------------------------- planning
def _resolve_request(req: Request) -> tuple[ModelInfo, GPU, EngineFacts, WeightFormat, str, bool, int, float, str]:
    if req.goal not in GOALS:
        raise UsageError(f"--goal {req.goal!r}: choose one of {', '.join(GOALS)}")
    if req.nodes < 1 or (req.gpus_per_node is not None and req.gpus_per_node < 1):
        raise UsageError("--nodes and --gpus-per-node must be at least 1")
    if req.context is not None and req.context < 1:
        raise UsageError("--context must be a positive number of tokens")
    host_ram_bytes(req)  # a bad --host-ram is a usage error before any work
    model = resolve_model(req.model)
    if req.context and model.max_context and req.context > model.max_context:
        raise UsageError(f"--context {req.context}: {model.name} supports at most {model.max_context:,} tokens "
                         "(max_position_embeddings)")
    card = with_memory(gpu_facts(req.gpu), req.gpu_memory)
    eng = engine_facts(req.engine)
    fmt = weight_format(req.weights or model.shipped)
    kind = "gguf" if fmt.is_gguf else fmt.name
    if kind not in eng.formats:
        if fmt.is_gguf:
            raise UsageError(f"--weights {fmt.name} with --engine {eng.name}: GGUF is llama.cpp's format; vLLM's GGUF "
                             "loader is experimental and single-file only (vllm#13665, #15277, #12573); use --engine llamacpp")
        raise UsageError(f"--weights {fmt.name} with --engine {eng.name}: llama.cpp serves GGUF only; "
                         "convert with `dshub convert --to gguf` and pass --weights gguf:TYPE")
    kv = req.kv_dtype or (model.default_kv_dtype if eng.name != "llamacpp" else None) or "bf16"
    if kv == "f16":
        kv = "bf16"
    if kv not in KV_DTYPES_BY_ENGINE[eng.name]:
        raise UsageError(f"--kv-dtype {kv!r} with --engine {eng.name}: choose one of {', '.join(KV_DTYPES_BY_ENGINE[eng.name])}")
    mtp = _want_mtp(req, model, eng)
    gpn = req.gpus_per_node or card.gpus_per_node
    fraction = req.memory_fraction or eng.memory_fraction
    version = req.engine_version or eng.validated_version
    return model, card, eng, fmt, kv, mtp, gpn, fraction, version


def _want_mtp(req: Request, model: ModelInfo, eng: EngineFacts) -> bool:
    has_mtp = model.mtp_layers > 0 or (not model.modelled and model.family == "v4")
    if req.mtp and not has_mtp:
        raise UsageError(f"--mtp: {model.name} has no MTP (next-token prediction) layer")
    if req.mtp and eng.name == "llamacpp":
        raise UsageError("--mtp: llama-server does not run DeepSeek's MTP layer")
    if req.mtp is None:
        return has_mtp and req.goal == "latency" and eng.name != "llamacpp"
    return req.mtp


# Pipeline parallelism + speculative decoding: vLLM from 0.16 (up to 0.15 they were incompatible, spec_decode
# README); SGLang: not generated here (no source says it works).
PP_WITH_MTP_SINCE: dict[str, tuple[int, ...] | None] = {"vllm": (0, 16), "sglang": None, "llamacpp": None}
PP_MTP_WHY = {"vllm": "vLLM up to 0.15 cannot combine pipeline parallelism with speculative decoding",
              "sglang": "pipeline parallelism with speculative decoding is not generated for SGLang (unverified)",
              "llamacpp": "llama.cpp does not run MTP"}


def pp_with_mtp(engine: str, version: str) -> bool:
    since = PP_WITH_MTP_SINCE[engine]
    return since is not None and version_key(version) >= since


def plan(req: Request, *, suggest: bool = True) -> Plan:
    """Size every candidate layout for the request and choose the first that works (see layouts.CANDIDATES)."""
    model, card, eng, fmt, kv, mtp, gpn, fraction, version = _resolve_request(req)
    kv_tok = kv_bytes_per_token(model, eng.name, kv, mtp)
    prefer = family_facts(eng.name, model.family).prefer_layouts
    evals = [evaluate(model, card, eng, fmt, lay, mtp=mtp, kv_per_token=kv_tok, fraction=fraction, context=req.context,
                      goal=req.goal)
             for lay in candidates(eng.name, req.goal, gpn, req.nodes, prefer)]
    if not evals:
        evals = [Evaluation(Layout("none", gpn * req.nodes),
                            reasons=[f"{eng.name} recipes here are single-node; use --nodes 1 (llama.cpp RPC is not generated)"])]
    if mtp and not pp_with_mtp(eng.name, version):
        if req.mtp is None and any(e.ok and e.layout.pp > 1 for e in evals) and not any(e.ok and e.layout.pp == 1 for e in evals):
            off = plan(replace(req, mtp=False), suggest=suggest)  # the default gives way, not the layout
            off.notes.append(f"MTP off: {PP_MTP_WHY[eng.name]} ({eng.name} {version})")
            return off
        for e in evals:
            if e.layout.pp > 1:
                e.reasons.append(f"MTP with pipeline parallelism: {PP_MTP_WHY[eng.name]} ({eng.name} {version})")
    chosen = next((e for e in evals if e.ok), None)
    if eng.name == "llamacpp" and req.kv_dtype is None and (chosen is None or chosen.experts_on_cpu_layers):
        tight = _q8_k_cache(req, chosen, suggest)
        if tight is not None:
            return tight
    p = Plan(req, model, card, eng, version, fmt, kv, mtp, gpn, fraction, req.context, kv_tok, evals, chosen)
    p.notes = _notes(p)
    p.warnings = _host_ram_warnings(p)
    if chosen is None and suggest:
        p.alternatives = suggest_alternatives(req, p)
    return p


def _q8_k_cache(req: Request, chosen: Evaluation | None, suggest: bool) -> Plan | None:
    """llama.cpp with VRAM tight (experts spill to RAM, or nothing fits): a q8_0 K cache (half of f16) when it keeps
    more of the experts on the GPUs; None when it does not help."""
    alt = plan(replace(req, kv_dtype="q8_0"), suggest=suggest)
    c = alt.chosen
    if c is None or (chosen is not None and c.experts_on_cpu_layers >= chosen.experts_on_cpu_layers):
        return None
    before = "nothing fits" if chosen is None else f"{chosen.experts_on_cpu_layers} layers' experts in RAM"
    alt.notes.append(f"K cache q8_0 (-ctk q8_0): VRAM is tight; with an f16 cache {before}, with q8_0 "
                     f"{c.experts_on_cpu_layers} (pass --kv-dtype bf16 to keep f16)")
    return alt


# Host RAM llama-server cannot use for experts: the OS, the server process, the page cache of everything else
# (dshub estimate).
HOST_RAM_RESERVE = 8 * 2**30


def host_ram_bytes(req: Request) -> int | None:
    return None if req.host_ram is None else parse_memory(req.host_ram, option="--host-ram")


def _host_ram_warnings(p: Plan) -> list[str]:
    """Experts beyond the host's RAM are still served, from the mmapped file on disk, but every token then reads
    them from disk: the speed warning."""
    ram = host_ram_bytes(p.request)
    c = p.chosen
    if ram is None or c is None or not c.experts_on_cpu_bytes:
        return []
    room, gib = ram - HOST_RAM_RESERVE, 2**30
    experts = f"{c.experts_on_cpu_bytes / gib:.0f} GiB of experts"
    host = f"{ram / gib:.0f} GiB host (less {HOST_RAM_RESERVE / gib:.0f} GiB for the system)"
    if c.experts_on_cpu_bytes <= room:
        p.notes.append(f"host RAM: {experts} fit in the {host}")
        return []
    return [f"{experts} in system RAM exceed the {host} by {(c.experts_on_cpu_bytes - room) / gib:.0f} GiB: llama.cpp "
            "mmaps the rest from disk and reads it for every token, expect single-digit tokens/s or less; use a "
            "smaller quant or more RAM"]


def require(p: Plan) -> Plan:
    """The plan, or PlanRefused with every layout's reason and the nearest requests that work."""
    if p.chosen is None:
        what = (f"{p.model.name} ({p.weights.name}) on {p.nodes}x{p.gpus_per_node} {p.gpu.name} with {p.engine.name}")
        alt = "; ".join(p.alternatives) if p.alternatives else "none found nearby"
        raise PlanRefused(f"no layout fits {what}: {' | '.join(p.reasons())}. Nearest that work: {alt}",
                          reasons=p.reasons(), alternatives=p.alternatives)
    return p


def _notes(p: Plan) -> list[str]:
    notes = []
    fam = family_facts(p.engine.name, p.model.family)
    notes += list(fam.notes)
    if p.chosen and p.chosen.layout.kind in fam.prefer_layouts:
        notes.append(f"{p.chosen.layout.kind} preferred for {p.model.name}: {fam.prefer_reason}")
    if p.gpu.vendor in fam.unsupported_vendors:
        notes.append(f"{p.model.name} is not supported on {p.gpu.vendor.upper()} GPUs by {p.engine.name}")
    if p.weights.name == "fp8" and not p.gpu.fp8:
        notes.append(f"{p.gpu.label} has no FP8 tensor cores: FP8 weights run weight-only (Marlin), slower")
    if p.weights.name == "fp4-fp8" and not p.gpu.fp4:
        notes.append(f"{p.gpu.label} has no FP4 tensor cores: FP4 experts run only where the engine has a "
                     "weight-only fallback kernel, and slower; the NVFP4 releases target Blackwell")
    if not p.model.modelled:
        notes.append(f"{p.model.name}: KV cache size is not modelled (its attention is not plain MLA); "
                     "weights are checked, the context comes from the model card")
    if p.chosen and p.chosen.layout.attn_tp > 1 and p.chosen.layout.dcp == 1 and p.kv_bytes_per_token and p.model.kv_lora_rank:
        notes.append(f"MLA KV cache is replicated on each of the {p.chosen.layout.attn_tp} GPUs of an attention group")
    if p.chosen and p.chosen.borderline:
        notes.append(f"borderline fit: {BORDERLINE_WHY}; the table's {p.gpu.name} figure is "
                     f"{p.gpu.memory_gib:.1f} GiB ({p.gpu.memory_source})")
    if p.chosen and p.chosen.experts_on_cpu_bytes:
        notes.append(f"routed experts of {p.chosen.experts_on_cpu_layers} layers "
                     f"({p.chosen.experts_on_cpu_bytes / GB:.0f} GB) run from system RAM; the host needs at least that much")
    return notes


# The highest memory fractions the engines' own examples use: vLLM 0.95 "to maximize KVCache" (recipes),
# SGLang 0.93 (LWS example on H20). Suggested, never the default.
MAX_MEMORY_FRACTION = {"vllm": 0.95, "sglang": 0.93}


def suggest_alternatives(req: Request, p: Plan) -> list[str]:
    """The nearest requests that do plan: one more node, no MTP, a higher memory fraction, INT4 weights, FP8 KV,
    a shorter context, GGUF on llama.cpp with experts in system RAM, then more nodes."""
    more = [(f"--nodes {req.nodes + k}", replace(req, nodes=req.nodes + k)) for k in (1, 2, 3)]
    tries: list[tuple[str, Request]] = [more[0]]
    if p.mtp:
        tries.append(("--no-mtp", replace(req, mtp=False)))
    top = MAX_MEMORY_FRACTION.get(p.engine.name)
    if top and p.memory_fraction < top:
        tries.append((f"--memory-fraction {top}", replace(req, memory_fraction=top)))
    if p.engine.name != "llamacpp" and p.weights.name in ("fp8", "bf16"):
        tries.append(("--weights int4", replace(req, weights="int4")))
    if p.kv_dtype == "bf16" and p.engine.name != "llamacpp":
        tries.append(("--kv-dtype fp8", replace(req, kv_dtype="fp8")))
    if req.context and req.context > MIN_CONTEXT:
        tries.append((f"--context {MIN_CONTEXT}", replace(req, context=MIN_CONTEXT)))
    for q in ("Q4_K_M", "Q2_K"):
        tries.append((f"--engine llamacpp --weights gguf:{q} --nodes 1",
                      replace(req, engine="llamacpp", weights=f"gguf:{q}", nodes=1, mtp=False,
                              kv_dtype=None, engine_version=None, goal="latency", memory_fraction=None)))
    if not p.model.n_experts and p.model.modelled:  # a dense model: fewer GPUs (one TP group that divides the heads)
        tries += [(f"--gpus-per-node {k}", replace(req, gpus_per_node=k)) for k in (1, 2, 4) if k < p.gpus_per_node]
    tries += more[1:]
    out = []
    for label, r in tries:
        try:
            alt = plan(r, suggest=False)
        except UsageError:
            continue
        if alt.chosen is not None:
            c = alt.chosen
            out.append(f"{label} ({c.layout.label}, {c.weights_per_gpu / GB:.0f} GB weights/GPU, "
                       f"max context {c.max_context:,})")
        if len(out) >= MAX_ALTERNATIVES:
            break
    return out
