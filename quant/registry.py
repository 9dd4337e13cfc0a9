"""Codec registry: (codec name, device kind) -> callable. Unknown names fail listing the known ones."""
from __future__ import annotations

from typing import Callable

CODECS: dict[tuple[str, str], Callable] = {}


def register_codec(name: str, device: str = "cpu") -> Callable[[Callable], Callable]:
    """Register `fn` as codec `name` for device kind `device` ("cpu" = torch reference, "cuda" = GPU kernel)."""

    def deco(fn: Callable) -> Callable:
        CODECS[(name, device)] = fn
        return fn

    return deco


def get_codec(name: str, device: str = "cpu") -> Callable:
    """The codec for `device`, falling back to the torch reference when no GPU kernel is registered."""
    if (name, device) in CODECS:
        return CODECS[(name, device)]
    if (name, "cpu") in CODECS:
        return CODECS[(name, "cpu")]
    known = sorted({n for n, _ in CODECS})
    raise KeyError(f"unknown codec {name!r}; known: {', '.join(known)}")
