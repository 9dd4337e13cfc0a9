"""FP8 checkpoint -> GGUF: read back by gguf-py's GGUFReader, keys/names/shapes/types, values vs the FP8 source."""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

from dshub.converters import build_options, run_conversion
from dshub.errors import CheckpointError, UsageError

QUANTS = ["F16", "BF16", "Q8_0", "Q4_0", "Q5_0"]
# max |dequantized - source| / block absmax: half a quantization step (a full one at Q4_0/Q5_0's clamped end)
# plus the fp16 rounding of the block scale (2^-11 relative, times up to 16 or 127 steps)
BLOCK_BOUND = {"Q8_0": 0.5 / 127 + 2**-10, "Q4_0": 1 / 8 + 2**-9, "Q5_0": 1 / 16 + 2**-9}


def convert(src: Path, out: Path, **params) -> dict:
    return run_conversion(src, build_options("gguf", out=out, **params), progress=False).to_dict()


@pytest.fixture(scope="module")
def gguf_files(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for q in QUANTS:
        d = tmp_path_factory.mktemp(f"gguf-{q}")
        convert(tiny_ckpt, d, quant=q)
        out[q] = d / f"tiny-{q}.gguf"
    return out


class Source:
    """The FP8 checkpoint's exact float32 values, computed independently of the converter."""

    def __init__(self, root: Path):
        self.root = root
        self.map = json.loads((root / "model.safetensors.index.json").read_text())["weight_map"]

    def raw(self, name: str) -> torch.Tensor:
        with safe_open(str(self.root / self.map[name]), "pt") as f:
            return f.get_tensor(name)

    def __call__(self, name: str) -> np.ndarray:
        w = self.raw(name)
        if w.dtype == torch.float8_e4m3fn:
            s = self.raw(name.replace(".weight", ".weight_scale_inv"))
            full = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[: w.shape[0], : w.shape[1]]
            return (w.float() * full).numpy()
        return w.float().numpy()


def expected_values(src: Source, cfg: dict, name: str) -> np.ndarray:
    """The float32 tensor llama.cpp's converter would build for GGUF tensor `name` (numpy shape)."""
    if name in ("token_embd.weight", "output.weight", "output_norm.weight"):
        return src({"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
                    "output_norm.weight": "model.norm.weight"}[name])
    _, layer, rest = name.split(".", 2)
    p = f"model.layers.{layer}."
    if rest in ("attn_k_b.weight", "attn_v_b.weight"):
        h, nope, v = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]
        kv_b = src(p + "self_attn.kv_b_proj.weight").reshape(h, nope + v, -1)
        return kv_b[:, :nope, :].transpose(0, 2, 1) if rest.startswith("attn_k_b") else kv_b[:, nope:, :]
    if "_exps" in rest:
        proj = rest.split("_")[1]
        return np.stack([src(f"{p}mlp.experts.{e}.{proj}_proj.weight") for e in range(cfg["n_routed_experts"])])
    table = {
        "attn_norm.weight": "input_layernorm.weight", "attn_q_a.weight": "self_attn.q_a_proj.weight",
        "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight", "attn_q_b.weight": "self_attn.q_b_proj.weight",
        "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight",
        "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
        "ffn_gate_inp.weight": "mlp.gate.weight", "exp_probs_b.bias": "mlp.gate.e_score_correction_bias",
        "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight", "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
        "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight",
    }
    return src(p + table[rest])


def expected_names(cfg: dict) -> set[str]:
    names = {"token_embd.weight", "output_norm.weight", "output.weight"}
    attn = ["attn_norm", "attn_q_a", "attn_q_a_norm", "attn_q_b", "attn_kv_a_mqa", "attn_kv_a_norm", "attn_k_b", "attn_v_b",
            "attn_output", "ffn_norm"]
    for i in range(cfg["num_hidden_layers"]):
        mlp = ["ffn_gate", "ffn_up", "ffn_down"] if i < cfg["first_k_dense_replace"] else [
            "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"]
        names |= {f"blk.{i}.{n}.weight" for n in attn + mlp}
        if i >= cfg["first_k_dense_replace"]:
            names.add(f"blk.{i}.exp_probs_b.bias")
    return names


def field(r, key):
    return r.fields[key].contents()


