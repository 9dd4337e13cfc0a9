"""Quantization policies beyond llama-quantize: YAML policy files / shipped presets, and `--target-size`.

A policy is an ordered list of rules (first match wins, like `--tensor-type`): a regex searched in the GGUF tensor
name, an optional layer selector, and a type: absolute (`Q8_0`) or relative to what `--quant` gives that tensor
(`+1` = one step up the ladder Q2_K < Q3_K < Q4_K < Q5_K < Q6_K < Q8_0, or, for the IQ types, up the ladder
IQ1_S < IQ1_M < IQ2_XXS < IQ2_XS < IQ2_S < IQ3_XXS < IQ3_S < IQ4_XS < Q5_K < Q6_K < Q8_0). Tensors no rule matches keep `--quant`'s
type. Everything is checked against the model's tensor list before any work starts: a rule that matches no tensor,
an unknown type, or an absolute type whose block does not divide a matched tensor's row length is an error (unless
the rule says `fallback: true`, which accepts llama.cpp's substitutes: Q6_K -> Q8_0, Q4_K -> Q5_0, ...).

`--target-size SIZE` then moves the routed experts (`*_exps`) up or down their ladders together, picking the highest
shift that keeps the file under SIZE, and spends what is left upgrading single expert tensors (ffn_down_exps first,
early layers first). Without an `--imatrix` it never picks a type llama.cpp refuses without one (IQ1_*, IQ2_*, IQ3_XXS).
Norms, router and biases stay F32 and count towards the budget.
"""
from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from dshub.errors import PolicyError
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.quant.gguf.types import GGML_TYPES, fit_type

from dshub.converters.gguf.backend import needs_imatrix
from dshub.converters.gguf.mixtures import LAYER_RE, use_more_bits
from dshub.converters.gguf.schemes import STORABLE, SchemeContext, TypeFn, register_param_hook

PRESET_DIR = Path(__file__).with_name("policies")
LADDER = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0")
RANK = {"Q2_K": 0, "Q3_K": 1, "Q4_0": 2, "Q4_1": 2, "Q4_K": 2, "Q5_0": 3, "Q5_1": 3, "Q5_K": 3, "Q6_K": 4, "Q8_0": 5}
# The IQ types by bits per weight (ggml block sizes: 1.56, 1.75, 2.06, 2.31, 2.56, 3.06, 3.44, 4.25), then the K ladder.
IQ_LADDER = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS", "Q5_K", "Q6_K", "Q8_0")
IQ_RANK = {**{t: i for i, t in enumerate(IQ_LADDER[:8])}, "IQ4_NL": 7}
STEPS = max(len(LADDER), len(IQ_LADDER))
RELATIVE_RE = re.compile(r"^[+-]\d$")
LAYER_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
EXPERTS_RE = re.compile(r"_exps\.weight$")
HEADER_RESERVE = 64 << 10  # bytes kept for the GGUF header and metadata besides the two estimates below
TOKEN_RESERVE = 48  # bytes per vocabulary entry (token string, type, merge) kept for the tokenizer KV
TENSOR_INFO_RESERVE = 128  # bytes per tensor-info entry and alignment padding


def step(type_name: str, k: int) -> str:
    """`type_name` moved `k` steps along its ladder (clamped at its ends); float and ternary types are left alone."""
    ladder, rank = (IQ_LADDER, IQ_RANK) if type_name in IQ_RANK else (LADDER, RANK)
    if type_name not in rank:
        return type_name
    return ladder[max(0, min(len(ladder) - 1, rank[type_name] + k))]


class Rule(BaseModel):
    """One policy rule: tensors whose name matches `match` (re.search) and whose layer passes `layers` get `type`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str
    type: str
    layers: str | None = None
    fallback: bool = False  # allow llama.cpp's row-length fallback (Q6_K -> Q8_0, ...) instead of an error

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"bad regex {v!r} ({e})") from None
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = str(v).strip().upper()
        if RELATIVE_RE.match(v) or v in STORABLE:
            return v
        raise ValueError(f"unknown type {v!r}; use one of {', '.join(STORABLE)} or a step like +1 / -1")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: str | None) -> str | None:
        if v is not None:
            parse_layers(v)
        return v

    @property
    def relative(self) -> int | None:
        return int(self.type) if RELATIVE_RE.match(self.type) else None


class Policy(BaseModel):
    """A quantization policy file (YAML). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    rules: list[Rule]

    @cached_property
    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(r.match) for r in self.rules]


