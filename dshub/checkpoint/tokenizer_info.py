"""What a checkpoint's tokenizer files say about the model: tokenizer kind, special tokens, chat template.

Read from tokenizer_config.json (`added_tokens_decoder`, `*_token`, `chat_template`), chat_template.jinja and
tokenizer.json's `added_tokens`; a `tiktoken.model` without tokenizer.json is a tiktoken vocabulary (Kimi, Moonlight).
Unreadable files count as absent: this only informs which release's serving facts apply.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dshub.arch.family import TokenizerInfo
from dshub.checkpoint.json_limits import loads_bounded
from dshub.errors import DshubError


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = loads_bounded(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, DshubError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _content(v: Any) -> str | None:
    return v.get("content") if isinstance(v, dict) else v if isinstance(v, str) else None


def read_tokenizer_info(root: Path) -> TokenizerInfo:
    """The TokenizerInfo of checkpoint directory `root` (kind "none" when it has no tokenizer files)."""
    cfg = _json(root / "tokenizer_config.json")
    specials = {_content(v) for v in (cfg.get("added_tokens_decoder") or {}).values()}
    specials |= {_content(cfg.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    has_json = (root / "tokenizer.json").is_file()
    if has_json:
        specials |= {_content(a) for a in (_json(root / "tokenizer.json").get("added_tokens") or [])}
    template = cfg.get("chat_template")
    if isinstance(template, list):
        template = "\n".join(t.get("template", "") for t in template if isinstance(t, dict))
    jinja = root / "chat_template.jinja"
    if not isinstance(template, str) and jinja.is_file():
        template = jinja.read_text(encoding="utf-8", errors="replace")
    kind = "tokenizer.json" if has_json else "tiktoken" if (root / "tiktoken.model").is_file() else "none"
    return TokenizerInfo(kind, frozenset(s for s in specials if isinstance(s, str)), template if isinstance(template, str) else "")
