"""The safetensors header parser on hostile input: arbitrary bytes, arbitrary JSON documents and near-valid entries
never raise anything but dshub's own CheckpointError; what it accepts is self-consistent."""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from dshub.checkpoint.header import DTYPE_BYTES, read_header
from dshub.errors import CheckpointError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_DIR = Path(tempfile.mkdtemp(prefix="dshub-header-props-"))


def _parse(raw: bytes) -> None:
    """read_header on a file holding `raw`: it accepts the file or raises CheckpointError, nothing else."""
    p = _DIR / "x.safetensors"
    p.write_bytes(raw)
    try:
        h = read_header(p)
    except CheckpointError as e:
        assert str(e)
        return
    spans = sorted((e.start, e.end) for e in h.tensors.values())
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert (spans[-1][1] if spans else h.data_start) == h.file_size
    for e in h.tensors.values():
        assert e.nbytes == e.numel * DTYPE_BYTES[e.dtype]


def _framed(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@SETTINGS
@given(st.binary(max_size=256))
def test_arbitrary_bytes(raw: bytes):
    _parse(raw)


@SETTINGS
@given(st.binary(max_size=256), st.binary(max_size=64))
def test_arbitrary_header_bytes(header: bytes, data: bytes):
    _parse(_framed(header, data))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=12)


@SETTINGS
@given(JSON, st.binary(max_size=64))
def test_arbitrary_json_documents(doc: Any, data: bytes):
    _parse(_framed(json.dumps(doc).encode(), data))


ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from([*DTYPE_BYTES, "F4", "bf16", ""]) | JSON,
    "shape": st.lists(st.integers(-2, 8), max_size=3) | JSON,
    "data_offsets": st.lists(st.integers(-4, 64), min_size=2, max_size=2) | JSON,
})


@SETTINGS
@given(st.dictionaries(st.text(max_size=4), ENTRY, max_size=4), st.integers(0, 96),
       st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.integers())))
def test_near_valid_entries(entries: dict[str, Any], data_len: int, metadata: Any):
    doc = {**entries, **({} if metadata is None else {"__metadata__": metadata})}
    _parse(_framed(json.dumps(doc).encode(), bytes(data_len)))


def test_deep_nesting_is_a_header_error():
    _parse(_framed(b"[" * 100_000 + b"]" * 100_000))
