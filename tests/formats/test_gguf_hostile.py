"""The GGUF reader against hostile bytes: arbitrary files, damaged copies of a real one, retyped metadata and huge claims
all end in dshub's own errors (never another exception, never an allocation the file cannot back)."""
from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dshub.api import plan
from dshub.checks import verify
from dshub.checks.gguf import gguf_info
from dshub.converters import build_options, run_conversion
from dshub.errors import DshubError, GGUFError
from dshub.formats.gguf_file import SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS, KV, VT, TensorInfo, read_gguf_header, write_gguf
from dshub.formats.gguf_schema import ARCH_KEYS, KEYS, key_spec
from dshub.recipes import Request
from dshub.recipes.local_gguf import gguf_info as plan_info
from tests.support.gguf_files import with_kv

# No example database: nothing is written into the working tree, and each run explores afresh.
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SMALL_KVS = [
    KV("general.architecture", VT.STRING, "deepseek2"),
    KV("deepseek2.block_count", VT.UINT32, 2),
    KV("general.alignment", VT.UINT32, 32),
    KV("tokenizer.ggml.tokens", VT.ARRAY, ["a", "b"], VT.STRING),
    KV("tokenizer.ggml.token_type", VT.ARRAY, [1, 3], VT.INT32),
]
SMALL_TENSORS = [TensorInfo("token_embd.weight", (2, 32), "F32"), TensorInfo("blk.0.attn_norm.weight", (32,), "F16")]


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid two-tensor GGUF written by dshub's writer, as bytes."""
    path = tmp_path_factory.mktemp("small") / "small.gguf"
    write_gguf(path, SMALL_KVS, SMALL_TENSORS, lambda t: [bytes(t.nbytes)])
    return path.read_bytes()


def only_dshub_errors(call: Callable[[], Any]) -> DshubError | None:
    """Run `call`; a DshubError is returned, anything else fails the test."""
    try:
        call()
    except DshubError as e:
        assert "\n" not in str(e), str(e)
        return e
    return None


def every_reader(path: Path) -> None:
    """read_gguf_header, verify (deep too), info and plan's reader on `path`: nothing but dshub's errors."""
    only_dshub_errors(lambda: read_gguf_header(path))
    only_dshub_errors(lambda: verify(path))
    only_dshub_errors(lambda: verify(path, deep=True))
    only_dshub_errors(lambda: gguf_info(path))
    only_dshub_errors(lambda: plan_info(path))
    only_dshub_errors(lambda: plan(Request(str(path), engine="llamacpp")))


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(data)
    every_reader(path)


@FUZZ
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=400))
def test_valid_magic_then_arbitrary_bytes(tmp_path: Path, n_tensors: int, n_kv: int, rest: bytes) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors % 8 if n_tensors & 1 else n_tensors, n_kv % 8) + rest)
    e = only_dshub_errors(lambda: read_gguf_header(path))
    assert e is None or isinstance(e, GGUFError)


MUTATION = st.tuples(st.integers(0, 10**9), st.binary(min_size=1, max_size=8))


@FUZZ
@given(st.lists(MUTATION, min_size=1, max_size=4), st.integers(0, 10**9) | st.none())
def test_mutated_small_file(small_gguf: bytes, tmp_path: Path, mutations: list[tuple[int, bytes]], cut: int | None) -> None:
    raw = bytearray(small_gguf)
    for pos, chunk in mutations:
        pos %= len(raw)
        raw[pos:pos + len(chunk)] = chunk[: len(raw) - pos]
    if cut is not None:
        raw = raw[: cut % len(raw)]
    path = tmp_path / "x.gguf"
    path.write_bytes(bytes(raw))
    e = only_dshub_errors(lambda: read_gguf_header(path))
    assert e is None or isinstance(e, GGUFError)


