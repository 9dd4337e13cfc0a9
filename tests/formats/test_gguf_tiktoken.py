"""tiktoken vocabularies (Kimi-K2 / Moonlight layout: tiktoken.model + tokenization_kimi.py, no tokenizer.json) ->
GGUF: the ranks read as the `tiktoken` package reads them, merges rebuilt from the ranks, and llama.cpp tokenizing
a multilingual text set exactly as tiktoken does with Kimi's pattern."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest

from dshub.checks import verify
from dshub.checkpoint.synth import write_synthetic
from dshub.errors import CheckpointError
from dshub.formats.gguf_tiktoken import PRE_TOKENIZERS, read_ranks
from dshub.formats.gguf_tokenizer import CONTROL, NORMAL, UNUSED, load_vocab_kvs
from tests.support.texts import TEXTS
from tests.support.tools import require

KIMI_TEXTS = TEXTS + [
    "[BOS]<|im_system|>system<|im_middle|>You are Kimi.<|im_end|><|im_user|>user<|im_middle|>你好，世界！<|im_end|>",
    "DeepSeek McDonald's iPhone HTMLParser we're I'LL it'S",  # case transitions and contractions
    "月之暗面 Moonshot AI 的 Kimi 模型。ひらがな、カタカナ、漢字。",
    "  \t\n 123456 7 89 1000000",
]


@pytest.fixture(autouse=True)
def _no_tiktoken_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken caches even local files by path otherwise


@pytest.fixture(scope="module")
def kimi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kimi") / "Kimi-tiny"
    write_synthetic(out, "tiny-kimi")
    return out


def tiktoken_encoding(root: Path):
    import tiktoken
    import tiktoken.load

    specials = {v["content"]: int(k) for k, v in json.loads((root / "tokenizer_config.json").read_text())["added_tokens_decoder"].items()}
    return tiktoken.Encoding("kimi-tiny", pat_str="|".join(PRE_TOKENIZERS["kimi-k2"]),
                             mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(root / "tiktoken.model")),
                             special_tokens=specials)


def test_ranks_read_as_tiktoken_reads_them(kimi: Path) -> None:
    import tiktoken.load

    assert not (kimi / "tokenizer.json").exists()
    assert read_ranks(kimi / "tiktoken.model") == tiktoken.load.load_tiktoken_bpe(str(kimi / "tiktoken.model"))


def test_vocab_metadata(kimi: Path) -> None:
    config = json.loads((kimi / "config.json").read_text())
    k = {x.key: x.value for x in load_vocab_kvs(kimi, config)}
    tokens, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    n_base = len(read_ranks(kimi / "tiktoken.model"))
    assert (k["tokenizer.ggml.model"], k["tokenizer.ggml.pre"]) == ("gpt2", "kimi-k2")
    assert len(tokens) == config["vocab_size"] and types[:n_base] == [NORMAL] * n_base
    assert tokens[n_base] == "[BOS]" and k["tokenizer.ggml.bos_token_id"] == n_base == config["bos_token_id"]
    assert tokens[n_base + 1] == "[EOS]" and k["tokenizer.ggml.eos_token_id"] == n_base + 1
    # ids after the named specials are Kimi's reserved special tokens (tokenization_kimi.py), CONTROL like them
    assert tokens[n_base + 10] == f"<|reserved_token_{n_base + 10}|>" and set(types[n_base:]) == {CONTROL}
    assert UNUSED not in types and "<|im_middle|>" in k["tokenizer.chat_template"]
    assert len(k["tokenizer.ggml.merges"]) == n_base - 256  # every learned token is one merge of two others


def test_llama_cpp_tokenizes_like_tiktoken(cli, kimi: Path, tmp_path: Path) -> None:
    llama_cpp = require("llama_cpp")
    r = cli("convert", kimi, "--to", "gguf", "--quant", "Q8_0", "--out", tmp_path / "g", "--json")
    assert r.exit_code == 0, r.output
    path = tmp_path / "g" / json.loads(r.stdout)["files"][0]["name"]
    assert verify(path).ok
    assert gguf.GGUFReader(path).fields["tokenizer.ggml.pre"].contents() == "kimi-k2"
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    enc = tiktoken_encoding(kimi)
    for text in KIMI_TEXTS:
        want = enc.encode(text, allowed_special="all")
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert got == want, text
        assert b"".join(piece(llama_cpp, llm, t) for t in got) == enc.decode_bytes(want) == text.encode("utf-8")
    assert len(set(t for text in KIMI_TEXTS for t in enc.encode(text, allowed_special="all"))) > 150  # many merges used


def piece(llama_cpp, llm, token: int) -> bytes:
    """One token's bytes from llama.cpp (llama-cpp-python's `detokenize` truncates pieces longer than 32 bytes)."""
    import ctypes

    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, len(buf), 0, True)
    assert 0 <= n <= len(buf)
    return buf.raw[:n]


def _copy(kimi: Path, tmp_path: Path) -> Path:
    d = tmp_path / "k"
    shutil.copytree(kimi, d)
    return d


@pytest.mark.parametrize("edit, match", [
    (lambda d: (d / "tiktoken.model").write_text("!!notbase64 0\n"), r"tiktoken.model.*line 1"),
    (lambda d: (d / "tiktoken.model").write_text("YQ== 0\nYg== 5\n"), r"tiktoken.model.*line 2.*rank 5"),
    (lambda d: (d / "tokenization_kimi.py").unlink(), r"tokenization_kimi.py.*not found"),
    (lambda d: (d / "tokenization_kimi.py").write_text("pat_str = r'\\w+'\n"), r"tokenization_kimi.py.*not recognized"),
])
def test_bad_tiktoken_input_is_named(kimi: Path, tmp_path: Path, edit, match: str) -> None:
    d = _copy(kimi, tmp_path)
    edit(d)
    with pytest.raises(CheckpointError, match=match):
        load_vocab_kvs(d, json.loads((d / "config.json").read_text()))


def test_cli_error_is_one_line_and_writes_nothing(cli, kimi: Path, tmp_path: Path) -> None:
    d = _copy(kimi, tmp_path)
    (d / "tokenization_kimi.py").unlink()
    r = cli("convert", d, "--to", "gguf", "--quant", "Q8_0", "--out", tmp_path / "out")
    assert r.exit_code == 1 and "tokenization_kimi.py" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.gguf"))
