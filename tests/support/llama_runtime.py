"""Our GGUFs run in llama.cpp (llama-cpp-python) and in transformers (DeepseekV3ForCausalLM, DeepseekV32ForCausalLM)
on the same weights: the logits of both, the per-position MoE routing margin (and V3.2's indexer top-k gap), a GGUF's
dequantized weights loaded into transformers, and the bounds the comparisons hold."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
import transformers

from dshub.formats.gguf_layout import map_tensors
from tests.support.tools import require

IDS = [0] + list(range(40, 70)) + [300, 301, 302, 5, 9, 100, 200, 41, 42, 43, 600, 601]  # token ids the logit tests feed


def hf_model(path: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def indexer_margin(ix: torch.nn.Module, hidden: torch.Tensor, q_resid: torch.Tensor, pos_emb: tuple) -> torch.Tensor:
    """DeepSeek-V3.2's lightning indexer scores (as transformers' DeepseekV32Indexer computes them) and, per query
    position, the gap between its top-k-th and next key score relative to the row's largest |score| (inf where every
    earlier key is selected): where it is small, any numeric difference may select another key."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb

    b, s, _ = hidden.shape
    rope, rest = ix.qk_rope_head_dim, ix.head_dim - ix.qk_rope_head_dim
    q = ix.wq_b(q_resid).view(b, s, ix.n_heads, ix.head_dim)
    k = ix.k_norm(ix.wk(hidden)).unsqueeze(2)
    (q_rot, q_pass), (k_rot, k_pass) = torch.split(q, [rope, rest], -1), torch.split(k, [rope, rest], -1)
    q_rot, k_rot = apply_rotary_pos_emb(q_rot, k_rot, *pos_emb, unsqueeze_dim=2)
    q, k = torch.cat([q_rot, q_pass], -1).float(), torch.cat([k_rot, k_pass], -1).squeeze(2).float()
    scores = torch.relu(q @ k.transpose(-1, -2).unsqueeze(1) * ix.softmax_scale)  # [b, s, heads, t]
    w = ix.weights_proj(hidden.to(ix.weights_proj.weight.dtype)).float() * ix.n_heads ** -0.5
    score = (w.unsqueeze(-2) @ scores).squeeze(-2)[0]  # [s, t]
    top = ix.index_topk
    out = torch.full((s,), float("inf"))
    for i in range(top, s):
        v = score[i, : i + 1].sort(descending=True)[0]
        out[i] = (v[top - 1] - v[top]) / v.abs().max().clamp(min=1e-12)
    return out


