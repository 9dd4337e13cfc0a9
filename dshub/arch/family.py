"""The model-family contract, and the one registry of families keyed by HF architecture name.

A family module (e.g. `dshub.arch.deepseek_v3`) builds one `Family` and passes it to `register`. Everything a command
needs to know about a model family is in it, as plain data and small getters over config.json:
- `inventory`: config.json -> ArchSpec (every tensor, shape, role, encoding) — read by verify, info, every converter;
- `gguf`: the llama.cpp architecture name, HF -> GGUF tensor names and metadata keys (`GGUFMapping`), or None;
- `int4`: which tensor roles each INT4 `--scope` quantizes (`Int4Scopes`), or None;
- `planner`: parameter components per role, KV-cache size per token, TP-sliced widths (`PlannerFacts`);
- `releases`: the released models of the family and their per-engine serving facts (`Release`, `ServingFacts`);
- `example`: a small config.json of the family, on which tests/arch/test_family.py checks the whole contract.
A target a family does not support yet names why in `refusals`; `Family.gguf_mapping()` / `Family.int4_scopes()`
raise a UsageError with that reason.

Families stay format-agnostic data: this module and the family modules import only dshub.quant, dshub.errors,
dshub.constants and dshub.arch.* (GGUF value types are named by their `VT` member name, e.g. "UINT32").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from dshub.arch.spec import ArchSpec, Role
from dshub.errors import UnsupportedArchitecture, UsageError
from dshub.quant.registry import Registry

Config = dict[str, Any]


def frozen(d: Mapping) -> Mapping:
    """A read-only view of a table (family tables are shared by every caller)."""
    return MappingProxyType(dict(d))


# ------------------------------------------------------------------ GGUF
@dataclass(frozen=True)
class GGUFField:
    """One `<arch>.<suffix>` key copied from a config.json field; `vtype` is a GGUF value type name (VT member)."""

    suffix: str
    config_key: str
    vtype: str
    required: bool = True


@dataclass(frozen=True)
class GGUFDerived:
    """One `<arch>.<suffix>` key computed from config.json (a KeyError from `value` names the missing field)."""

    suffix: str
    vtype: str
    value: Callable[[Config], Any]
    sub: str | None = None  # element type (VT member name) when `vtype` is "ARRAY"


@dataclass(frozen=True)
class GGUFPart:
    """One GGUF tensor cut from one HF tensor: name after `blk.N.`, numpy shape, source kind, split dims."""

    name: str
    shape: tuple[int, ...]
    kind: str  # how the converter produces it from the source tensor (e.g. k_b / v_b of MLA's kv_b_proj)
    split: tuple[int, int, int]


@dataclass(frozen=True)
class GGUFExperts:
    """Routed experts of a layer stacked into one 3-D tensor per projection (expert index slowest)."""

    pattern: str  # regex on the name after the layer prefix; groups: expert index, projection
    name: str  # GGUF name after `blk.N.`, with {proj}
    source: str  # HF name after the layer prefix, with {expert} and {proj}
    count_key: str  # config.json field holding the number of experts
    proj_names: Mapping[str, str] = field(default_factory=dict)  # HF projection -> GGUF one where they differ (w1 -> gate)


@dataclass(frozen=True)
class GGUFMapping:
    """A family as llama.cpp's loader reads it: tensor names (HF -> GGUF) and metadata keys (config.json -> GGUF)."""

    arch: str  # llama.cpp architecture name (general.architecture)
    global_names: Mapping[str, str]  # whole HF name -> GGUF name
    layer_pattern: str  # regex on the HF name; groups: layer index, rest
    layer_names: Mapping[str, str]  # rest -> GGUF name after `blk.N.`
    mtp_names: Mapping[str, str]  # MTP-only rest -> GGUF name after `blk.N.`
    splits: Mapping[str, Callable[[Config], tuple[GGUFPart, ...]]]  # rest -> the GGUF tensors cut from it
    experts: GGUFExperts | None  # None for a dense family (then no expert gating key is written)
    fields: tuple[GGUFField, ...]  # in the order llama.cpp's converter writes them
    derived: tuple[GGUFDerived, ...]
    block_count_key: str  # config field the block count comes from (MTP layers are added with --mtp)
    mtp_count_key: str  # config field counting MTP (next-n) layers
    default_gating: Mapping[str, str]  # HF architecture -> gating when config.json has no `scoring_func`
    default_gating_other: str
    yarn_log_multiplier_factor: float  # file value = factor * rope_scaling.mscale_all_dim
    config_from_metadata: Callable[[Mapping[str, Any], set[str] | None], Config]  # GGUF kv -> config for `inventory`
    caveats: Callable[[Config], list[str]]  # why llama.cpp may refuse or mis-run a file made from this config
    # tensors computed from config.json alone (llama3's rope_freqs), global (no `blk.N.` prefix); source names none
    generated: Callable[[Config], tuple[GGUFPart, ...]] = lambda config: ()
    generated_values: Callable[[str, Config], list[float]] = lambda kind, config: []  # a generated part's values
    # HF tensors llama.cpp's converter drops (unused by its loader), by config
    skipped: Callable[[Config], frozenset[str]] = lambda config: frozenset()
    # (GGUF name, numpy shape, source dtype, --quant scheme) -> the ggml type the tensor keeps, as llama.cpp's
    # converter forces it for this family; None where the scheme decides
    source_types: Callable[[str, tuple[int, ...], str, str], str | None] | None = None
    mtp_refusal: str | None = None  # why `--mtp` is refused for this family (None: MTP blocks are written)

    def key(self, suffix: str) -> str:
        return f"{self.arch}.{suffix}"


