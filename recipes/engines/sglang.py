"""`python3 -m sglang.launch_server` for a plan (serving.md §2)."""
from __future__ import annotations

from dshub.recipes.engine_facts import family_facts, version_key
from dshub.recipes.launch import Launch, NodeRef, RecipeOptions
from dshub.recipes.planner import Plan
from dshub.recipes.engines.common import make_launch, register, served_name

DIST_PORT = 20000  # docs/references/multi_node_inference_k8s_lws.md
KV_DTYPE_FLAG = {"bf16": None, "fp8": "fp8_e4m3"}
# 0.5.23 deprecates `--dp-size N --enable-dp-attention` for `--attn-dp-size N` (server_args.py).
ATTN_DP_SIZE_SINCE = (0, 5, 23)
# DeepSeek's MTP draft settings (serving.md §2 "MTP").
MTP_ARGS = ("--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3", "--speculative-eagle-topk", "1",
            "--speculative-num-draft-tokens", "4")


def _layout_args(p: Plan, ref: NodeRef, rdma: bool) -> list[str]:
    lay = p.chosen.layout  # type: ignore[union-attr]
    a = ["--tp-size", str(lay.tp)]
    if lay.pp > 1:
        a += ["--pp-size", str(lay.pp)]
    if lay.dense_tp:
        a += ["--moe-dense-tp-size", str(lay.dense_tp)]
    if lay.kind == "dp-attention":
        if version_key(p.engine_version) >= ATTN_DP_SIZE_SINCE:
            a += ["--attn-dp-size", str(lay.dp)]
        else:
            a += ["--dp-size", str(lay.dp), "--enable-dp-attention"]
    if lay.ep > 1:
        a += ["--ep-size", str(lay.ep)]
        # DeepEP all-to-all across nodes needs RDMA (NVSHMEM over IB/RoCE) and ep == tp (serving.md §2 "EP"); without
        # --rdma the published TCP-safe layout stands (SGLang's plain `--tp 16` for 2x8 H20/H100).
        if rdma and p.nodes > 1 and p.gpu.vendor == "nvidia" and lay.ep == lay.tp:
            a += ["--moe-a2a-backend", "deepep"]
    if p.nodes > 1:
        a += ["--nnodes", str(p.nodes), "--node-rank", ref.rank_str(), "--dist-init-addr",
              f"{ref.head_address}:{DIST_PORT}"]
    return a


@register("sglang")
def build(p: Plan, opts: RecipeOptions) -> Launch:
    fam = family_facts("sglang", p.model.family)

    def args(ref: NodeRef, model: str) -> list[str]:
        a = ["--model-path", model, "--served-model-name", served_name(p, opts), "--host", "0.0.0.0",
             "--port", str(p.engine.port), "--trust-remote-code"]
        a += _layout_args(p, ref, opts.network.rdma)
        a += ["--mem-fraction-static", f"{p.memory_fraction:g}", "--context-length", str(p.serve_context),
              "--dist-timeout", "3600"]  # NCCL timeouts on slow loads (sglang#3932)
        if KV_DTYPE_FLAG[p.kv_dtype]:
            a += ["--kv-cache-dtype", KV_DTYPE_FLAG[p.kv_dtype]]
        if fam.reasoning_parser:
            a += ["--reasoning-parser", fam.reasoning_parser]
        if fam.tool_parser:
            a += ["--tool-call-parser", fam.tool_parser]
        if fam.chat_template:
            a += ["--chat-template", fam.chat_template]
        if p.mtp:
            a += list(MTP_ARGS)
        if p.gpu.vendor == "amd":
            a += ["--attention-backend", "aiter"]
        return a

    return make_launch(p, opts, args)
