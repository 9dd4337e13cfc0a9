"""The one registry helper (`Registry`), and the codec registry built on it.

Every registry in dshub — codecs, converters, verify checks, model families, engines, renderers, GGUF schemes — is a
`Registry`: registering a name twice is an error, and looking up an unknown name raises `UnknownName`, one message
listing the known names. This module lives in `quant` (the bottom layer, which imports nothing of ours) so that every
layer can use it.
"""
from __future__ import annotations

import threading

from typing import Any, Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class UnknownName(KeyError):
    """A registry has no entry of that name; the message lists the known ones."""

    def __init__(self, kind: str, name: object, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateName(ValueError):
    """A second registration under a name that is already taken."""


class Registry(Generic[K, V]):
    """A name -> value table. `kind` names the entries in error messages ("codec", "model family", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[K, V] = {}

    def add(self, name: K, value: V) -> V:
        if name in self._entries:
            raise DuplicateName(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = value
        return value

    def register(self, name: K) -> Callable[[V], V]:
        """Decorator form of `add`."""
        return lambda value: self.add(name, value)

    def get(self, name: K) -> V:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(str(n) for n in self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def keys(self):
        return self._entries.keys()


# (codec name, implementation) -> callable. "cpu" = the torch reference, "cuda" = a GPU kernel (Triton), "ggml" =
# ggml's own C quantizers (dshub.quant.gguf.ggml), "native" = dshub's C kernels (dshub.quant.gguf.native). A device
# kind names where tensors live; a CPU backend chain ("native+ggml", `--codec-backend`, see quant/backends.py)
# names which CPU implementations compute, in order, when the device has no kernel of its own.
CODECS: Registry[tuple[str, str], Callable] = Registry("codec")
CPU_BACKENDS = ("torch", "ggml", "native")  # the reference first: every other backend must give its bytes


class BackendUnavailable(RuntimeError):
    """A CPU codec backend cannot be used on this machine; the message says why."""


class LoadedOnce:
    """A backend's library, opened on first use and kept for the process; a BackendUnavailable from opening it is kept
    too and raised again (the reason stays the same for the whole run). Tests reset it by replacing `state`."""

    def __init__(self, open_library: Callable[[], Any]):
        self._open = open_library
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {}

    def load(self) -> Any:
        with self._lock:
            if "lib" not in self.state:
                try:
                    self.state["lib"] = self._open()
                except BackendUnavailable as e:
                    self.state["lib"] = e
            got = self.state["lib"]
        if isinstance(got, BackendUnavailable):
            raise got
        return got

    def unavailable_reason(self) -> str | None:
        """Why the library cannot be used here, or None when it can."""
        try:
            self.load()
            return None
        except BackendUnavailable as e:
            return str(e)


def register_codec(name: str, device: str = "cpu") -> Callable[[Callable], Callable]:
    """Register `fn` as codec `name` for implementation `device` ("cpu", "cuda" or "ggml")."""
    return CODECS.register((name, device))


def get_codec(name: str, device: str = "cpu", backend: str = "torch") -> Callable:
    """The codec for `device`: its own kernel, else the first implementation in the `backend` chain ("native+ggml"),
    else the torch reference."""
    chain = ["cpu" if b == "torch" else b for b in backend.split("+")]
    for impl in ([device] if device != "cpu" else []) + chain + ["cpu"]:
        if (name, impl) in CODECS:
            return CODECS.get((name, impl))
    raise UnknownName("codec", name, sorted({n for n, _ in CODECS}))


def is_registered(name: str, device: str) -> bool:
    """Whether codec `name` has its own implementation for `device` (no fallback to the CPU one)."""
    return (name, device) in CODECS
