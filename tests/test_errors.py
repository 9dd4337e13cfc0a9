"""dshub.errors: an error's text is composed from its fields (`file: tensor NAME: detail`), never formatted into the
message at the raise site and parsed back."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from dshub import errors
from dshub.checkpoint.header import read_header
from dshub.checks import verify
from dshub.errors import CheckpointError, DshubError, HeaderError, ShardTruncated

ROOT = Path(__file__).resolve().parents[1]


def test_text_is_composed_from_the_fields():
    e = HeaderError("unknown dtype 'F7'", path="/data/model-00001-of-00002.safetensors", tensor="model.norm.weight")
    assert str(e) == "/data/model-00001-of-00002.safetensors: tensor model.norm.weight: unknown dtype 'F7'"
    assert (e.detail, e.path, e.tensor) == ("unknown dtype 'F7'", "/data/model-00001-of-00002.safetensors", "model.norm.weight")
    assert e.args == ("unknown dtype 'F7'",) and e.where == ("/data/model-00001-of-00002.safetensors", "tensor model.norm.weight")
    assert str(DshubError("plain")) == "plain"
    assert str(DshubError("no tensor", path="config.json")) == "config.json: no tensor"
    assert str(DshubError("no file", tensor="lm_head.weight")) == "tensor lm_head.weight: no file"


def test_how_the_message_names_file_and_tensor():
    shard = "/data/model-00001-of-00002.safetensors"
    assert str(DshubError("d", path=shard, show_path="model-00001-of-00002.safetensors")) == "model-00001-of-00002.safetensors: d"
    assert str(DshubError("exists and is not a directory", path="/o", show_path="--out /o")) == "--out /o: exists and is not a directory"
    assert str(DshubError("no floating-point tensors found", path="config.json", show_path="")) == "no floating-point tensors found"
    e = DshubError("non-finite", path="s.safetensors", tensor="w", show_tensor="tensor w -> blk.0.ffn_up.weight")
    assert str(e) == "s.safetensors: tensor w -> blk.0.ffn_up.weight: non-finite" and e.tensor == "w"
    e = DshubError("tensor w overlaps the previous tensor", path="x.gguf", tensor="w", show_tensor="")
    assert str(e) == "x.gguf: tensor w overlaps the previous tensor" and e.tensor == "w"


@pytest.mark.parametrize("cls", [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, DshubError)],
                         ids=lambda c: c.__name__)
def test_every_error_class_composes_its_text(cls):
    data = {"expected": 1, "actual": 2, "needed": 3, "free": 1, "reasons": [], "alternatives": []}
    params = inspect.signature(cls.__init__).parameters
    kw = {k: v for k, v in data.items() if k in params}
    if "path" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kw["path"] = "f.safetensors"
    e = cls("broken", **kw)
    assert str(e) == ("f.safetensors: broken" if "path" in kw else "broken")


def test_extra_data_stays_beside_the_fields(tmp_path):
    p = tmp_path / "model.safetensors"
    p.write_bytes(b"abc")
    with pytest.raises(ShardTruncated) as info:
        read_header(p)
    e = info.value
    assert str(e) == "model.safetensors: 3 bytes, too short to hold a safetensors header"  # the text of today
    assert e.path == str(p) and e.detail == "3 bytes, too short to hold a safetensors header"
    assert (e.expected, e.actual) == (8, 3)


def test_verify_findings_hold_the_detail_and_keep_a_full_path(tmp_path):
    (tmp_path / "not-a-dir").write_text("x")
    (f,) = verify(tmp_path / "not-a-dir").findings
    assert (f.file, f.tensor) == ("not-a-dir", None)
    assert f.message == f"{tmp_path / 'not-a-dir'}: not a directory"  # the location the finding does not hold stays


def _raise_sites() -> list[tuple[str, int, str, str | None, str | None]]:
    names = {n for n, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, DshubError)}
    sites = []
    for folder in ("dshub", "converters", "recipes", "quant"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            src = f.read_text()
            for node in ast.walk(ast.parse(src)):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                kw = {k.arg: ast.get_source_segment(src, k.value) for k in node.keywords}
                if name in names and ("path" in kw or "tensor" in kw):
                    first = node.args[0].left if isinstance(node.args[0], ast.BinOp) else node.args[0]
                    sites.append((f"{f.relative_to(ROOT)}:{node.lineno}", 0, ast.get_source_segment(src, first) or "",
                                  kw.get("path"), kw.get("tensor")))
    return sites


def test_no_raise_site_formats_its_own_fields_into_the_detail():
    sites = _raise_sites()
    assert len(sites) > 50
    bad = [f"{where}: {literal[:70]}" for where, _, literal, path, tensor in sites if _names_its_fields(literal, path, tensor)]
    assert not bad, "pass the detail and let the fields name the file and tensor:\n" + "\n".join(bad)


def _names_its_fields(literal: str, path: str | None, tensor: str | None) -> bool:
    """Does a message literal start with the location its own path= (or tensor=) argument holds?"""
    starts = []
    if path:
        inner = re.fullmatch(r"str\((.+)\)", path)
        expr = inner.group(1) if inner else path
        starts += [f'f"{path[1:-1]}: ', f'"{path[1:-1]}: '] if path[0] == '"' else [f'f"{{{expr}}}: ']
    return literal.startswith(tuple(starts)) or bool(tensor and f"tensor {{{tensor}}}: " in literal)


def test_the_site_check_catches_the_old_style():
    assert _names_its_fields('f"{name}: header is not a JSON object"', "name", None)
    assert _names_its_fields('f"{path}: disk full"', "str(path)", None)
    assert _names_its_fields('"config.json: required field"', '"config.json"', None)
    assert _names_its_fields('f"{shard}: tensor {name}: bad"', "shard", "name")
    assert not _names_its_fields('"header is not a JSON object"', "str(path)", None)
    assert not _names_its_fields('f"{what}: bad array element type"', "str(self.path)", None)


def test_a_checkpoint_error_rewrapped_keeps_one_location():
    inner = CheckpointError("not a JSON object", path="tokenizer.json")
    outer = CheckpointError(inner.detail, path="/ckpt/tokenizer.json")
    assert str(outer) == "/ckpt/tokenizer.json: not a JSON object"
