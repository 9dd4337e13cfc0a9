"""The model-family contract: every registered family implements all of it, on its own example config."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from dshub.arch import FAMILIES, families, family_for, spec_for
from dshub.arch import ArchSpec
from dshub.arch.family import NEVER_INT4, RELEASES, SCOPE_NAMES, Family, find_release, register
from dshub.arch.spec import Role
from dshub.errors import UnsupportedArchitecture, UsageError
from dshub.formats.gguf_file import VT
from dshub.formats.gguf_layout import map_tensors
from dshub.formats.gguf_metadata import arch_kvs
from dshub.quant.registry import DuplicateName, UnknownName
from dshub.recipes.engine_facts import ENGINES

ALL = families()
IDS = [f.name for f in ALL]


def test_families_are_registered_by_every_architecture_name() -> None:
    assert {"DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM", "KimiK2ForCausalLM", "DeepseekV32ForCausalLM"} <= set(FAMILIES)
    for fam in ALL:
        assert fam.architectures
        for arch in fam.architectures:
            assert FAMILIES.get(arch) is fam
            assert family_for({"architectures": ["Nope", arch]}) is fam  # the first known name wins


@pytest.mark.parametrize("fam", ALL, ids=IDS)
def test_inventory_and_planner_facts(fam: Family) -> None:
    config = dict(fam.example)
    assert family_for(config) is fam
    spec = fam.inventory(config)
    assert isinstance(spec, ArchSpec) and spec.tensors and spec.architecture in fam.architectures
    assert len(spec.by_name) == len(spec.tensors)  # names are unique
    assert {t.role for t in spec} <= set(fam.planner.components)  # every role has a planner component
    assert fam.planner.kv_elems_per_token_layer(config) > 0
    dims = fam.planner.tp_split_dims(config)
    assert dims and set(dims) <= set(fam.planner.components.values())
    assert all(w > 0 for ws in dims.values() for w in ws)
    for (engine, kv_dtype), n in fam.planner.kv_bytes_per_layer.items():
        assert engine in ENGINES and isinstance(kv_dtype, str) and n > 0
    if fam.planner.kv_bytes_per_layer:
        assert fam.planner.kv_bytes_source


@pytest.mark.parametrize("fam", ALL, ids=IDS)
def test_releases_and_engine_facts(fam: Family) -> None:
    assert fam.releases
    for r in fam.releases:
        assert RELEASES.get(r.key) == (fam, r)
        assert set(r.engines) <= set(ENGINES)
        if r.name_pattern:
            re.compile(r.name_pattern)
        for facts in r.engines.values():
            assert not facts.min_version or facts.min_version_source  # a minimum version names its source
            assert not facts.prefer_layouts or facts.prefer_reason


@pytest.mark.parametrize("fam", ALL, ids=IDS)
def test_gguf_mapping_or_a_reason(fam: Family) -> None:
    config = dict(fam.example)
    if fam.gguf is None:
        assert fam.refusals.get("gguf")
        with pytest.raises(UsageError, match=re.escape(fam.refusals["gguf"])):
            map_tensors(config)
        return
    g = fam.gguf_mapping()
    assert all(f.vtype in VT.__members__ for f in g.fields) and all(d.vtype in VT.__members__ for d in g.derived)
    if g.mtp_refusal:  # a family whose MTP layers llama.cpp keeps apart says why
        with pytest.raises(UsageError, match=re.escape(g.mtp_refusal)):
            map_tensors(config, mtp=True)
    mapped = map_tensors(config, mtp=not g.mtp_refusal)
    names = [n for n, _, _ in mapped]
    assert len(names) == len(set(names))
    consumed = [s for _, _, src in mapped for s in src.names]
    spec = fam.inventory(config)
    expected = {t.name for t in spec if not (t.mtp and g.mtp_refusal)} - g.skipped(config)
    # every source tensor is consumed (split parts read theirs twice) but those llama.cpp drops, nothing else is read
    assert set(consumed) == expected
    keys = {kv.key for kv in arch_kvs(config)}
    assert all(k.startswith(g.arch + ".") for k in keys) and g.key("block_count") in keys


@pytest.mark.parametrize("fam", ALL, ids=IDS)
def test_int4_scopes_or_a_reason(fam: Family) -> None:
    if fam.int4 is None:
        assert fam.refusals.get("int4")
        with pytest.raises(UsageError, match=re.escape(fam.refusals["int4"])):
            fam.int4_scopes()
        return
    scopes = fam.int4_scopes()
    assert tuple(scopes) == SCOPE_NAMES  # the --scope choices
    assert all(not (roles & NEVER_INT4) for roles in scopes.values())
    spec = fam.inventory(dict(fam.example))
    default = fam.int4_scope(None)
    assert any(t.role in scopes[default] and t.linear for t in spec)  # the default scope selects something


def test_unknown_architecture_fails_listing_the_known_ones() -> None:
    with pytest.raises(UnsupportedArchitecture) as e:
        spec_for({"architectures": ["MistralForCausalLM"]})
    assert "MistralForCausalLM" in str(e.value) and all(a in str(e.value) for a in FAMILIES.names())
    with pytest.raises(UnknownName, match="known: DeepseekV2ForCausalLM"):
        FAMILIES.get("MistralForCausalLM")


def test_an_architecture_or_release_registered_twice_is_an_error() -> None:
    v3 = FAMILIES.get("DeepseekV3ForCausalLM")
    with pytest.raises(DuplicateName):
        register(replace(v3, name="copy", architectures=("DeepseekV3ForCausalLM",)))
    assert FAMILIES.get("DeepseekV3ForCausalLM") is v3


def test_a_refused_target_names_the_family_and_why() -> None:
    fam = replace(FAMILIES.get("DeepseekV32ForCausalLM"), gguf=None, int4=None,
                  refusals={"gguf": "the indexer is not mapped"})  # not registered: the mechanism alone
    with pytest.raises(UsageError, match=r"--to gguf: deepseek_v32 \(DeepseekV32ForCausalLM\).*indexer is not mapped"):
        fam.gguf_mapping()
    with pytest.raises(UsageError, match=r"--to int4: deepseek_v32 .*no mapping is defined"):
        fam.int4_scopes()


@pytest.mark.parametrize("name, model_type, arch, release", [
    ("DeepSeek-R1-0528", "deepseek_v3", "DeepseekV3ForCausalLM", "r1"),
    ("DeepSeek-V3.1-Terminus", "deepseek_v3", "DeepseekV3ForCausalLM", "v31"),
    ("Kimi-K2-Instruct", "kimi_k2", "DeepseekV3ForCausalLM", "kimi_k2"),
    ("my-model", "kimi_k2", "DeepseekV3ForCausalLM", "kimi_k2"),  # by model_type
    ("my-model", "deepseek_v2", "DeepseekV2ForCausalLM", "v3"),
    ("my-model", None, "DeepseekV3ForCausalLM", "v3"),  # the family's default
    ("DeepSeek-V3.2-Exp", "deepseek_v32", "DeepseekV32ForCausalLM", "v32"),
    ("my-model", None, "DeepseekV32ForCausalLM", "v32"),
])
def test_release_of_a_local_model(name: str, model_type: str | None, arch: str, release: str) -> None:
    assert find_release(name, model_type, FAMILIES.get(arch)).key == release


def test_a_gguf_named_for_a_release_of_another_family_still_finds_it() -> None:
    # GGUFs carry no HF architecture: a deepseek2 file named V3.2 gets V3.2's engine notes, as before
    assert find_release("DeepSeek-V3.2-Q4_K_M", None, FAMILIES.get("DeepseekV3ForCausalLM")).key == "v32"


def test_roles_all_have_a_planner_component() -> None:
    for fam in ALL:
        assert set(Role) <= set(fam.planner.components)


@pytest.mark.parametrize("fam", ALL, ids=IDS)
def test_decoder_facts_or_a_refusal(fam: Family) -> None:
    config = dict(fam.example)
    if fam.decoder is None:  # no ONNX decoder graph: --to onnx is refused naming the family
        with pytest.raises(UsageError, match=f"--to onnx: {fam.name}"):
            fam.decoder_facts()
        return
    d = fam.decoder_facts()
    hd = d.head_dim(config)
    assert hd > 0 and int(config["num_attention_heads"]) % d.kv_heads(config) == 0
    freqs = d.rope_inv_freq(config)
    assert len(freqs) == hd // 2 and all(0 < f <= 1 for f in freqs)
    assert isinstance(d.tied_embeddings(config), bool)