@pytest.mark.parametrize("quant", QUANTS)
def test_read_back_keys_names_shapes_types(gguf_files: dict[str, Path], tiny_ckpt: Path, quant: str) -> None:
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    r = gguf.GGUFReader(gguf_files[quant])
    assert field(r, "general.architecture") == "deepseek2"
    assert field(r, "general.file_type") == {"F16": 1, "BF16": 32, "Q8_0": 7, "Q4_0": 2, "Q5_0": 8}[quant]
    expect = {
        "deepseek2.block_count": cfg["num_hidden_layers"],  # MTP layer left out
        "deepseek2.attention.head_count": cfg["num_attention_heads"],
        "deepseek2.attention.head_count_kv": 1,
        "deepseek2.attention.key_length": cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"],
        "deepseek2.attention.value_length": cfg["kv_lora_rank"],
        "deepseek2.attention.key_length_mla": cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"],
        "deepseek2.attention.value_length_mla": cfg["v_head_dim"],
        "deepseek2.attention.q_lora_rank": cfg["q_lora_rank"],
        "deepseek2.attention.kv_lora_rank": cfg["kv_lora_rank"],
        "deepseek2.leading_dense_block_count": cfg["first_k_dense_replace"],
        "deepseek2.expert_count": cfg["n_routed_experts"],
        "deepseek2.expert_used_count": cfg["num_experts_per_tok"],
        "deepseek2.expert_shared_count": cfg["n_shared_experts"],
        "deepseek2.expert_group_count": cfg["n_group"],
        "deepseek2.expert_group_used_count": cfg["topk_group"],
        "deepseek2.expert_gating_func": 2,
        "deepseek2.expert_weights_norm": True,
        "deepseek2.rope.dimension_count": cfg["qk_rope_head_dim"],
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "deepseek-v3",
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.add_bos_token": True,
    }
    for k, v in expect.items():
        assert field(r, k) == v, k
    assert field(r, "deepseek2.expert_weights_scale") == pytest.approx(2.5)
    assert len(field(r, "tokenizer.ggml.tokens")) == cfg["vocab_size"]
    assert not any(k.startswith("deepseek2.rope.scaling") for k in r.fields)  # no rope_scaling in this config

    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == expected_names(cfg)
    assert not any("attn_kv_b" in n or "nextn" in n for n in tensors)
    h, nope, v, kvl = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    ne = {n: [int(d) for d in t.shape] for n, t in tensors.items()}
    assert ne["blk.0.attn_k_b.weight"] == [nope, kvl, h]
    assert ne["blk.0.attn_v_b.weight"] == [kvl, v, h]
    assert ne["blk.1.ffn_gate_exps.weight"] == [cfg["hidden_size"], cfg["moe_intermediate_size"], cfg["n_routed_experts"]]
    assert ne["blk.1.ffn_down_exps.weight"] == [cfg["moe_intermediate_size"], cfg["hidden_size"], cfg["n_routed_experts"]]
    for n, t in tensors.items():
        f32 = len(t.shape) == 1 or n.endswith(("_norm.weight", "ffn_gate_inp.weight", ".bias"))
        assert t.tensor_type.name == ("F32" if f32 else quant), n


@pytest.mark.parametrize("quant", QUANTS)
def test_values_match_fp8_source(gguf_files: dict[str, Path], tiny_ckpt: Path, quant: str) -> None:
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    src = Source(tiny_ckpt)
    r = gguf.GGUFReader(gguf_files[quant])
    for t in r.tensors:
        want = expected_values(src, cfg, t.name)
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
        typ = t.tensor_type.name
        if typ == "F32":
            np.testing.assert_array_equal(got, want, err_msg=t.name)
        elif typ in ("F16", "BF16"):  # exactly the nearest representable value
            exact = want.astype(np.float16).astype(np.float32) if typ == "F16" else torch.from_numpy(want).bfloat16().float().numpy()
            np.testing.assert_array_equal(got, exact, err_msg=t.name)
        else:
            blocks = want.reshape(-1, 32)
            err = np.abs(got.reshape(-1, 32) - blocks)
            assert (err <= np.abs(blocks).max(axis=1, keepdims=True) * BLOCK_BOUND[typ] + 1e-12).all(), t.name
            # and byte-for-byte what llama.cpp's quantizer makes from the same float32 values
            ref = gguf.quants.quantize(np.ascontiguousarray(want.reshape(-1, want.shape[-1])), t.tensor_type)
            assert np.array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1)), t.name


def test_split_by_tensor_count_and_size(tiny_ckpt: Path, tmp_path: Path) -> None:
    doc = convert(tiny_ckpt, tmp_path / "a", quant="Q8_0", split_max_tensors=20)
    names = [f["name"] for f in doc["files"]]
    assert names == [f"tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    total = 0
    for i, n in enumerate(names):
        r = gguf.GGUFReader(tmp_path / "a" / n)
        assert (field(r, "split.no"), field(r, "split.count"), field(r, "split.tensors.count")) == (i, 3, 52)
        assert ("tokenizer.ggml.tokens" in r.fields) == (i == 0)
        total += len(r.tensors)
        assert len(r.tensors) <= 20
    assert total == 52
    doc = convert(tiny_ckpt, tmp_path / "b", quant="Q8_0", split_max_size="2M")
    sizes = [(tmp_path / "b" / f["name"]).stat().st_size for f in doc["files"]]
    assert len(sizes) >= 3 and all(s == f["bytes"] for s, f in zip(sizes, doc["files"]))


def test_dry_run_writes_nothing_and_plans_sizes(tiny_ckpt: Path, tmp_path: Path) -> None:
    doc = run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "o", dry_run=True, **{"quant": "Q4_0"})).to_dict()
    assert doc["dry_run"] and not (tmp_path / "o").exists()
    assert doc["types"] == {"F32": 17, "Q4_0": 35} and doc["tensors"] == 52 and doc["mtp_layers_left_out"] == 1
    real = convert(tiny_ckpt, tmp_path / "o", quant="Q4_0")
    assert (tmp_path / "o" / real["files"][0]["name"]).stat().st_size == doc["files"][0]["bytes"]


