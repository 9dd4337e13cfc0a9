"""A small, real tiktoken vocabulary laid out as Kimi-K2 / Moonlight checkpoints ship theirs: `tiktoken.model`
(base64 token and rank per line), `tokenizer_config.json` with the special tokens in `added_tokens_decoder` after the
ranked tokens, and `tokenization_kimi.py` holding the pre-tokenizer pattern (moonshotai/Kimi-K2-Instruct's files).

The ranks are byte-level BPE learned on the built-in corpus plus a multilingual one (words cut at Kimi's letter-run
boundaries, `kimi_words`): the 256 single bytes first, then every merge result in the order it was learned. The tokenization file written here is a stand-in holding only the
pattern; dshub reads such a file as text and never imports it.
"""
from __future__ import annotations

import base64
from typing import Any

from dshub.checkpoint.synth_tokenizer import CORPUS, bytes_to_unicode, learn_merges, split_words
from dshub.formats.gguf_tiktoken import PRE_TOKENIZERS

KIMI_PATTERN = PRE_TOKENIZERS["kimi-k2"]  # tokenization_kimi.py `pat_str` pieces
# Kimi-K2-Instruct tokenizer_config.json added_tokens_decoder (the first of them; ids follow the ranked tokens).
KIMI_SPECIALS: tuple[str, ...] = ("[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                                  "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>")
MULTILINGUAL = (
    "月之暗面的模型在中文文本上表现很好。我们今天学习语言模型和专家混合。日本語のテキストもカタカナもひらがなも読めます。"
    "emoji 😀🎉👍 numbers 1234567890 and 3.14159; Ünïcödé façade naïve Ελληνικά Русский текст 한국어 العربية. "
    "for (int i = 0; i < n; ++i) { sum += x[i]; }\n\n    return sum;\n"
)
TEMPLATE = ("{% for message in messages %}{{ '<|im_' + message['role'] + '|>' + message['role'] + '<|im_middle|>' + "
            "message['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|im_assistant|>assistant<|im_middle|>' }}{% endif %}")
TOKENIZATION_FILE = '''"""Synthetic stand-in for Kimi's tokenization_kimi.py (written by dshub synth): it only holds the pre-tokenizer
pattern, as the real file defines it. Not meant to be imported."""

pat_str = "|".join(
    [
{pieces}
    ]
)
'''


def _is_han(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf"


def kimi_words(corpus: str) -> list[str]:
    """Training words cut wherever Kimi's pattern cuts a letter run too: between Han and other characters and
    before an upper-case letter that follows a lower-case one (so no learned token spans such a boundary, as in a
    vocabulary trained with that pattern)."""
    out = []
    for w in split_words(corpus):
        start = 0
        for i in range(1, len(w)):
            a, b = w[i - 1], w[i]
            if _is_han(a) != _is_han(b) or (a.islower() and b.isupper()):
                out.append(w[start:i])
                start = i
        out.append(w[start:])
    return out


def learned_ranks(n_merges: int = 400) -> dict[bytes, int]:
    """Token bytes -> rank: the 256 bytes, then each learned merge (a result seen before keeps its first rank)."""
    u2b = {u: b for b, u in bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {bytes([b]): b for b in range(256)}
    for a, b in learn_merges(CORPUS + " " + MULTILINGUAL, n_merges, kimi_words):
        ranks.setdefault(bytes(u2b[c] for c in a + b), len(ranks))
    return ranks


def build_tiktoken(vocab_pad: int = 64) -> tuple[str, dict[str, Any], str, int]:
    """(tiktoken.model text, tokenizer_config.json, tokenization_kimi.py text, config.json vocab_size)."""
    ranks = learned_ranks()
    model = "".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    n = len(ranks)
    added = {str(n + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                          "special": True} for i, t in enumerate(KIMI_SPECIALS)}
    tok_cfg = {
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_kimi.TikTokenTokenizer", None]},
        "bos_token": "[BOS]",
        "chat_template": TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "[EOS]",
        "extra_special_tokens": {},
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "[EOS]",
        "tokenizer_class": "TikTokenTokenizer",
        "unk_token": None,
    }
    pieces = "\n".join(f'        r"""{p}""",' for p in KIMI_PATTERN)
    used = n + len(KIMI_SPECIALS)
    return model, tok_cfg, TOKENIZATION_FILE.replace("{pieces}", pieces), used + (-used % vocab_pad) + vocab_pad