@FUZZ
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_real_preamble(tiny_gguf: Path, tmp_path: Path, mutations: list[tuple[int, bytes]]) -> None:
    """dshub's own Q8_0 conversion with its metadata and tensor infos damaged: verify, info and plan stay clean."""
    h = read_gguf_header(tiny_gguf)
    with open(tiny_gguf, "rb") as f:
        raw = bytearray(f.read(h.data_offset))
    for pos, chunk in mutations:
        pos %= len(raw)
        raw[pos:pos + len(chunk)] = chunk[: len(raw) - pos]
    path = tmp_path / tiny_gguf.name
    with open(path, "wb") as f:
        f.write(raw)
        f.truncate(h.file_size)  # the data section as zeros (sparse), so each example writes only the preamble
    every_reader(path)


SCALARS: dict[VT, st.SearchStrategy[Any]] = {
    VT.UINT8: st.integers(0, 2**8 - 1), VT.INT8: st.integers(-(2**7), 2**7 - 1),
    VT.UINT16: st.integers(0, 2**16 - 1), VT.INT16: st.integers(-(2**15), 2**15 - 1),
    VT.UINT32: st.integers(0, 2**32 - 1), VT.INT32: st.integers(-(2**31), 2**31 - 1),
    VT.UINT64: st.integers(0, 2**64 - 1), VT.INT64: st.integers(-(2**63), 2**63 - 1),
    VT.FLOAT32: st.floats(width=32), VT.FLOAT64: st.floats(), VT.BOOL: st.booleans(),
    VT.STRING: st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
}
SMALL_INTS = st.sampled_from([VT.UINT32, VT.UINT16, VT.INT32]).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, 70), st.none()))
ARRAYS = st.sampled_from(sorted(SCALARS)).flatmap(
    lambda sub: st.tuples(st.just(VT.ARRAY), st.lists(SCALARS[sub], max_size=4), st.just(sub)))
TYPED = st.sampled_from(sorted(SCALARS)).flatmap(lambda t: st.tuples(st.just(t), SCALARS[t], st.none()))
KNOWN_KEYS = sorted(KEYS) + [f"deepseek2.{k}" for k in sorted(ARCH_KEYS)]


def _allowed(key: str, vtype: VT, sub: VT | None) -> bool:
    spec = key_spec(key, "deepseek2")
    return spec is not None and vtype in spec.types and (vtype is not VT.ARRAY or sub in spec.elements)


@settings(FUZZ, max_examples=150)
@given(st.sampled_from(KNOWN_KEYS), TYPED | ARRAYS | SMALL_INTS)
def test_any_known_key_with_any_type_or_value(tiny_gguf: Path, tmp_path: Path, key: str, entry: tuple[VT, Any, VT | None]) -> None:
    """A known key retyped (or set to a small integer of any width): a wrong type names the file and the key in every
    command, and whatever the value, nothing but dshub's errors come out."""
    vtype, value, sub = entry
    path = with_kv(tiny_gguf, tmp_path / "m.gguf", key, vtype, value, sub)
    if not _allowed(key, vtype, sub):
        e = only_dshub_errors(lambda: read_gguf_header(path))
        assert isinstance(e, GGUFError) and str(e).startswith(f"m.gguf: metadata {key} is "), e
        errors = [f for f in verify(path).findings if f.severity == "error"]
        assert any(f.file == "m.gguf" and key in f.message for f in errors), errors
    every_reader(path)


