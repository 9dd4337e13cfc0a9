"""Environment variables, parsed once. dshub's own are DSHUB_*; HF's are honoured by huggingface_hub."""
from __future__ import annotations

import os
import sys

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

# huggingface_hub reads these as whole seconds when it is first imported and fails with a traceback otherwise.
HF_INTEGER_VARIABLES: tuple[str, ...] = ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")


def hf_environment_problem() -> str | None:
    """A one-line description of an HF variable huggingface_hub cannot parse when it is imported, or None when all are
    usable (or it is imported already: it has parsed them, and dshub reads the timeouts itself, fractions included)."""
    if "huggingface_hub" in sys.modules:
        return None
    for name in HF_INTEGER_VARIABLES:
        value = os.environ.get(name)
        if value is not None and not value.strip().isdigit():
            return f"{name}={value!r}: huggingface_hub needs a whole number of seconds"
    return None