def parse_layers(spec: str) -> list[tuple[str, int, int]]:
    """Layer selector -> terms: `dense`, `moe`, `first-moe:N`, `last:N`, `more-bits`, `A-B`, `N`, comma-separated."""
    terms = []
    for part in (p.strip() for p in str(spec).split(",")):
        name, _, arg = part.partition(":")
        if part in ("dense", "moe", "more-bits"):
            terms.append((part, 0, 0))
        elif name in ("first-moe", "last") and arg.isdigit():
            terms.append((name, int(arg), 0))
        elif m := LAYER_RANGE_RE.match(part):
            lo = int(m[1])
            terms.append(("range", lo, int(m[2]) if m[2] else lo))
        else:
            raise ValueError(f"bad layer selector {part!r}: use dense, moe, first-moe:N, last:N, more-bits, A-B or N")
    return terms


def layer_matches(spec: str, layer: int | None, n_layer: int, n_dense: int) -> bool:
    """Does `layer` (None for non-layer tensors: never) pass selector `spec`?"""
    if layer is None:
        return False
    for kind, a, b in parse_layers(spec):
        hit = {
            "dense": layer < n_dense,
            "moe": layer >= n_dense,
            "first-moe": n_dense <= layer < n_dense + a,
            "last": layer >= n_layer - a,
            "more-bits": use_more_bits(layer, n_layer),
            "range": a <= layer <= b,
        }[kind]
        if hit:
            return True
    return False


def load_policy(value: str | Path) -> Policy:
    """A policy from a YAML file path or a shipped preset name (see `presets()`)."""
    path = Path(value)
    if not path.is_file():
        preset = PRESET_DIR / f"{value}.yaml"
        if not preset.is_file():
            raise PolicyError(f"no such file and no preset of that name; presets: {', '.join(presets())}",
                              path=str(value), show_path=f"--policy {value}")
        path = preset
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PolicyError(f"cannot read the policy: {str(e).splitlines()[0]}", path=str(path)) from None
    if not isinstance(doc, dict):
        raise PolicyError("a policy is a mapping with name, description and rules", path=str(path))
    try:
        return Policy.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PolicyError(f"{where}: {err['msg'].removeprefix('Value error, ')}", path=str(path)) from None


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _layer(name: str) -> int | None:
    m = LAYER_RE.match(name)
    return int(m[1]) if m else None


def policy_type_fn(policy: Policy, base: TypeFn, ctx: SchemeContext, source: str = "") -> TypeFn:
    """The type function of `policy` over `base` (the --quant scheme), after checking it against ctx's tensors."""
    n_layer = ctx.n_layer
    n_dense = int(ctx.config.get("first_k_dense_replace") or 0)
    label = source or policy.name

    def rule_for(name: str) -> int | None:
        for i, (rule, rx) in enumerate(zip(policy.rules, policy.compiled)):
            if rx.search(name) and (rule.layers is None or layer_matches(rule.layers, _layer(name), n_layer, n_dense)):
                return i
        return None

    def typed(name: str, shape: tuple[int, ...]) -> str:
        i = rule_for(name)
        if i is None:
            return base(name, shape)
        rule = policy.rules[i]
        return step(base(name, shape), rule.relative) if rule.relative is not None else rule.type

    for i, (rule, rx) in enumerate(zip(policy.rules, policy.compiled)):
        if not any(rx.search(n) for n, _ in ctx.tensors):
            raise PolicyError(f"rule {i + 1} (match {rule.match!r}) matches no tensor of this model; "
                              f"tensor names look like {ctx.tensors[0][0] if ctx.tensors else '(none)'}", path=source or None, show_path=label)
    for name, shape in ctx.tensors:
        i = rule_for(name)
        if i is None or policy.rules[i].relative is not None or policy.rules[i].fallback:
            continue
        t = GGML_TYPES[policy.rules[i].type]
        if shape[-1] % t.block:
            raise PolicyError(f"rule {i + 1} gives {name} type {t.name}, whose blocks of {t.block} do not divide "
                              f"its rows of {shape[-1]}; choose a type with {shape[-1]}-compatible blocks (e.g. Q8_0)",
                              path=source or None, show_path=label, tensor=name, show_tensor="")
    return typed


