"""tokenizer.json (ByteLevel BPE) -> `tokenizer.*` GGUF metadata, read directly (no transformers AutoTokenizer); tiktoken
vocabularies through dshub.formats.gguf_tiktoken."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dshub.checkpoint.synth_tokenizer import bytes_to_unicode
from dshub.errors import CheckpointError
from dshub.formats.gguf_file import KV, VT
from dshub.formats.gguf_tiktoken import TIKTOKEN_FILE, is_tiktoken, tiktoken_kvs, tiktoken_vocab

# llama_token_type
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

# Pre-tokenizers llama.cpp knows, recognized by their steps before a regex-free ByteLevel step (Split regexes in order;
# a Digits step as a marker). Values are `tokenizer.ggml.pre` names (llama-vocab.cpp's LLAMA_VOCAB_PRE_TYPE_*).
DIGITS_STEP = "<Digits individual_digits={}>"
PRE_TOKENIZERS: dict[tuple[str, ...], str] = {
    (  # DeepSeek-V3 / R1 / V3.1 (and the V4 tokenizer)
        "\\p{N}{1,3}",
        "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*"
        "|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ): "deepseek-v3",
    (  # DeepSeek LLM / V2 / V2-Lite
        "[\r\n]",
        "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
        "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556"
        "\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
        "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
        "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
        "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
        "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
        "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
        "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
        "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
        "\\s+$",
        "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
        DIGITS_STEP.format(True),
    ): "deepseek-llm",
    # Qwen2 (the R1-Distill-Qwen tokenizers; llama.cpp's "deepseek-r1-qwen" and "qwen2" are one pre-tokenizer type)
    (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",): "qwen2",
    # Llama 3 (the R1-Distill-Llama tokenizers): digits in groups of up to three
    (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",): "llama-bpe",
}

SPECIAL_KEYS: tuple[tuple[str, str, str], ...] = (  # (tokenizer_config field, config.json fallback, GGUF key)
    ("bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"),
    ("eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"),
    ("pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"),
    ("unk_token", "unk_token_id", "tokenizer.ggml.unknown_token_id"),
)
ADD_KEYS: tuple[tuple[str, str], ...] = (("add_bos_token", "tokenizer.ggml.add_bos_token"), ("add_eos_token", "tokenizer.ggml.add_eos_token"))


def _fail(msg: str, path: str = "tokenizer.json") -> CheckpointError:
    return CheckpointError(msg, path=path)


def pre_tokenizer_name(pre: Any) -> str:
    """llama.cpp's `tokenizer.ggml.pre` for a tokenizer.json pre_tokenizer definition; unknown ones are refused."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    regexes: list[str] = []
    byte_level = False
    for s in steps:
        if not isinstance(s, dict):
            continue
        if s.get("type") == "Split" and isinstance(s.get("pattern"), dict) and "Regex" in s["pattern"]:
            regexes.append(s["pattern"]["Regex"])
        elif s.get("type") == "Digits":
            regexes.append(DIGITS_STEP.format(bool(s.get("individual_digits"))))
        elif s.get("type") == "ByteLevel" and not s.get("use_regex", True):
            byte_level = True
    name = PRE_TOKENIZERS.get(tuple(regexes)) if byte_level else None
    if name is None:
        raise _fail(f"pre-tokenizer not recognized ({len(regexes)} split steps); known: {', '.join(sorted(set(PRE_TOKENIZERS.values())))}")
    return name


def looks_special(text: str) -> bool:
    """Added tokens llama.cpp marks as control even when tokenizer.json does not say `special`."""
    return text in ("<pad>", "<mask>") or (text.startswith("<|") and text.endswith("|>")) or (
        text.startswith("<｜") and text.endswith("｜>"))


def _merge_string(m: Any) -> str:
    if isinstance(m, str):
        return m
    if isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) for p in m):
        return " ".join(p.replace(" ", chr(ord(" ") + 256)) for p in m)
    raise _fail(f"merge entry {m!r} is neither 'a b' nor ['a', 'b']")


