"""Our GGUFs run in llama.cpp (llama-cpp-python) and in transformers' DeepseekV3ForCausalLM on the same weights:
the logits of both, the per-position MoE routing margin, and a GGUF's dequantized weights loaded into transformers."""
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
