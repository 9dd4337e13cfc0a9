"""Environment variables, parsed once. dshub's own are DSHUB_*; HF's are honoured by huggingface_hub."""
from __future__ import annotations

import os

VERSION: str = "0.1.0"  # the package version (dshub.__version__)
DSHUB_DEBUG: bool = os.environ.get("DSHUB_DEBUG", "") not in ("", "0", "false", "False")
SAFETENSORS_MAX_HEADER: int = 100_000_000  # bytes; the safetensors format's own limit
MANIFEST_NAME: str = "dshub-manifest.json"
TMP_SUFFIX: str = ".dshub-tmp"
# Small files copied verbatim next to converted weights.
SIDECAR_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "configuration_deepseek.py",
    "modeling_deepseek.py",
    "tokenization_kimi.py",
    "tiktoken.model",
    "LICENSE",
    "README.md",
)