def test_resume_skips_finished_files_and_output_is_deterministic(tiny_ckpt: Path, tmp_path: Path) -> None:
    first = convert(tiny_ckpt, tmp_path / "o", quant="Q8_0", split_max_tensors=30)
    blobs = {f["name"]: (tmp_path / "o" / f["name"]).read_bytes() for f in first["files"]}
    again = convert(tiny_ckpt, tmp_path / "o", quant="Q8_0", split_max_tensors=30)
    assert again["written"] == [] and sorted(again["resumed_skipped"]) == sorted(blobs)
    (tmp_path / "o" / first["files"][1]["name"]).unlink()
    third = convert(tiny_ckpt, tmp_path / "o", quant="Q8_0", split_max_tensors=30)
    assert third["written"] == [first["files"][1]["name"]]
    other = convert(tiny_ckpt, tmp_path / "p", quant="Q8_0", split_max_tensors=30)
    for f in other["files"]:
        assert (tmp_path / "p" / f["name"]).read_bytes() == blobs[f["name"]]


def test_tensor_type_override_and_row_fallback(tiny_ckpt: Path, tmp_path: Path) -> None:
    doc = convert(tiny_ckpt, tmp_path / "o", quant="Q8_0", tensor_type=[r"ffn_down_exps=Q4_0", r"attn_k_b=Q4_K"])
    r = gguf.GGUFReader(tmp_path / "o" / doc["files"][0]["name"])
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.1.ffn_down_exps.weight"] == "Q4_0" and types["blk.1.ffn_up_exps.weight"] == "Q8_0"
    # attn_k_b rows are qk_nope_head_dim = 64 long, not a multiple of 256: llama.cpp's Q4_K fallback is Q5_0
    assert types["blk.0.attn_k_b.weight"] == "Q5_0"
    fb = {f["name"]: f for f in doc["fallbacks"]}
    assert fb["blk.0.attn_k_b.weight"]["asked"] == "Q4_K" and "Q5_0 instead" in fb["blk.0.attn_k_b.weight"]["note"]


def test_bad_options_are_usage_errors(tiny_ckpt: Path, tmp_path: Path) -> None:
    for params, msg in [({}, "needs --quant"), ({"quant": "Q9_9"}, "not supported; known: F32"),
                        ({"quant": "Q8_0", "split_max_size": "lots"}, "expected a size"),
                        ({"quant": "Q8_0", "tensor_type": ["nope"]}, "expected REGEX=TYPE"),
                        ({"quant": "Q8_0", "bogus": 1}, "does not take bogus")]:
        with pytest.raises(UsageError, match=msg):
            run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "o", **params))


def test_tensor_type_without_a_quantizer_is_a_usage_error(tiny_ckpt: Path, tmp_path: Path) -> None:
    for t in ("Q8_K", "Q8_1"):  # ggml types dshub cannot write (activation-only types): refused before any work
        with pytest.raises(UsageError, match=f"cannot write type '{t}'; supported: F32"):
            run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "o", **{"quant": "Q8_0", "tensor_type": [f".*={t}"]}))
    assert not (tmp_path / "o").exists()