# ------------------------------------------------------------------ INT4
SCOPE_NAMES: tuple[str, ...] = ("experts", "mlp", "all-linear")
# The INT4 scopes of a MoE transformer: which linear roles each --scope turns into INT4.
MOE_INT4_SCOPES: Mapping[str, frozenset[Role]] = frozen({
    "experts": frozenset({Role.EXPERT}),
    "mlp": frozenset({Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_MLP}),
    "all-linear": frozenset({Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_MLP, Role.ATTN}),
})
# The INT4 scopes of a dense transformer: no routed experts; its MLP; every linear layer but lm_head (the default).
DENSE_INT4_SCOPES: Mapping[str, frozenset[Role]] = frozen({
    "experts": frozenset(),
    "mlp": frozenset({Role.DENSE_MLP}),
    "all-linear": frozenset({Role.DENSE_MLP, Role.ATTN}),
})
# Never INT4 in any scope: embeddings, lm_head, norms, the router and its bias, MTP extras.
NEVER_INT4: frozenset[Role] = frozenset({Role.EMBED, Role.HEAD, Role.NORM, Role.ROUTER, Role.ROUTER_BIAS, Role.MTP})


@dataclass(frozen=True)
class Int4Scopes:
    """Which roles each INT4 --scope quantizes, and the roles no scope may touch."""

    scopes: Mapping[str, frozenset[Role]] = field(default_factory=lambda: MOE_INT4_SCOPES)
    never: frozenset[Role] = NEVER_INT4
    default: str = "experts"  # the --scope a run without one gets

    def __post_init__(self) -> None:
        if self.default not in self.scopes:
            raise ValueError(f"default INT4 scope {self.default!r} is not one of {sorted(self.scopes)}")
        for name, roles in self.scopes.items():
            if roles & self.never:
                raise ValueError(f"INT4 scope {name!r} lists never-quantized roles {sorted(r.value for r in roles & self.never)}")


# ------------------------------------------------------------------ planner
# ArchSpec role -> planner component. Norms, router and its bias are small and always replicated ("other").
COMPONENT_OF_ROLE: Mapping[Role, str] = frozen({
    Role.ATTN: "attn", Role.INDEXER: "attn", Role.EXPERT: "expert", Role.SHARED_EXPERT: "shared",
    Role.DENSE_MLP: "dense", Role.EMBED: "embed", Role.HEAD: "head", Role.NORM: "other", Role.ROUTER: "other",
    Role.ROUTER_BIAS: "other", Role.MTP: "mtp",
})


