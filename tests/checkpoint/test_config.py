"""config.json as a validated model and JSON parsed with a depth bound: each bad value is exit 1 with one line
naming the file and the field, in verify and convert; arbitrary documents raise only ConfigError."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dshub.checkpoint.config import ModelConfig, validate_config
from dshub.checkpoint.json_limits import MAX_JSON_DEPTH, JSONTooDeep, json_depth, loads_bounded
from dshub.checkpoint.reader import Checkpoint
from dshub.checks import verify
from dshub.errors import CheckpointError, ConfigError
from tests.support.ckpt_edit import INDEX, nested, set_config, shard_of, write_raw_header
from tests.support.configs import V3

# case -> (the field the error names, the edits: field -> value); every one is refused
CONFIG_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "layers-1e9": ("num_hidden_layers", {"num_hidden_layers": 10**9}),
    "experts-1e9": ("n_routed_experts", {"n_routed_experts": 10**9}),
    "hidden-0": ("hidden_size", {"hidden_size": 0}),
    "layers-negative": ("num_hidden_layers", {"num_hidden_layers": -1}),
    "hidden-as-string": ("hidden_size", {"hidden_size": "256"}),
    "hidden-as-float": ("hidden_size", {"hidden_size": 256.0}),
    "hidden-as-bool": ("hidden_size", {"hidden_size": True}),
    "hidden-too-wide": ("hidden_size", {"hidden_size": 65537}),
    "vocab-too-large": ("vocab_size", {"vocab_size": 10_000_001}),
    "heads-as-list": ("num_attention_heads", {"num_attention_heads": [4]}),
    "block-size-zero": ("quantization_config.weight_block_size", {"quantization_config.weight_block_size": [0, 0]}),
    "block-size-one-number": ("quantization_config.weight_block_size", {"quantization_config.weight_block_size": [128]}),
    "block-size-strings": ("quantization_config.weight_block_size", {"quantization_config.weight_block_size": ["128", "128"]}),
    "architectures-empty": ("architectures", {"architectures": []}),
    # each bound alone holds; the inventory would list 4M experts
    "experts-times-layers": ("n_routed_experts", {"n_routed_experts": 4096, "num_hidden_layers": 1024}),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_fails_verify_and_convert(case: str, cli, tiny_copy: Path, tmp_path: Path):
    field, edits = CONFIG_CASES[case]
    for name, value in edits.items():
        set_config(tiny_copy, name, value)
    r = cli("verify", tiny_copy)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "config.json" in r.output and field in r.output, r.output
    out = tmp_path / "out"
    r = cli("convert", tiny_copy, "--to", "bf16", "--out", out)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.json" in lines[0] and field in lines[0], r.stderr
    assert not out.exists() or not any(out.iterdir())


def _deep_config(ckpt: Path) -> str:
    (ckpt / "config.json").write_text(json.dumps(json.loads((ckpt / "config.json").read_text()))[:-1] + ', "x": ' + nested(100_000) + "}")
    return "config.json"


def _deep_index(ckpt: Path) -> str:
    (ckpt / INDEX).write_text('{"weight_map": {}, "metadata": ' + nested(100_000) + "}")
    return INDEX


def _deep_header(ckpt: Path) -> str:
    p = shard_of(ckpt, "model.norm.weight")
    write_raw_header(p, ('{"__metadata__": ' + nested(100_000) + "}").encode())
    return p.name


@pytest.mark.parametrize("make", [_deep_config, _deep_index, _deep_header], ids=["config", "index", "header"])
def test_deeply_nested_json_is_refused(make, cli, tiny_copy: Path, tmp_path: Path):
    name = make(tiny_copy)
    for args in (("verify", tiny_copy), ("convert", tiny_copy, "--to", "bf16", "--out", tmp_path / "o")):
        r = cli(*args)
        assert r.exit_code == 1 and "Traceback" not in r.output and "RecursionError" not in r.output
        assert name in r.output and "nested" in r.output, r.output


def test_depth_bound():
    assert json_depth('{"a": [1, {"b": "[[[[["}]}') == 3
    assert loads_bounded(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(JSONTooDeep):
        loads_bounded(nested(MAX_JSON_DEPTH + 1))


def test_published_configs_validate():
    assert validate_config(V3, path="config.json") is V3


@pytest.mark.parametrize("tensor", ["model.norm.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"])
def test_tensor_in_shard_but_not_in_index_is_a_finding(tensor: str, cli, tiny_copy: Path, tmp_path: Path):
    doc = json.loads((tiny_copy / INDEX).read_text())
    del doc["weight_map"][tensor]
    (tiny_copy / INDEX).write_text(json.dumps(doc))
    for args in (("verify", tiny_copy), ("verify", tiny_copy, "--deep"), ("convert", tiny_copy, "--to", "bf16", "--out", tmp_path / "o")):
        r = cli(*args)
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert tensor in r.output and "missing from" in r.output, r.output


def test_tensor_in_index_but_not_in_shard_is_a_finding(cli, tiny_copy: Path):
    doc = json.loads((tiny_copy / INDEX).read_text())
    doc["weight_map"]["model.ghost.weight"] = doc["weight_map"]["model.norm.weight"]
    (tiny_copy / INDEX).write_text(json.dumps(doc))
    for args in (("verify", tiny_copy), ("verify", tiny_copy, "--deep")):
        r = cli(*args)
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert "model.ghost.weight" in r.output and "not stored in the shard" in r.output, r.output


INDEX_DOCS = st.fixed_dictionaries({"weight_map": st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=4)})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(INDEX_DOCS, st.builds(lambda d, m: {**d, "metadata": m}, INDEX_DOCS, st.integers() | st.text())))
def test_arbitrary_index_raises_only_checkpoint_errors(doc: dict[str, Any], tiny_copy: Path):
    """Any weight_map (names with NUL, `..`, absolute paths, missing shards) is opened or refused as CheckpointError."""
    (tiny_copy / INDEX).write_text(json.dumps(doc))
    try:
        Checkpoint.open(tiny_copy)
    except CheckpointError as e:
        assert str(e)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20)
FIELDS = st.sampled_from(sorted(ModelConfig.model_fields))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
def test_config_model_raises_only_config_error(doc: Any):
    try:
        assert validate_config(doc, path="config.json") is doc
    except ConfigError as e:
        assert str(e).startswith("config.json: ")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(FIELDS, st.integers(), min_size=1, max_size=3))
def test_config_model_bounds_every_dimension(doc: dict[str, int]):
    """An integer a field refuses is reported under that field's name."""
    try:
        validate_config(doc, path="config.json")
    except ConfigError as e:
        assert any(k in str(e) for k in doc), str(e)


def test_unreadable_header_is_one_finding_not_blamed_on_config(tiny_copy: Path):
    _deep_header(tiny_copy)
    findings = [f for f in verify(tiny_copy).findings if f.severity == "error"]
    assert [(f.check, f.file) for f in findings] == [("header", shard_of(tiny_copy, "model.norm.weight").name)], findings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=128) | st.builds(lambda d: json.dumps(d).encode(), JSON) | st.just(b'{"hidden_size": 1' + b"0" * 5000 + b"}"))
def test_arbitrary_config_bytes_raise_only_config_errors(raw: bytes, tiny_copy: Path):
    """config.json of any bytes (not UTF-8, not JSON, a 5000-digit integer) is read or refused as ConfigError."""
    (tiny_copy / "config.json").write_bytes(raw)
    try:
        Checkpoint.open(tiny_copy)
    except ConfigError as e:
        assert str(e).startswith("config.json: ")
