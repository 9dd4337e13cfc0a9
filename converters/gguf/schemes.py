"""`--quant` schemes: which ggml type each GGUF tensor gets. A registry, so mixtures (Q4_K_M, policies) plug in.

A scheme's `make(ctx)` returns a type function `(gguf tensor name, numpy shape) -> ggml type name`. It is asked only
for tensors llama.cpp quantizes at all (norms, biases and the router stay F32 regardless). Parameter hooks
(`register_param_hook`) wrap the scheme's function for extra `--to gguf` options (e.g. `policy`, `target_size`);
`tensor_type` (REGEX=TYPE, first match wins, like llama-quantize's --tensor-type) is applied last, over everything.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from dshub.errors import UsageError
import dshub.quant.gguf  # noqa: F401  (registers the gguf_* codecs STORABLE is read from)
from dshub.quant.gguf.types import FILE_TYPES, GGML_TYPES
from dshub.quant.registry import Registry, is_registered

TypeFn = Callable[[str, tuple[int, ...]], str]
# The ggml types this converter can write: those with a `gguf_<TYPE>` codec in the registry (torch's or ggml's), in
# the type table's order. --tensor-type and policies may ask for these.
STORABLE = tuple(t for t in GGML_TYPES if is_registered(f"gguf_{t}", "cpu") or is_registered(f"gguf_{t}", "ggml"))


@dataclass(frozen=True)
class SchemeContext:
    """What a scheme may look at: config.json and every quantizable GGUF tensor (name, numpy shape), in file order."""

    config: dict[str, Any]
    tensors: tuple[tuple[str, tuple[int, ...]], ...]
    has_imatrix: bool = False  # --imatrix given: some llama-quantize mixtures choose differently with one

    @property
    def n_layer(self) -> int:
        """llama.cpp's block count: the main layers, plus the MTP (next-n) blocks when the file keeps them."""
        blocks = [int(n.split(".")[1]) for n, _ in self.tensors if n.startswith("blk.")]
        return max(int(self.config.get("num_hidden_layers") or 0), 1 + max(blocks, default=-1))


@dataclass(frozen=True)
class QuantScheme:
    name: str
    file_type: int  # general.file_type (llama_ftype)
    make: Callable[[SchemeContext], TypeFn]


SCHEMES: Registry[str, QuantScheme] = Registry("--quant scheme")
ParamHook = Callable[[Any, TypeFn, SchemeContext], TypeFn]


@dataclass(frozen=True)
class RegisteredHook:
    option: str  # the GGUFOptions field it reads
    order: int  # hooks apply in ascending order, whatever the import order
    fn: ParamHook


PARAM_HOOKS: Registry[str, RegisteredHook] = Registry("--to gguf option hook")


def register_scheme(name: str, file_type: int | None = None) -> Callable[[Callable[[SchemeContext], TypeFn]], Callable[[SchemeContext], TypeFn]]:
    """Register `make` as `--quant name`; file_type defaults to llama.cpp's ftype of the same name."""

    def deco(make: Callable[[SchemeContext], TypeFn]) -> Callable[[SchemeContext], TypeFn]:
        SCHEMES.add(name.upper(), QuantScheme(name.upper(), FILE_TYPES[name.upper()] if file_type is None else file_type, make))
        return make

    return deco


def register_param_hook(option: str, order: int) -> Callable[[ParamHook], ParamHook]:
    """Register a wrapper for a `--to gguf` option: hook(value, type_fn, ctx) -> type_fn, applied in `order`."""

    def deco(fn: ParamHook) -> ParamHook:
        PARAM_HOOKS.add(option, RegisteredHook(option, order, fn))
        return fn

    return deco


def _pure(type_name: str) -> Callable[[SchemeContext], TypeFn]:
    return lambda ctx: (lambda name, shape: type_name)


PURE_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
for _t in PURE_TYPES:
    register_scheme(_t)(_pure(_t))
# llama.cpp's MOSTLY_MXFP4_MOE: MXFP4 experts kept as stored (the family's source types decide those), the rest Q8_0.
register_scheme("MXFP4_MOE")(_pure("Q8_0"))


def parse_tensor_types(specs: list[str]) -> list[tuple[re.Pattern[str], str]]:
    """`REGEX=TYPE` strings -> compiled rules; bad ones raise UsageError naming the rule."""
    rules = []
    for s in specs:
        pattern, sep, type_name = s.rpartition("=")
        if not sep or not pattern:
            raise UsageError(f"--tensor-type {s!r}: expected REGEX=TYPE")
        if type_name.upper() not in STORABLE:
            raise UsageError(f"--tensor-type {s!r}: cannot write type {type_name!r}; supported: {', '.join(STORABLE)}")
        try:
            rules.append((re.compile(pattern), type_name.upper()))
        except re.error as e:
            raise UsageError(f"--tensor-type {s!r}: bad regex ({e})") from None
    return rules


def with_overrides(fn: TypeFn, rules: list[tuple[re.Pattern[str], str]]) -> TypeFn:
    if not rules:
        return fn

    def typed(name: str, shape: tuple[int, ...]) -> str:
        for rx, t in rules:
            if rx.search(name):
                return t
        return fn(name, shape)

    return typed


def get_scheme(name: str) -> QuantScheme:
    key = str(name).upper()
    if key not in SCHEMES:
        raise UsageError(f"--quant {name!r} is not supported; known: {', '.join(SCHEMES)}")
    return SCHEMES.get(key)


def resolve(opts: Any, ctx: SchemeContext) -> tuple[QuantScheme, TypeFn]:
    """The scheme `opts.quant` names and its type function with the option hooks (in their order) and the
    --tensor-type rules applied. `opts` is a GGUFOptions (read only)."""
    scheme = get_scheme(opts.quant)
    ctx = dataclasses.replace(ctx, has_imatrix=opts.imatrix is not None)
    fn = scheme.make(ctx)
    for hook in sorted(PARAM_HOOKS.values(), key=lambda h: h.order):
        value = getattr(opts, hook.option)
        if value is not None:
            fn = hook.fn(value, fn, ctx)
    return scheme, with_overrides(fn, parse_tensor_types(list(opts.tensor_type)))