def _content(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("content")
    return v if isinstance(v, str) else None


def vocab_kvs(tok: dict[str, Any], tok_cfg: dict[str, Any], config: dict[str, Any], chat_template: str | None = None) -> list[KV]:
    """All `tokenizer.*` keys: tokens padded to config's vocab_size, types, merges, special ids, flags, chat template."""
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise _fail(f"model type {model.get('type')!r} is not supported (only byte-level BPE)")
    pre = pre_tokenizer_name(tok.get("pre_tokenizer"))
    added = {int(a["id"]): a for a in tok.get("added_tokens") or []}
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    by_id.update({i: a["content"] for i, a in added.items()})
    n = int(config.get("vocab_size") or 0) or (max(by_id) + 1)
    if max(by_id) >= n:
        raise _fail(f"token id {max(by_id)} does not fit config.json vocab_size {n}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n):
        if i in added:
            text = added[i]["content"]
            tokens.append(text)
            types.append(CONTROL if added[i].get("special") or looks_special(text) else USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    kvs = tiktoken_kvs(pre, tokens, types, [_merge_string(m) for m in model.get("merges") or []])
    return kvs + special_kvs(tokens, types, tok_cfg, config, chat_template)


def special_kvs(tokens: list[str], types: list[int], tok_cfg: dict[str, Any], config: dict[str, Any],
                chat_template: str | None) -> list[KV]:
    """Special-token ids (tokenizer_config's `*_token` content, else config.json's `*_token_id`), add_bos/add_eos
    flags and the chat template."""
    kvs: list[KV] = []
    ids = {t: i for i, t in enumerate(tokens) if types[i] != UNUSED}
    for cfg_key, cfg_id_key, gguf_key in SPECIAL_KEYS:
        text = _content(tok_cfg.get(cfg_key))
        tid = ids.get(text) if text is not None else None
        if tid is None and isinstance(config.get(cfg_id_key), int):
            tid = config[cfg_id_key]
        if tid is not None:
            kvs.append(KV(gguf_key, VT.UINT32, int(tid)))
    for cfg_key, gguf_key in ADD_KEYS:
        if isinstance(tok_cfg.get(cfg_key), bool):
            kvs.append(KV(gguf_key, VT.BOOL, tok_cfg[cfg_key]))
    kvs.extend(chat_template_kvs(tok_cfg.get("chat_template"), chat_template))
    return kvs


def chat_template_kvs(from_config: Any, from_file: str | None) -> list[KV]:
    """tokenizer_config's chat_template (a string, or named templates), else chat_template.jinja."""
    if isinstance(from_config, list):
        out = []
        for t in from_config:
            name, text = t.get("name"), t.get("template")
            out.append(KV("tokenizer.chat_template" if name == "default" else f"tokenizer.chat_template.{name}", VT.STRING, text))
        return out
    text = from_config if isinstance(from_config, str) and from_config else from_file
    return [KV("tokenizer.chat_template", VT.STRING, text)] if text else []


def load_vocab_kvs(root: Path, config: dict[str, Any]) -> list[KV]:
    """Read tokenizer.json (or a tiktoken vocabulary: tiktoken.model and its tokenization file), tokenizer_config.json
    and chat_template.jinja from a checkpoint directory."""
    tj = root / "tokenizer.json"
    cfg_path = root / "tokenizer_config.json"
    tok_cfg = read_json_object(cfg_path) if cfg_path.is_file() else {}
    jinja = root / "chat_template.jinja"
    template = jinja.read_text() if jinja.is_file() else None
    if is_tiktoken(root):
        pre, tokens, types, merges = tiktoken_vocab(root, tok_cfg, config, bytes_to_unicode())
        return tiktoken_kvs(pre, tokens, types, merges) + special_kvs(tokens, types, tok_cfg, config, template)
    if not tj.is_file():
        raise _fail(f"not found, nor {TIKTOKEN_FILE}; GGUF needs the vocabulary", str(tj))
    tok = read_json_object(tj)
    try:
        return vocab_kvs(tok, tok_cfg, config, template)
    except CheckpointError as e:
        raise CheckpointError(e.detail, path=str(tj)) from None


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"not valid JSON ({e})", str(path)) from None
    if not isinstance(doc, dict):
        raise _fail("not a JSON object", str(path))
    return doc
