"""tiktoken vocabularies (Kimi-K2, Kimi-K2-Thinking, Moonlight: `tiktoken.model`, no tokenizer.json) -> GGUF
`tokenizer.*` metadata, as llama.cpp's converter writes them for its `kimi-k2` pre-tokenizer.

Facts (llama-cpp-python 0.3.36's vendored llama.cpp: conversion/deepseek.py `DeepseekV2Model.set_vocab`,
conversion/qwen.py `QwenModel.bpe`, src/unicode.cpp `unicode_regex_split_custom_kimi_k2`; moonshotai/Kimi-K2-Instruct
tokenization_kimi.py and tokenizer_config.json):
- `tiktoken.model`: one `base64(token bytes) rank` per line; the rank is the token id.
- merges are rebuilt from the ranks: a token's pair is what BPE over its bytes yields when only lower ranks may merge;
  tokens written as GPT-2 byte-level strings; `tokenizer.ggml.model` gpt2, `tokenizer.ggml.pre` kimi-k2.
- special tokens follow the ranked ones: `added_tokens_decoder` of tokenizer_config.json, and ids of the 256 reserved
  ones it does not name are `<|reserved_token_{id}|>` (tokenization_kimi.py); all CONTROL. Further ids are unused pads.
- the pre-tokenizer is recognized from the tokenization file named by tokenizer_config.json's `auto_map`, read as text
  (never imported): it must hold every piece of a pattern llama.cpp implements. llama.cpp's kimi-k2 splitter keeps a
  run of non-Han letters whole where Kimi's pattern cuts it before an upper-case letter following a lower-case one;
  tokenization agrees because a vocabulary trained with that pattern has no token across such a cut.
"""
from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from dshub.errors import CheckpointError
from dshub.formats.gguf_file import KV, VT

TIKTOKEN_FILE = "tiktoken.model"
RESERVED_SPECIALS = 256  # tokenization_kimi.py num_reserved_special_tokens
# `tokenizer.ggml.pre` -> the pattern pieces of its tokenization file (tokenization_kimi.py `pat_str`, joined by "|";
# the same pattern is spelled out above llama.cpp's unicode_regex_split_custom_kimi_k2).
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "kimi-k2": (
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ),
}


def _fail(msg: str, path: Path) -> CheckpointError:
    return CheckpointError(msg, path=str(path))


def read_ranks(path: Path) -> dict[bytes, int]:
    """`tiktoken.model` as token bytes -> rank; ranks must be 0..n-1, each once, tokens distinct."""
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
                if len(parts) != 2:
                    raise ValueError
            except (binascii.Error, ValueError, IndexError):
                raise _fail(f"line {no}: expected 'base64-token rank'", path) from None
            if token in ranks or rank != len(ranks):
                raise _fail(f"line {no}: token repeated or rank {rank} out of order (expected {len(ranks)})", path)
            ranks[token] = rank
    if not ranks:
        raise _fail("no tokens", path)
    return ranks


def bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """BPE over `token`'s bytes merging the lowest-ranked adjacent pair while its rank is below `max_rank`."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], max_rank))
        if ranks.get(parts[best] + parts[best + 1], max_rank) >= max_rank:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def merges_from_ranks(ranks: dict[bytes, int], to_str: dict[int, str]) -> list[str]:
    """The BPE merges a tiktoken vocabulary implies, in rank order, as `A B` byte-level strings."""
    def s(b: bytes) -> str:
        return "".join(to_str[x] for x in b)

    out = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1 and len(parts := bpe_parts(ranks, token, rank)) == 2:
            out.append(f"{s(parts[0])} {s(parts[1])}")
    return out


def pre_tokenizer(root: Path, tok_cfg: dict[str, Any]) -> str:
    """The `tokenizer.ggml.pre` of a tiktoken checkpoint, from its tokenization file's text (never imported)."""
    ref = ((tok_cfg.get("auto_map") or {}).get("AutoTokenizer") or [None])[0]
    if not isinstance(ref, str) or "." not in ref:
        raise _fail("tokenizer_config.json names no tokenization file (auto_map.AutoTokenizer); the pre-tokenizer "
                    "of a tiktoken vocabulary is read from it", root / "tokenizer_config.json")
    path = root / (ref.split("--")[-1].rsplit(".", 1)[0] + ".py")
    if not path.is_file():
        raise _fail("not found; the pre-tokenizer pattern of the tiktoken vocabulary is read from it", path)
    text = path.read_text(encoding="utf-8", errors="replace")
    for name, pieces in PRE_TOKENIZERS.items():
        if all(p in text for p in pieces):
            return name
    raise _fail(f"pre-tokenizer pattern not recognized; known: {', '.join(PRE_TOKENIZERS)}", path)


def tiktoken_vocab(root: Path, tok_cfg: dict[str, Any], config: dict[str, Any], byte_str: dict[int, str]
                   ) -> tuple[str, list[str], list[int], list[str]]:
    """(pre-tokenizer, tokens padded to vocab_size, token types, merges) of a tiktoken checkpoint directory.
    `byte_str` is GPT-2's byte -> character table; types are llama_token_type codes (NORMAL 1, CONTROL 3, UNUSED 5)."""
    pre = pre_tokenizer(root, tok_cfg)
    path = root / TIKTOKEN_FILE
    ranks = read_ranks(path)
    n_base = len(ranks)
    specials: dict[int, str] = {}
    for k, v in (tok_cfg.get("added_tokens_decoder") or {}).items():
        content = v.get("content") if isinstance(v, dict) else None
        if not (str(k).isdigit() and isinstance(content, str)):
            raise _fail(f"added_tokens_decoder entry {k!r} is not an id with a content string", root / "tokenizer_config.json")
        if int(k) < n_base:
            raise _fail(f"added token {content!r} has id {k}, inside the {n_base} ranked tokens", root / "tokenizer_config.json")
        specials[int(k)] = content
    n = int(config.get("vocab_size") or 0) or max([n_base - 1, *specials]) + 1
    if max([n_base - 1, *specials]) >= n:
        raise _fail(f"token ids reach {max([n_base - 1, *specials])}, beyond config.json vocab_size {n}", path)
    by_rank = sorted(ranks, key=ranks.__getitem__)
    tokens: list[str] = ["".join(byte_str[b] for b in t) for t in by_rank]
    types = [1] * n_base
    for i in range(n_base, n):
        if i in specials or i < n_base + RESERVED_SPECIALS:
            tokens.append(specials.get(i, f"<|reserved_token_{i}|>"))
            types.append(3)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(5)
    return pre, tokens, types, merges_from_ranks(ranks, byte_str)


def is_tiktoken(root: Path) -> bool:
    return (root / TIKTOKEN_FILE).is_file() and not (root / "tokenizer.json").is_file()


def tiktoken_kvs(pre: str, tokens: list[str], types: list[int], merges: list[str]) -> list[KV]:
    return [
        KV("tokenizer.ggml.model", VT.STRING, "gpt2"),
        KV("tokenizer.ggml.pre", VT.STRING, pre),
        KV("tokenizer.ggml.tokens", VT.ARRAY, tokens, VT.STRING),
        KV("tokenizer.ggml.token_type", VT.ARRAY, types, VT.INT32),
        KV("tokenizer.ggml.merges", VT.ARRAY, merges, VT.STRING),
    ]
