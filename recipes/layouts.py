"""Parallel layouts: how a model's weights, experts and KV cache are spread over GPUs, and which ones each engine
offers for a goal. One table per engine; the planner evaluates the candidates in order and keeps the first that fits.

Shapes from ../shared/reference/serving.md: vLLM TEP / DEP / TP x PP / TP x DP (§1.1-1.2) and decode context
parallel (-dcp, §1.3); SGLang TP / TP+EP / DP-attention (§2); llama.cpp layer split with experts optionally in
system RAM (§3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Layout:
    """One parallel layout over `gpus` GPUs.

    attn_tp: GPUs that share one attention group (its KV is replicated on each of them under MLA, unless dcp);
    attn_groups: independent attention groups (data-parallel replicas of the KV pool);
    mlp_tp: ways the vocab (and by default the dense MLP and shared expert) are split; dense_tp: ways the dense MLP
    and shared expert are split when that differs (SGLang --moe-dense-tp-size); ep: expert parallel (1 = experts TP-split).
    """

    kind: str
    gpus: int
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    dcp: int = 1
    attn_tp: int = 1
    attn_groups: int = 1
    mlp_tp: int = 1
    dense_tp: int = 0  # 0: same as mlp_tp

    @property
    def dense_split(self) -> int:
        return self.dense_tp or self.mlp_tp

    @property
    def label(self) -> str:
        if self.kind == "layer-split":
            return f"layer split over {self.gpus} GPU{'s' if self.gpus > 1 else ''}"
        parts = [f"TP{self.tp}"] if self.tp > 1 else []
        parts += [f"PP{self.pp}"] if self.pp > 1 else []
        parts += [f"DP{self.dp}"] if self.dp > 1 else []
        parts += [f"EP{self.ep}"] if self.ep > 1 else []
        parts += [f"DCP{self.dcp}"] if self.dcp > 1 else []
        parts += [f"denseTP{self.dense_tp}"] if self.dense_tp else []
        return "+".join(parts) or "single GPU"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "label": self.label, **{k: getattr(self, k) for k in
                ("gpus", "tp", "pp", "dp", "ep", "dcp", "attn_tp", "attn_groups", "mlp_tp", "dense_tp")}}


def tp(w: int, g: int, n: int) -> Layout:
    return Layout("tp", w, tp=w, attn_tp=w, mlp_tp=w)


def tep(w: int, g: int, n: int) -> Layout:
    return Layout("tep", w, tp=w, ep=w, attn_tp=w, mlp_tp=w)


def tep_dcp(w: int, g: int, n: int) -> Layout:
    return Layout("tep-dcp", w, tp=w, ep=w, dcp=g, attn_tp=w, mlp_tp=w)


def tp_pp(w: int, g: int, n: int) -> Layout | None:
    return Layout("tp-pp", w, tp=g, pp=n, attn_tp=g, mlp_tp=g) if n > 1 else None


def tp_dp(w: int, g: int, n: int) -> Layout | None:
    return Layout("tp-dp", w, tp=g, dp=n, ep=w, attn_tp=g, attn_groups=n, mlp_tp=g) if n > 1 else None


def dep(w: int, g: int, n: int) -> Layout:
    """vLLM DP+EP: every GPU its own replica for attention and dense layers; experts spread over all."""
    return Layout("dep", w, dp=w, ep=w, attn_tp=1, attn_groups=w, mlp_tp=1)


def dp_attention(w: int, g: int, n: int) -> Layout:
    """SGLang DP-attention: attention data-parallel per GPU, MLP/vocab tensor-parallel, experts EP over all."""
    return Layout("dp-attention", w, tp=w, dp=w, ep=w, attn_tp=1, attn_groups=w, mlp_tp=w)


def dp_attention_dense1(w: int, g: int, n: int) -> Layout:
    """DP-attention with the dense MLP and shared expert replicated (SGLang --moe-dense-tp-size 1), for TPs whose
    dense slices would break the FP8 blocks (TP32: 18432/32 = 576)."""
    return Layout("dp-attention", w, tp=w, dp=w, ep=w, attn_tp=1, attn_groups=w, mlp_tp=w, dense_tp=1)


def layer_split(w: int, g: int, n: int) -> Layout | None:
    """llama.cpp: layers spread over the node's GPUs; one KV pool, not replicated."""
    return Layout("layer-split", w, attn_groups=1) if n == 1 else None


LayoutFn = Callable[[int, int, int], "Layout | None"]

# engine -> goal -> candidates, best first
CANDIDATES: dict[str, dict[str, tuple[LayoutFn, ...]]] = {
    "vllm": {
        "latency": (tep, tep_dcp, tp_pp, tp),
        "throughput": (dep, tp_dp, tep, tep_dcp, tp_pp),
    },
    "sglang": {
        "latency": (tep, tp_pp, tp),
        "throughput": (dp_attention, dp_attention_dense1, tep, tp_pp),
    },
    "llamacpp": {"latency": (layer_split,), "throughput": (layer_split,)},
}


def candidates(engine: str, goal: str, gpus_per_node: int, nodes: int, prefer: tuple[str, ...] = ()) -> list[Layout]:
    """The engine's layouts for the goal, best first; kinds in `prefer` (a model family's advice) go first."""
    w = gpus_per_node * nodes
    fns = CANDIDATES[engine][goal]
    if prefer:
        extra = tuple(f for g in CANDIDATES[engine].values() for f in g)
        fns = tuple(dict.fromkeys([*fns, *extra]))  # every layout the engine has, goal's order first
    out: list[Layout] = []
    for fn in fns:
        lay = fn(w, gpus_per_node, nodes)
        if lay is not None and lay not in out and (fn in CANDIDATES[engine][goal] or lay.kind in prefer):
            out.append(lay)
    return sorted(out, key=lambda lay: lay.kind not in prefer)  # stable: preferred kinds first