@register_param_hook("policy", order=20)
def _policy_hook(value: Any, fn: TypeFn, ctx: SchemeContext) -> TypeFn:
    return policy_type_fn(load_policy(value), fn, ctx, source=str(value))


# ------------------------------------------------------------------------------------------ --target-size

def _nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    used, _ = fit_type(type_name, shape[-1])
    return GGML_TYPES[used].nbytes(shape)


def fixed_bytes(ctx: SchemeContext) -> int:
    """Bytes that no type choice changes: the F32 tensors (norms, router, biases) and a header/tokenizer reserve."""
    mapped = map_tensors(ctx.config, mtp=any(".nextn." in n for n, _ in ctx.tensors))  # --mtp: count its F32 tensors too
    f32 = sum(GGML_TYPES["F32"].nbytes(s) for n, s, _ in mapped if forced_f32(n, s))
    reserve = HEADER_RESERVE + TOKEN_RESERVE * int(ctx.config.get("vocab_size") or 0) + TENSOR_INFO_RESERVE * len(mapped)
    return f32 + reserve


def solve_target_size(fn: TypeFn, ctx: SchemeContext, budget: int) -> tuple[dict[str, str], int]:
    """Types for the routed experts so the file stays within `budget` bytes: (name -> type, planned bytes)."""
    base = {n: fn(n, s) for n, s in ctx.tensors}
    experts = [(n, s) for n, s in ctx.tensors if EXPERTS_RE.search(n)]
    if not experts:
        raise PolicyError("--target-size: this model has no routed expert tensors to size")
    others = fixed_bytes(ctx) + sum(_nbytes(base[n], s) for n, s in ctx.tensors if not EXPERTS_RE.search(n))
    allowed = (lambda n, t: True) if ctx.has_imatrix else (lambda n, t: not needs_imatrix(n, t))

    def lift(n: str, t: str) -> str:  # the lowest type at or above t that this run may write
        while not allowed(n, t) and step(t, 1) != t:
            t = step(t, 1)
        return t

    chosen: dict[str, str] | None = None
    smallest: tuple[int, dict[str, str]] | None = None
    for shift in range(STEPS, -STEPS - 1, -1):
        types = {n: lift(n, step(base[n], shift)) for n, _ in experts}
        total = others + sum(_nbytes(types[n], s) for n, s in experts)
        smallest = (total, types)
        if total <= budget:
            chosen = types
            break
    if chosen is None:
        note = "" if ctx.has_imatrix else "; without --imatrix the types llama.cpp needs one for are left out"
        size, at = smallest if smallest else (0, {})
        raise PolicyError(f"--target-size {budget} bytes is below the smallest plan for this model ({size} bytes, routed "
                          f"experts at {', '.join(sorted(set(at.values())))}){note}; raise it or lower the other tensors' types")
    # spend the rest one tensor at a time: ffn_down_exps first, then early layers first
    order = sorted(experts, key=lambda t: ("ffn_down_exps" not in t[0], _layer(t[0]) or 0, t[0]))
    for n, s in order:
        up = lift(n, step(chosen[n], 1))
        delta = _nbytes(up, s) - _nbytes(chosen[n], s)
        if up != chosen[n] and total + delta <= budget:
            chosen[n], total = up, total + delta
    return chosen, total


@register_param_hook("target_size", order=30)  # after the policy: sizes what it chose
def _target_size_hook(value: Any, fn: TypeFn, ctx: SchemeContext) -> TypeFn:
    chosen, _ = solve_target_size(fn, ctx, int(value))  # GGUFOptions parsed "200G" already
    return lambda name, shape: chosen.get(name) or fn(name, shape)
