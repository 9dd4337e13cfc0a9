"""`vllm serve` for a plan (serving.md §1: flags, multi-node shapes, parsers)."""
from __future__ import annotations

import json

from dshub.recipes.engine_facts import family_facts
from dshub.recipes.launch import Launch, NodeRef, RecipeOptions
from dshub.recipes.planner import Plan
from dshub.recipes.engines.common import make_launch, register, served_name

DP_RPC_PORT = 13345  # docs/serving/expert_parallel_deployment.md example
KV_DTYPE_FLAG = {"bf16": None, "fp8": "fp8"}


def _layout_args(p: Plan, ref: NodeRef) -> list[str]:
    lay = p.chosen.layout  # type: ignore[union-attr]
    g, n = p.gpus_per_node, p.nodes
    a: list[str] = []
    if lay.kind == "dep" or lay.kind == "tp-dp":
        local = g if lay.kind == "dep" else 1
        a += ["--tensor-parallel-size", str(lay.tp), "--data-parallel-size", str(lay.dp)]
        if n > 1:
            a += ["--data-parallel-size-local", str(local), "--data-parallel-address", ref.head_address,
                  "--data-parallel-rpc-port", str(DP_RPC_PORT)]
            if not ref.is_head:
                a += ["--data-parallel-start-rank", ref.rank_str(times=local), "--headless"]
    else:
        a += ["--tensor-parallel-size", str(lay.tp)]
        if lay.pp > 1:
            a += ["--pipeline-parallel-size", str(lay.pp)]
        if lay.dcp > 1:
            a += ["--decode-context-parallel-size", str(lay.dcp)]
        if n > 1:  # one engine spanning nodes, multiprocessing backend (vllm recipes command-synthesis.js)
            a += ["--nnodes", str(n), "--node-rank", ref.rank_str(), "--master-addr", ref.head_address]
            if not ref.is_head:
                a += ["--headless"]
    if lay.ep > 1:
        a += ["--enable-expert-parallel"]
    return a


@register("vllm")
def build(p: Plan, opts: RecipeOptions) -> Launch:
    fam = family_facts("vllm", p.model.family)

    def args(ref: NodeRef, model: str) -> list[str]:
        a = [model, "--served-model-name", served_name(p, opts), "--host", "0.0.0.0",
             "--port", str(p.engine.port), "--trust-remote-code"]
        a += _layout_args(p, ref)
        a += ["--max-model-len", str(p.serve_context), "--gpu-memory-utilization", f"{p.memory_fraction:g}"]
        if KV_DTYPE_FLAG[p.kv_dtype]:
            a += ["--kv-cache-dtype", KV_DTYPE_FLAG[p.kv_dtype]]
        if fam.tokenizer_mode:
            a += ["--tokenizer-mode", fam.tokenizer_mode]
        if fam.reasoning_parser:  # never --enable-reasoning: removed after 0.9 (vllm#18538)
            a += ["--reasoning-parser", fam.reasoning_parser]
        if fam.tool_parser:
            a += ["--enable-auto-tool-choice", "--tool-call-parser", fam.tool_parser]
            if fam.chat_template:
                a += ["--chat-template", fam.chat_template]
        if p.mtp:
            spec = {"method": "mtp", "num_speculative_tokens": fam.mtp_tokens}
            a += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
        if p.gpu.vendor == "amd":
            a += ["--distributed-executor-backend", "mp"]
        a += list(fam.extra_args)
        return a

    notes = []
    lay = p.chosen.layout  # type: ignore[union-attr]
    if opts.network.rdma and p.nodes > 1 and lay.ep > 1 and lay.kind in ("dep", "tp-dp") and p.gpu.vendor == "nvidia":
        notes.append("multi-node expert parallel: with DeepEP in the image, --all2all-backend deepep_low_latency "
                     "(decode) or deepep_high_throughput (prefill) beats the default allgather_reducescatter "
                     "(docs/serving/expert_parallel_deployment.md)")
    return make_launch(p, opts, args, notes=notes)