@pytest.fixture(scope="module")
def split_files(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("gguf-split")
    run_conversion(tiny_ckpt, build_options("gguf", out=out, quant="Q8_0", split_max_tensors=20), progress=False)
    return sorted(out.glob("*.gguf"))


SPLIT_VALUES = {SPLIT_NO: (VT.UINT16, st.integers(0, 2**16 - 1)), SPLIT_COUNT: (VT.UINT16, st.integers(1, 2**16 - 1)),
                SPLIT_TENSORS: (VT.INT32, st.integers(0, 2**31 - 1))}


@settings(FUZZ, max_examples=60)
@given(st.integers(0, 2), st.sampled_from(sorted(SPLIT_VALUES)).flatmap(lambda k: st.tuples(st.just(k), SPLIT_VALUES[k][1])))
def test_any_split_key_value_is_caught(split_files: list[Path], tmp_path: Path, index: int, entry: tuple[str, int]) -> None:
    """Well-typed split keys with any value: a value that is not the set's own is an error naming that file."""
    key, value = entry
    victim = split_files[index]
    for f in split_files:
        if f is not victim:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with_kv(victim, tmp_path / victim.name, key, SPLIT_VALUES[key][0], value)
    true = {SPLIT_NO: index, SPLIT_COUNT: len(split_files), SPLIT_TENSORS: 52}[key]
    report = verify(tmp_path)
    errors = [f for f in report.findings if f.severity == "error"]
    assert bool(errors) == (value != true), errors
    assert all(f.file == victim.name and key in f.message for f in errors), errors
    every_reader(tmp_path / split_files[0].name)


def _huge_claim(path: Path, claim: bytes, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + claim)
        f.truncate(size)  # sparse: the claim fits the file's size, not a sane header


@pytest.mark.parametrize("claim, message", [
    (struct.pack("<Q", 3) + b"k.a" + struct.pack("<IIQ", VT.ARRAY, VT.UINT8, 2**34), "array of 17179869184 elements cannot fit"),
    (struct.pack("<Q", 3) + b"k.a" + struct.pack("<IIQ", VT.ARRAY, VT.STRING, 2**31), "array of 2147483648 elements cannot fit"),
    (struct.pack("<Q", 3) + b"k.s" + struct.pack("<IQ", VT.STRING, 2**33), "string of 8589934592 bytes"),
    (struct.pack("<Q", 2**40), "string of 1099511627776 bytes"),
])
def test_huge_claims_in_a_big_file_are_refused_before_allocation(tmp_path: Path, claim: bytes, message: str) -> None:
    path = tmp_path / "big.gguf"
    _huge_claim(path, claim, 2**36)  # 64 GiB, sparse
    tracemalloc.start()
    try:
        with pytest.raises(GGUFError, match=message):
            read_gguf_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_counts_beyond_the_file_and_too_many_dims(small_gguf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "c.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0) + bytes(64))
    with pytest.raises(GGUFError, match="c.gguf: header claims 9223372036854775808 tensors"):
        read_gguf_header(path)
    h_end = small_gguf.index(b"token_embd.weight") + len(b"token_embd.weight")
    raw = bytearray(small_gguf)
    raw[h_end:h_end + 4] = struct.pack("<I", 5)  # n_dims
    path.write_bytes(bytes(raw))
    with pytest.raises(GGUFError, match="c.gguf: tensor token_embd.weight: 5 dimensions"):
        read_gguf_header(path)


def test_tensor_outside_the_file_and_long_names(tmp_path: Path) -> None:
    path = tmp_path / "t.gguf"
    write_gguf(path, SMALL_KVS, SMALL_TENSORS, lambda t: [bytes(t.nbytes)])
    raw = path.read_bytes()
    path.write_bytes(raw[:-64])
    with pytest.raises(GGUFError, match="t.gguf: tensor data ends at byte"):
        read_gguf_header(path)
    name = "blk.0." + "x" * 60
    raw = raw.replace(struct.pack("<Q", 22) + b"blk.0.attn_norm.weight", struct.pack("<Q", len(name)) + name.encode())
    path.write_bytes(raw)
    with pytest.raises(GGUFError, match="t.gguf: tensor info 1: name of 66 bytes"):
        read_gguf_header(path)


def test_every_type_dshub_writes_is_one_the_schema_allows(tiny_gguf: Path) -> None:
    h = read_gguf_header(tiny_gguf)
    known = [k for k in h.kv if key_spec(k, "deepseek2") is not None]
    assert len(known) > 30
    assert all(_allowed(k, h.kv_types[k], h.kv_subtypes.get(k)) for k in known)