def test_nan_weight_fails_naming_file_and_tensor(tiny_copy: Path, tmp_path: Path) -> None:
    from dshub.checkpoint.writer import write_tensors

    wm = json.loads((tiny_copy / "model.safetensors.index.json").read_text())["weight_map"]
    name = "model.layers.1.mlp.experts.3.up_proj.weight"
    shard = tiny_copy / wm[name]
    with safe_open(str(shard), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    scale = name.replace(".weight", ".weight_scale_inv")
    tensors[name] = tensors[name].clone()
    tensors[name][5, 7] = float("nan")
    write_tensors(shard, list(tensors.items()), {"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"{wm[name]}: tensor {name} -> blk.1.ffn_up_exps.weight: .*non-finite"):
        convert(tiny_copy, tmp_path / "o", quant="Q8_0")
    assert not list((tmp_path / "o").glob("*.gguf"))
    del scale


def test_cli_json(cli, tiny_ckpt: Path, tmp_path: Path) -> None:
    res = cli("convert", tiny_ckpt, "--to", "gguf", "--quant", "q8_0", "--out", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["quant"] == "Q8_0" and doc["files"][0]["name"] == "tiny-Q8_0.gguf"
    res = cli("convert", tiny_ckpt, "--to", "gguf", "--out", tmp_path / "p")
    assert res.exit_code == 2 and "needs --quant" in res.output


def test_mtp_layers_kept_on_request(tiny_ckpt: Path, tmp_path: Path) -> None:
    from dshub.checks import verify

    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    doc = convert(tiny_ckpt, tmp_path, quant="Q8_0", mtp=True)
    assert doc["mtp_layers_left_out"] == 0 and doc["tensors"] == 52 + 18 + 6
    r = gguf.GGUFReader(tmp_path / doc["files"][0]["name"])
    n = cfg["num_hidden_layers"]
    assert field(r, "deepseek2.block_count") == n + 1 and field(r, "deepseek2.nextn_predict_layers") == 1
    ne = {t.name: [int(d) for d in t.shape] for t in r.tensors}
    h = cfg["hidden_size"]
    assert ne[f"blk.{n}.nextn.eh_proj.weight"] == [2 * h, h]
    assert ne[f"blk.{n}.nextn.shared_head_head.weight"] == [h, cfg["vocab_size"]]
    assert f"blk.{n}.ffn_gate_exps.weight" in ne and f"blk.{n}.nextn.enorm.weight" in ne
    src = Source(tiny_ckpt)
    t = next(t for t in r.tensors if t.name == f"blk.{n}.nextn.eh_proj.weight")
    want = src(f"model.layers.{n}.eh_proj.weight")
    ref = gguf.quants.quantize(want, t.tensor_type)
    assert np.array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1))
    assert verify(tmp_path).ok


def test_missing_tokenizer_is_a_one_line_error(cli, tiny_copy: Path, tmp_path: Path) -> None:
    (tiny_copy / "tokenizer.json").unlink()
    res = cli("convert", tiny_copy, "--to", "gguf", "--quant", "Q8_0", "--out", tmp_path / "o")
    assert res.exit_code == 1
    assert "tokenizer.json: not found" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.gguf*"))


def _interrupt_at(tensor: str):
    """A `_runner` replacement whose jobs for `tensor` raise KeyboardInterrupt (as Ctrl-C would)."""
    from dshub.converters.gguf import tensors

    real = tensors._runner

    def failing(reader, p, imatrix):
        run = real(reader, p, imatrix)
        if p.info.name != tensor:
            return run

        def interrupted(job):
            raise KeyboardInterrupt

        return interrupted

    return failing


def test_interrupted_run_leaves_no_partial_file_and_resumes(tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dshub.converters.gguf import tensors

    real = tensors._runner
    failing = _interrupt_at("output.weight")  # the last tensor, in the last file

    def run(**kw) -> dict:
        opts = build_options("gguf", out=tmp_path, workers=1, **{"quant": "Q8_0", "split_max_tensors": 20, **kw})
        return run_conversion(tiny_ckpt, opts, progress=False).to_dict()

    monkeypatch.setattr(tensors, "_runner", failing)
    with pytest.raises(KeyboardInterrupt):
        run()
    left = sorted(p.name for p in tmp_path.iterdir())
    names = [f"tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert left == ["dshub-manifest.json", *names[:2]], left  # no temp file, no partial third file
    monkeypatch.setattr(tensors, "_runner", real)
    doc = run()
    assert doc["resumed_skipped"] == names[:2] and doc["written"] == names[2:]
    assert json.loads((tmp_path / "dshub-manifest.json").read_text())["complete"] is True


def test_prefetching_workers_write_the_same_file_and_stop_cleanly(tiny_ckpt: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One file, two workers computing chunks ahead across tensor boundaries: the bytes of one worker; an interrupt
    in a worker's chunk reaches the writer, which leaves no file and no temporary behind."""
    from dshub.converters.gguf import tensors

    one = run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "one", workers=1, quant="Q4_K_M"), progress=False)
    real = tensors._runner
    monkeypatch.setattr(tensors, "_runner", _interrupt_at("blk.1.ffn_down_exps.weight"))
    with pytest.raises(KeyboardInterrupt):
        run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "two", workers=2, quant="Q4_K_M"), progress=False)
    assert [p.name for p in (tmp_path / "two").iterdir() if p.name != "dshub-manifest.json"] == []  # no file, no temp
    monkeypatch.setattr(tensors, "_runner", real)
    run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "two", workers=2, quant="Q4_K_M"), progress=False)
    name = one.to_dict()["written"][0]
    assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