@dataclass(frozen=True)
class PlannerFacts:
    """What the memory planner needs beyond the inventory's tensors."""

    kv_elems_per_token_layer: Callable[[Config], int]  # KV-cache elements per token per layer
    tp_split_dims: Callable[[Config], dict[str, tuple[int, ...]]]  # component -> widths a TP rank slices
    # (engine, kv dtype) -> KV bytes per token per layer where an engine stores the cache its own way; with source
    kv_bytes_per_layer: Mapping[tuple[str, str], int] = field(default_factory=dict)
    kv_bytes_source: str = ""
    # cache bytes per token per layer beside the attention cache (V3.2's indexer keys), with source:
    # (config, engine, bytes per element of the engine's KV dtype) -> bytes
    side_kv_bytes: Callable[[Config, str, float], int] | None = None
    side_kv_source: str = ""
    components: Mapping[Role, str] = field(default_factory=lambda: COMPONENT_OF_ROLE)


# ------------------------------------------------------------------ plain decoders (ONNX)
@dataclass(frozen=True)
class DecoderFacts:
    """A family that is a plain pre-norm GQA decoder (RMSNorm, rotary half-split, SwiGLU), as onnxruntime-genai runs
    it: what an ONNX decoder graph needs beyond the inventory's tensors (which say where biases are)."""

    head_dim: Callable[[Config], int]
    kv_heads: Callable[[Config], int]
    rope_inv_freq: Callable[[Config], list[float]]  # rotary inverse frequencies, the config's rope scaling applied
    tied_embeddings: Callable[[Config], bool]


# ------------------------------------------------------------------ serving
@dataclass(frozen=True)
class ServingFacts:
    """One released model on one engine: parsers, chat template, minimum version (each with its source)."""

    reasoning_parser: str | None = None
    tool_parser: str | None = None
    chat_template: str | None = None  # path inside the engine's image
    tokenizer_mode: str | None = None
    min_version: str | None = None
    min_version_source: str = ""
    mtp_tokens: int = 3
    extra_args: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    unsupported_vendors: frozenset[str] = field(default_factory=frozenset)
    prefer_layouts: tuple[str, ...] = ()  # layout kinds to try first, whatever the goal
    prefer_reason: str = ""


@dataclass(frozen=True)
class TokenizerInfo:
    """What a local checkpoint's tokenizer files say about the model (read by dshub.checkpoint.tokenizer_info)."""

    kind: str = "none"  # "tokenizer.json" | "tiktoken" | "none"
    specials: frozenset[str] = frozenset()  # added / special token strings
    template: str = ""  # the chat template text (tokenizer_config.json or chat_template.jinja)


@dataclass(frozen=True)
class Release:
    """A released model line of a family (V3, R1, V3.1, ...): how to recognize it and its facts per engine."""

    key: str  # what the catalog and ModelInfo.family name it by
    engines: Mapping[str, ServingFacts]
    name_pattern: str | None = None  # regex on a local directory / GGUF name that picks this release
    model_types: tuple[str, ...] = ()  # config.json model_type values that mean this release
    # recognizes a local checkpoint from its config.json and tokenizer (tried before names and model types)
    detect: Callable[[Config, TokenizerInfo], bool] | None = None


