"""What an ONNX output directory is (`dshub info DIR`): the decoder graph's operators, precision, quantization blocks,
inputs and outputs, external-data files, and onnxruntime-genai's config. Reads `model.onnx` without its weights; each
external data file must be there, inside the directory, and hold every byte its initializers' `offset` + `length`
name (the ONNX external-data keys, onnx/external_data_helper.py): else one error naming the file and a tensor."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from dshub.errors import CheckpointError, DshubError, ShardTruncated

GRAPH_FILE = "model.onnx"
GENAI_CONFIG = "genai_config.json"


def is_onnx_dir(path: str | Path) -> bool:
    """A directory holding an ONNX graph (`model.onnx`), or the graph file itself."""
    p = Path(path)
    return (p.is_dir() and (p / GRAPH_FILE).is_file()) or (p.is_file() and p.suffix == ".onnx")


def _attribute(node: Any, name: str) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _external(t: Any) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def data_files(root: Path, initializers: list[Any]) -> dict[str, int]:
    """Each external data file's size, checked against what the graph's initializers need from it."""
    needs: dict[str, tuple[int, str]] = {}  # file -> (bytes needed, the initializer that ends last)
    for t in initializers:
        ext = _external(t)
        if "location" not in ext:
            continue
        loc = ext["location"]
        if Path(loc).is_absolute() or ".." in Path(loc).parts:
            raise CheckpointError(f"external data location {loc!r} is outside the directory; refused",
                                  path=str(root / "model.onnx"), tensor=t.name)
        end = int(ext.get("offset", 0)) + int(ext.get("length", 0))
        if end >= needs.get(loc, (-1, ""))[0]:
            needs[loc] = (end, t.name)
    sizes = {}
    for loc, (end, tensor) in sorted(needs.items()):
        f = root / loc
        if not f.is_file():
            raise CheckpointError(f"external data file missing: {GRAPH_FILE} stores this initializer in it",
                                  path=str(f), tensor=tensor)
        sizes[loc] = f.stat().st_size
        if sizes[loc] < end:
            raise ShardTruncated(f"{sizes[loc]} bytes, but {GRAPH_FILE} places this initializer up to byte {end}",
                                 path=str(f), tensor=tensor, expected=end, actual=sizes[loc])
    return sizes


def onnx_info(path: str | Path) -> dict[str, Any]:
    """Format, operators, precision and files of an ONNX decoder directory (or a bare .onnx graph)."""
    import onnx

    p = Path(path)
    graph_path = p / GRAPH_FILE if p.is_dir() else p
    root = graph_path.parent
    try:
        model = onnx.load(str(graph_path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / ValueError for a file that is not a ModelProto
        raise DshubError(f"not a readable ONNX graph ({type(e).__name__})", path=str(graph_path)) from None
    g = model.graph
    ops = Counter(n.op_type for n in g.node)
    nbits = [n for n in g.node if n.op_type == "MatMulNBits"]
    weights = {t.name: t for t in g.initializer}
    files = data_files(root, list(g.initializer))
    names = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}
    float_types = Counter(names[t.data_type] for t in g.initializer if t.data_type in names)
    precision = "int4" if nbits else (float_types.most_common(1)[0][0] if float_types else None)
    quant = None
    if nbits:
        blocks = sorted({int(_attribute(n, "block_size")) for n in nbits})
        with_zero_points = sum(1 for n in nbits if len(n.input) > 3 and n.input[3])
        quant = {"op": "MatMulNBits", "bits": sorted({int(_attribute(n, "bits")) for n in nbits}), "block_size": blocks,
                 "matmuls": len(nbits), "with_zero_points": with_zero_points, "float_matmuls": ops.get("MatMul", 0)}
    genai_path = root / GENAI_CONFIG
    genai = json.loads(genai_path.read_text()) if genai_path.is_file() else None
    decoder = (genai or {}).get("model", {}).get("decoder", {})
    return {
        "format": "onnx",
        "path": str(path),
        "opset": {d.domain or "ai.onnx": d.version for d in model.opset_import},
        "precision": precision,
        "quantization": quant,
        "layers": sum(1 for n in g.node if n.op_type == "GroupQueryAttention"),
        "attention": {"heads": decoder.get("num_attention_heads"), "kv_heads": decoder.get("num_key_value_heads"),
                      "head_size": decoder.get("head_size")},
        "operators": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "inputs": [i.name for i in g.input],
        "outputs": [o.name for o in g.output],
        "initializers": len(weights),
        "files": [{"name": f, "bytes": n} for f, n in files.items()],
        "bytes": graph_path.stat().st_size + sum(files.values()),
        "genai_config": genai is not None,
        "tokenizer": (root / "tokenizer.json").is_file(),
    }
