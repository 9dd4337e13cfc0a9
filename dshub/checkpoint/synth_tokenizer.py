"""A small, real ByteLevel-BPE tokenizer with DeepSeek-V3's pre-tokenizer, learned from a built-in corpus."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
CHAT_SPECIALS = ("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")

# DeepSeek-V3's pre-tokenizer: three regex splits, then byte-level mapping without its own regex.
DEEPSEEK_V3_PRETOKENIZER: dict[str, Any] = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
        {
            "type": "Split",
            "pattern": {
                "Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
            },
            "behavior": "Isolated",
            "invert": False,
        },
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

# The distills' pre-tokenizers: one regex split, then byte-level mapping (Qwen2's tokenizer.json for the Qwen
# distills; Llama 3's, whose digits group by up to three, for the Llama distills).
_GPT4_STYLE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{digits}"
               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def single_split_pretokenizer(regex: str) -> dict[str, Any]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}


QWEN2_PRETOKENIZER = single_split_pretokenizer(_GPT4_STYLE.replace("{digits}", ""))
LLAMA3_PRETOKENIZER = single_split_pretokenizer(_GPT4_STYLE.replace("{digits}", "{1,3}"))
PRETOKENIZERS: dict[str, dict[str, Any]] = {"deepseek-v3": DEEPSEEK_V3_PRETOKENIZER, "qwen2": QWEN2_PRETOKENIZER,
                                            "llama3": LLAMA3_PRETOKENIZER}

CORPUS = (
    "The quick brown fox jumps over the lazy dog. DeepSeek models use multi-head latent attention and a mixture of experts. "
    "Each token is routed to a few experts out of many; the router scores experts with a sigmoid and picks the top ones. "
    "Weights are stored in FP8 with one scale for every block of 128 by 128 values. Converting them to BF16 multiplies each "
    "value by its block scale and rounds to the nearest even bfloat16. Quantization to four bits keeps one scale per group. "
    "def main():\n    print('hello world')\n    return 0\n"
    "User: what is 12 + 30? Assistant: 12 + 30 = 42. Thinking step by step helps the model reason about the answer."
)
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by ByteLevel BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def split_words(corpus: str) -> list[str]:
    """Training words: optional space + word characters, optional space + punctuation, whitespace runs."""
    return re.findall(r" ?\w+| ?[^\w\s]+|\s+", corpus)


def learn_merges(corpus: str, n_merges: int, split: Callable[[str], list[str]] = split_words) -> list[tuple[str, str]]:
    """Greedy byte-level BPE on `corpus` cut into words by `split`; ties broken by the pair itself (deterministic)."""
    b2u = bytes_to_unicode()
    words = Counter("".join(b2u[b] for b in w.encode()) for w in split(corpus))
    seqs = {w: list(w) for w in words}
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, syms in seqs.items():
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, syms in seqs.items():
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            seqs[w] = out
    return merges


def build_tokenizer(n_merges: int = 300, pre: str = "deepseek-v3") -> tuple[dict[str, Any], dict[str, Any], int]:
    """Return (tokenizer.json, tokenizer_config.json, number of ids used); `pre` names the pre-tokenizer."""
    vocab: dict[str, int] = {BOS: 0, EOS: 1, PAD: 2}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges = learn_merges(CORPUS, n_merges)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [BOS, EOS, PAD, *CHAT_SPECIALS]
    for tok in CHAT_SPECIALS:
        vocab[tok] = len(vocab)
    tok_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": t in ("<think>", "</think>"), "special": t not in ("<think>", "</think>")}
            for t in added
        ],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": PRETOKENIZERS[pre],
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {k: v for k, v in vocab.items() if k not in CHAT_SPECIALS},
                  "merges": [f"{a} {b}" for a, b in merges]},
    }

    def added_token(content: str) -> dict[str, Any]:
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

    tok_cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": added_token(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": added_token(EOS),
        "legacy": True,
        "model_max_length": 16384,
        "pad_token": added_token(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    return tok_json, tok_cfg, len(vocab)
