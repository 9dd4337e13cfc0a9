"""`llama-server` for a GGUF plan (serving.md §3). Mainline flags only: never ik_llama.cpp's -mla/-fmoe/-rtr/-amb."""
from __future__ import annotations

from dshub.recipes.launch import Launch, NodeRef, RecipeOptions
from dshub.recipes.models import Sampling, sampling_for
from dshub.recipes.planner import LLAMACPP_SLOTS, Plan
from dshub.recipes.engines.common import make_launch, register, served_name

KV_TYPE_FLAG = {"bf16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}
# Unsloth: add --min-p for the 1-bit dynamic quants (serving.md §3).
MIN_P_BY_TYPE = {"IQ1_S": "0.05", "IQ1_M": "0.05"}
SAMPLING_FLAGS = (("temperature", "--temp"), ("top_p", "--top-p"), ("min_p", "--min-p"))


def sampling_args(s: Sampling | None, gguf_type: str | None) -> list[str]:
    """The model's recommended sampling as llama-server defaults; nothing the model card does not state (a GGUF
    written by dshub carries generation_config.json's defaults itself)."""
    values = {flag: getattr(s, field) for field, flag in SAMPLING_FLAGS if s and getattr(s, field) is not None}
    if gguf_type in MIN_P_BY_TYPE and "--min-p" not in values:
        values["--min-p"] = MIN_P_BY_TYPE[gguf_type]
    return [a for flag, v in values.items() for a in (flag, f"{v:g}" if isinstance(v, float) else str(v))]


def offload_args(p: Plan) -> list[str]:
    """Experts of the first layers to system RAM: all of them (-ot exps=CPU) or N layers (--n-cpu-moe)."""
    ev = p.chosen
    if not ev or not ev.experts_on_cpu_layers:
        return []
    if ev.experts_on_cpu_layers >= p.model.moe_layers:
        return ["-ot", "exps=CPU"]
    # --n-cpu-moe counts layers from 0, dense layers included.
    first_dense = int((p.model.config or {}).get("first_k_dense_replace", 0))
    return ["--n-cpu-moe", str(first_dense + ev.experts_on_cpu_layers)]


@register("llamacpp")
def build(p: Plan, opts: RecipeOptions) -> Launch:
    slots = LLAMACPP_SLOTS[p.request.goal]  # -c is shared by the slots: each gets the planned context

    def args(ref: NodeRef, model: str) -> list[str]:
        k = KV_TYPE_FLAG[p.kv_dtype]
        a = ["-m", model, "--alias", served_name(p, opts), "--host", "0.0.0.0",
             "--port", str(p.engine.port), "-ngl", "999", *offload_args(p), "-c", str(p.serve_context * slots),
             "-fa", "on", "-ctk", k, "--jinja", "--parallel", str(slots),
             *sampling_args(sampling_for(p.model.name) if p.model.source == "catalog" else None, p.weights.gguf_type)]
        return a

    return make_launch(p, opts, args, needs_hf_token=False, notes=offload_notes(p))


def offload_notes(p: Plan) -> list[str]:
    """What the offload flag means for this model, in the recipe header."""
    args = offload_args(p)
    ev = p.chosen
    if not args or ev is None:
        return []
    gb = f"{ev.experts_on_cpu_bytes / 1e9:.0f} GB"
    if args[0] == "-ot":
        return [f"-ot exps=CPU: the routed experts of all {p.model.moe_layers} MoE layers ({gb}) stay in system RAM; "
                "attention, shared experts and the KV cache are on the GPUs"]
    n = int(args[1])
    dense = n - ev.experts_on_cpu_layers
    return [f"--n-cpu-moe {n}: the routed experts of layers 0-{n - 1} stay in system RAM; the first {dense} layers are "
            f"dense (no experts) but count, so {ev.experts_on_cpu_layers} MoE layers' experts ({gb}) run on the CPU, "
            "the rest on the GPUs"]