def indexer_gaps(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """DeepSeek-V3.2: per position, the smallest relative indexer top-k gap over all layers (`indexer_margin`)."""
    gaps: list[torch.Tensor] = []

    def hook(mod: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        gaps.append(indexer_margin(mod, args[0], args[1], args[2]))

    handles = [layer.self_attn.indexer.register_forward_pre_hook(hook, with_kwargs=True) for layer in model.model.layers]
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack(gaps).min(0)[0].numpy()


def hf_logits(model: torch.nn.Module, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Logits and, per position, the smallest routing margin over all MoE layers."""
    margins: list[torch.Tensor] = []

    def hook(mod: torch.nn.Module, args: tuple) -> None:
        h = args[0].reshape(-1, mod.hidden_dim).float()
        scores = torch.sigmoid(h @ mod.weight.float().T) + mod.e_score_correction_bias
        groups = scores.view(-1, mod.num_group, mod.num_experts // mod.num_group).topk(2, dim=-1)[0].sum(-1)
        gs = groups.sort(dim=-1, descending=True)[0]
        gap = gs[:, mod.topk_group - 1] - gs[:, mod.topk_group] if mod.num_group > mod.topk_group else torch.full_like(gs[:, 0], 9.0)
        keep = torch.zeros_like(groups).scatter_(1, groups.topk(mod.topk_group, dim=-1)[1], 1).bool()
        s = scores.masked_fill(~keep.repeat_interleave(mod.num_experts // mod.num_group, 1), -1e9).sort(dim=-1, descending=True)[0]
        margins.append(torch.minimum(gap, s[:, mod.top_k - 1] - s[:, mod.top_k]))

    handles = [layer.mlp.gate.register_forward_pre_hook(hook) for layer in model.model.layers if hasattr(layer.mlp, "gate")]
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
    finally:
        for h in handles:
            h.remove()
    return logits, torch.stack(margins).min(0)[0].numpy()


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    llm = require("llama_cpp").Llama(model_path=str(path), n_ctx=256, logits_all=True, verbose=False, n_threads=2, seed=0)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def load_gguf_weights(model: torch.nn.Module, path: Path, config: dict) -> None:
    """Put the GGUF's dequantized weights into the transformers model (the inverse of the converter's mapping)."""
    r = gguf.GGUFReader(path)
    vals = {t.name: torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type))).reshape(
        [int(d) for d in reversed(t.shape)]) for t in r.tensors}
    sd: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], torch.Tensor] = {}
    for name, shape, src in map_tensors(config):
        v = vals[name].reshape(shape)
        if src.kind == "tensor":
            sd[src.names[0]] = v
        elif src.kind == "experts":
            layer, proj = int(name.split(".")[1]), name.split(".")[2].split("_")[1]
            experts[(layer, proj)] = v
        elif src.kind == "k_b":
            h, nope, vh = src.split
            vb = vals[name.replace("attn_k_b", "attn_v_b")].reshape(h, vh, -1)
            sd[src.names[0]] = torch.cat([v.transpose(1, 2), vb], dim=1).reshape(h * (nope + vh), -1)
    for (layer, proj), v in experts.items():
        p = f"model.layers.{layer}.mlp.experts."
        if proj == "down":
            sd[p + "down_proj"] = v
        elif proj == "gate":
            sd[p + "gate_up_proj"] = torch.cat([v, experts[(layer, "up")]], dim=1)
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not [m for m in missing if "rotary" not in m], missing


# Bounds of the logit comparisons (their measurements: tests/converters/gguf/test_llama_logits.py's docstring; Q4_K_M
# on its own weights: test_mixtures_llama.py's BOUND_OWN, 0.23 measured at the BOS position).
BOUND = {"F16": 0.01, "Q8_0": 0.12, "Q4_K_M": 0.30}
TAU = {"F16": 0.005, "Q8_0": 0.03, "Q4_K_M": 0.03}  # routing-margin threshold: larger where llama.cpp perturbs activations more
INDEX_TAU = {"F16": 0.001, "Q8_0": 0.015, "Q4_K_M": 0.015}  # V3.2 indexer top-k gap threshold (relative)
MIN_KEPT = {"F16": 0.6, "Q8_0": 0.6, "Q4_K_M": 0.5}


def check_logits(got: np.ndarray, ref: np.ndarray, margins: np.ndarray, quant: str, label: str,
                 gaps: np.ndarray | None = None) -> dict:
    """llama.cpp's logits within BOUND[quant] of the reference's logit scale wherever no near tie decides the routing
    (margin < TAU) or, given V3.2's indexer `gaps`, the key selection (gap < INDEX_TAU); top-1 equal where the
    reference's margin is clear."""
    bound = BOUND[quant]
    scale = float(np.abs(ref).max())
    diff = np.abs(got - ref).max(axis=1) / scale
    kept = margins >= TAU[quant]
    if gaps is not None:
        kept &= gaps >= INDEX_TAU[quant]
    assert kept.mean() >= MIN_KEPT[quant], f"{label}: only {kept.sum()} of {len(kept)} positions route unambiguously"
    assert diff[kept].max() <= bound, f"{label}: max |Δlogit| {diff[kept].max():.4f} of the logit scale > {bound}"
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = kept & ((top2[:, 1] - top2[:, 0]) > bound * scale)
    assert (got.argmax(1) == ref.argmax(1))[clear].all(), f"{label}: top-1 differs where the reference margin is clear"
    return {"max": float(diff[kept].max()), "median": float(np.median(diff)), "kept": int(kept.sum()), "clear": int(clear.sum())}