# ------------------------------------------------------------------ the contract
@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per registered family
class Family:
    """One model family: every fact verify, info, the converters, plan and recipe read about it."""

    name: str
    architectures: tuple[str, ...]  # HF `architectures` names it registers
    inventory: Callable[[Config], ArchSpec]
    example: Mapping[str, Any]  # a small config.json of the family; the contract tests exercise every fact on it
    planner: PlannerFacts
    releases: tuple[Release, ...]  # the first is the default
    gguf: GGUFMapping | None = None
    int4: Int4Scopes | None = None
    decoder: DecoderFacts | None = None  # None: not a plain decoder (MLA, MoE), no ONNX graph
    refusals: Mapping[str, str] = field(default_factory=dict)  # target -> why it is not supported (yet)

    def _refuse(self, target: str) -> UsageError:
        why = self.refusals.get(target, "no mapping is defined for it")
        return UsageError(f"--to {target}: {self.name} ({', '.join(self.architectures)}) is not supported: {why}")

    def gguf_mapping(self) -> GGUFMapping:
        if self.gguf is None:
            raise self._refuse("gguf")
        return self.gguf

    def int4_scopes(self) -> Mapping[str, frozenset[Role]]:
        if self.int4 is None:
            raise self._refuse("int4")
        return self.int4.scopes

    def int4_scope(self, asked: str | None) -> str:
        """The --scope a run uses: the one asked for, else the family's default."""
        if self.int4 is None:
            raise self._refuse("int4")
        return asked or self.int4.default

    def refuse(self, target: str) -> None:
        """Raise the UsageError naming why `target` is refused, when the family lists it in `refusals`."""
        if target in self.refusals:
            raise self._refuse(target)

    def decoder_facts(self) -> DecoderFacts:
        if self.decoder is None:
            raise self._refuse("onnx")
        return self.decoder

    def release(self, key: str) -> Release:
        return next(r for r in self.releases if r.key == key)


# HF architecture name -> Family; release key -> (Family, Release)
FAMILIES: Registry[str, Family] = Registry("model family")
RELEASES: Registry[str, tuple[Family, Release]] = Registry("model release")


def register(family: Family) -> Family:
    """Register `family` under each of its HF architecture names, and its releases (a name taken twice is an error)."""
    for arch in family.architectures:
        FAMILIES.add(arch, family)
    for r in family.releases:
        RELEASES.add(r.key, (family, r))
    return family


def family_for(config: Config) -> Family:
    """The Family of a config.json by its `architectures`. Raises UnsupportedArchitecture listing the known ones."""
    archs = config.get("architectures") or []
    for a in archs:
        if a in FAMILIES:
            return FAMILIES.get(a)
    raise UnsupportedArchitecture(
        f"architectures {archs!r} not supported; known: {', '.join(FAMILIES.names())}", path="config.json"
    )


def spec_for(config: Config) -> ArchSpec:
    """The ArchSpec (tensor inventory) for a config.json."""
    return family_for(config).inventory(config)


def families() -> list[Family]:
    """Every registered family once, in registration order."""
    return list(dict.fromkeys(FAMILIES.values()))


def gguf_family(arch: str) -> Family | None:
    """The first registered family written as llama.cpp architecture `arch` (None when no family is)."""
    return next((f for f in families() if f.gguf is not None and f.gguf.arch == arch), None)


def gguf_architectures() -> list[str]:
    """The llama.cpp architecture names the registered families are written as."""
    return sorted({f.gguf.arch for f in families() if f.gguf is not None})



def find_release(name: str, model_type: str | None = None, family: Family | None = None,
                 config: Config | None = None, tokenizer: TokenizerInfo | None = None) -> Release:
    """The release a local model is: with `config` and `tokenizer`, the first of `family`'s releases whose detector
    recognizes them; else the first whose name pattern matches `name` (`family`'s releases first), else the first
    listing `model_type`, else `family`'s (or the first registered family's) default release."""
    order = [*([family] if family else []), *(f for f in families() if f is not family)]
    candidates = [r for fam in order for r in fam.releases]
    detected = None
    if family and config is not None and tokenizer is not None:
        detected = next((r for r in family.releases if r.detect and r.detect(config, tokenizer)), None)
    return (detected or next((r for r in candidates if r.name_pattern and re.search(r.name_pattern, name)), None)
            or next((r for r in candidates if model_type and model_type in r.model_types), None)
            or (family or order[0]).releases[0])
