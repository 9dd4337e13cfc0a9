"""GGUF v3 files: a streaming writer (plan first, then header, KV, tensor infos, data) and a header reader.

The writer takes each tensor's bytes as a stream of chunks, so a stacked expert tensor can be produced expert by
expert. Split sets follow llama.cpp (`<stem>-00001-of-0000N.gguf`; every file is a complete GGUF carrying
`split.no`, `split.count` and `split.tensors.count`; all other metadata lives in the first file).
"""
from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dshub.quant.gguf.types import GGML_TYPES, GGML_TYPES_BY_CODE

from dshub.errors import GGUFError
from dshub.fsutil import hashed_atomic_open
from dshub.formats.gguf_schema import SCALAR_FORMAT, VT, metadata_problems

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NAME_BYTES = 63  # GGML_MAX_NAME - 1
SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS = "split.no", "split.count", "split.tensors.count"
SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class KV:
    """One metadata entry. Arrays give their element type in `sub`."""

    key: str
    vtype: VT
    value: Any
    sub: VT | None = None


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as GGUF declares it. `shape` is numpy order (slowest axis first); GGUF stores it reversed as `ne`."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int = 0  # relative to the data section (reader only)

    @property
    def ne(self) -> tuple[int, ...]:
        return tuple(reversed(self.shape))

    @property
    def nbytes(self) -> int:
        return GGML_TYPES[self.ggml_type].nbytes(self.shape)


def pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


# ---------------------------------------------------------------- encoding
def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(vtype: VT, value: Any, sub: VT | None) -> bytes:
    if vtype is VT.STRING:
        return _string(value)
    if vtype is VT.ARRAY:
        if sub is None or sub is VT.ARRAY:
            raise ValueError("array metadata needs a scalar or string element type")
        head = struct.pack("<IQ", sub, len(value))
        if sub is VT.STRING:
            return head + b"".join(_string(v) for v in value)
        return head + struct.pack(f"<{len(value)}{SCALAR_FORMAT[sub]}", *value)
    return struct.pack("<" + SCALAR_FORMAT[vtype], value)


def encode_kv(kv: KV) -> bytes:
    return _string(kv.key) + struct.pack("<I", kv.vtype) + _value(kv.vtype, kv.value, kv.sub)


def encode_preamble(kvs: list[KV], tensors: list[TensorInfo], alignment: int = DEFAULT_ALIGNMENT) -> bytes:
    """Header, KV entries and tensor infos, zero-padded to where the data section starts."""
    keys = [kv.key for kv in kvs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate metadata keys: {sorted({k for k in keys if keys.count(k) > 1})}")
    out = bytearray(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs)))
    for kv in kvs:
        out += encode_kv(kv)
    offset = 0
    for t in tensors:
        if len(t.name.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"tensor name {t.name!r} is longer than {MAX_NAME_BYTES} bytes")
        if not 1 <= len(t.shape) <= MAX_DIMS:
            raise ValueError(f"tensor {t.name}: {len(t.shape)} dimensions (1..{MAX_DIMS} allowed)")
        out += _string(t.name) + struct.pack(f"<I{len(t.shape)}QIQ", len(t.shape), *t.ne, GGML_TYPES[t.ggml_type].code, offset)
        offset += pad(t.nbytes, alignment)
    out += b"\0" * (pad(len(out), alignment) - len(out))
    return bytes(out)


def file_size(kvs: list[KV], tensors: list[TensorInfo], alignment: int = DEFAULT_ALIGNMENT) -> int:
    """Exact size of the file `write_gguf` produces (the last tensor is padded too)."""
    return len(encode_preamble(kvs, tensors, alignment)) + sum(pad(t.nbytes, alignment) for t in tensors)


# ---------------------------------------------------------------- splitting
def split_names(stem: str, count: int) -> list[str]:
    """llama.cpp's file names for a set of `count` files (a single file is just `<stem>.gguf`)."""
    if count == 1:
        return [f"{stem}.gguf"]
    return [f"{stem}-{i + 1:05d}-of-{count:05d}.gguf" for i in range(count)]


def split_tensors(tensors: list[TensorInfo], max_bytes: int = 0, max_tensors: int = 0) -> list[list[TensorInfo]]:
    """Group tensors in order the way llama.cpp does: a new file when the next tensor would exceed a limit."""
    groups: list[list[TensorInfo]] = [[]]
    size = 0
    for t in tensors:
        cur = groups[-1]
        if cur and ((max_tensors and len(cur) >= max_tensors) or (max_bytes and size + t.nbytes > max_bytes)):
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    return groups


def split_kvs(kvs: list[KV], index: int, count: int, n_tensors: int) -> list[KV]:
    """The metadata of file `index` in a set: everything in the first file, split keys only in the others."""
    if count == 1:
        return list(kvs)
    keys = [KV(SPLIT_NO, VT.UINT16, index), KV(SPLIT_COUNT, VT.UINT16, count), KV(SPLIT_TENSORS, VT.INT32, n_tensors)]
    return (list(kvs) if index == 0 else []) + keys


# ---------------------------------------------------------------- writing
Chunks = Iterable[Any]  # bytes-like objects (bytes, memoryview, numpy/torch uint8 buffers)


@dataclass
class WriteResult:
    path: Path
    size: int
    sha256: str


def write_gguf(
    path: Path,
    kvs: list[KV],
    tensors: list[TensorInfo],
    produce: Callable[[TensorInfo], Chunks],
    alignment: int = DEFAULT_ALIGNMENT,
    on_tensor: Callable[[TensorInfo], None] | None = None,
) -> WriteResult:
    """Write one GGUF file atomically. `produce(t)` yields the tensor's bytes in order; their total must be `t.nbytes`."""
    with hashed_atomic_open(path) as f:
        f.write(encode_preamble(kvs, tensors, alignment))
        for t in tensors:
            start = f.size
            for chunk in produce(t):
                f.write(chunk)
            if f.size - start != t.nbytes:
                raise GGUFError(f"{f.size - start} bytes produced, {t.nbytes} declared",
                                path=str(path), show_path=path.name, tensor=t.name)
            f.write(b"\0" * (pad(t.nbytes, alignment) - t.nbytes))
            if on_tensor:
                on_tensor(t)
    return WriteResult(path, f.size, f.hexdigest())


# ---------------------------------------------------------------- reading
@dataclass
class GGUFHeader:
    """What a GGUF file declares, read without touching tensor data."""

    path: Path
    version: int
    kv: dict[str, Any]
    kv_types: dict[str, VT]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int
    file_size: int
    extra: dict[str, Any] = field(default_factory=dict)
    kv_subtypes: dict[str, VT] = field(default_factory=dict)  # element type of each ARRAY value

    @property
    def split(self) -> tuple[int, int, int] | None:
        """(split.no, split.count, split.tensors.count), or None for a single file."""
        if SPLIT_COUNT not in self.kv:
            return None
        return int(self.kv.get(SPLIT_NO, 0)), int(self.kv[SPLIT_COUNT]), int(self.kv.get(SPLIT_TENSORS, len(self.tensors)))

    def tensor_data(self, t: TensorInfo) -> tuple[int, int]:
        """Absolute (start, end) byte range of a tensor's data."""
        start = self.data_offset + t.offset
        return start, start + t.nbytes


# Bounds on what a header may claim, checked before anything is allocated. Real files stay far below them (DeepSeek-V3:
# 129280 tokens, 127741 merges, a chat template of a few KiB); the file's own size bounds them further.
MAX_ARRAY_ITEMS = 1 << 24
MAX_STRING_BYTES = 1 << 26
HEADER_BYTES = 24  # magic, version, tensor count, kv count
MAX_NE = (1 << 63) - 1  # ggml's ne are int64


def _fail(path: Path, detail: str, tensor: str | None = None) -> GGUFError:
    return GGUFError(detail, path=str(path), show_path=path.name, tensor=tensor)


class _Cursor:
    """Reads little-endian values from a buffer; every length is checked against what is left before it is used."""

    def __init__(self, buf: Any, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left:
            raise _fail(self.path, f"truncated while reading {what} at byte {self.pos}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str) -> Any:
        vals = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))
        return vals[0] if len(vals) == 1 else vals

    def string(self, what: str) -> str:
        n = self.unpack("Q", what)
        if n > MAX_STRING_BYTES:
            raise _fail(self.path, f"{what}: string of {n} bytes (at most {MAX_STRING_BYTES} allowed)")
        try:
            return bytes(self.take(n, what)).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(self.path, f"{what} is not valid UTF-8") from None

    def value(self, vtype: int, what: str) -> tuple[Any, VT | None]:
        """A value of type `vtype`, and its element type when it is an array."""
        if vtype == VT.STRING:
            return self.string(what), None
        if vtype == VT.ARRAY:
            sub, n = self.unpack("IQ", what)
            if sub == VT.ARRAY or sub not in VT._value2member_map_:
                raise _fail(self.path, f"{what}: bad array element type {sub}")
            item = 8 if sub == VT.STRING else struct.calcsize(SCALAR_FORMAT[VT(sub)])  # a string's length field
            if n > MAX_ARRAY_ITEMS or n * item > self.left:
                raise _fail(self.path, f"{what}: array of {n} elements cannot fit ({self.left} bytes left, "
                                       f"at most {MAX_ARRAY_ITEMS} elements allowed)")
            if sub == VT.STRING:
                return [self.string(what) for _ in range(n)], VT.STRING
            fmt = SCALAR_FORMAT[VT(sub)]
            return list(struct.unpack(f"<{n}{fmt}", self.take(n * item, what))), VT(sub)
        if vtype not in VT._value2member_map_:
            raise _fail(self.path, f"{what}: unknown value type {vtype}")
        return self.unpack(SCALAR_FORMAT[VT(vtype)], what), None


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse and validate a GGUF file's header, metadata (types per `gguf_schema`) and tensor infos (data is not read)."""
    path = Path(path)
    with open(path, "rb") as fh:
        size = path.stat().st_size
        if size < HEADER_BYTES:
            raise _fail(path, f"{size} bytes, too short for a GGUF header")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(_Cursor(buf, path), size)


def _metadata(c: _Cursor, n_kv: int) -> tuple[dict[str, Any], dict[str, VT], dict[str, VT]]:
    kv: dict[str, Any] = {}
    kv_types: dict[str, VT] = {}
    kv_subtypes: dict[str, VT] = {}
    for i in range(n_kv):
        key = c.string(f"metadata key {i}")
        vtype = c.unpack("I", f"type of {key}")
        if key in kv:
            raise _fail(c.path, f"duplicate metadata key {key}")
        kv[key], sub = c.value(vtype, key)
        kv_types[key] = VT(vtype)
        if sub is not None:
            kv_subtypes[key] = sub
    problems = metadata_problems(kv, kv_types, kv_subtypes)
    if problems:
        raise _fail(c.path, "; ".join(problems))
    return kv, kv_types, kv_subtypes


def _tensor_info(c: _Cursor, i: int, alignment: int) -> TensorInfo:
    path = c.path
    name = c.string(f"tensor info {i}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise _fail(path, f"tensor info {i}: name of {len(name.encode())} bytes (at most {MAX_NAME_BYTES})")
    n_dims = c.unpack("I", f"tensor {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise _fail(path, f"{n_dims} dimensions", name)
    ne = c.unpack(f"{n_dims}Q", f"tensor {name}")
    ne = (ne,) if n_dims == 1 else tuple(ne)
    if max(ne) > MAX_NE:
        raise _fail(path, f"dimension {max(ne)} is out of range", name)
    code, offset = c.unpack("IQ", f"tensor {name}")
    t = GGML_TYPES_BY_CODE.get(code)
    if t is None:
        raise _fail(path, f"unknown ggml type {code}", name)
    if ne[0] % t.block:
        raise _fail(path, f"row length {ne[0]} is not a multiple of {t.name}'s block {t.block}", name)
    if offset % alignment:
        raise _fail(path, f"offset {offset} not aligned to {alignment}", name)
    return TensorInfo(name, tuple(reversed(ne)), t.name, offset)


def _parse(c: _Cursor, size: int) -> GGUFHeader:
    path = c.path
    if bytes(c.take(4, "magic")) != GGUF_MAGIC:
        raise _fail(path, "not a GGUF file (bad magic)")
    version, n_tensors, n_kv = c.unpack("IQQ", "header")
    if version != GGUF_VERSION:
        raise _fail(path, f"GGUF version {version}, only {GGUF_VERSION} is supported")
    if n_tensors > size or n_kv > size:  # then each entry is read from the bytes left: a list never outgrows the file
        raise _fail(path, f"header claims {n_tensors} tensors and {n_kv} keys, impossible for {size} bytes")
    kv, kv_types, kv_subtypes = _metadata(c, n_kv)
    alignment = int(kv.get("general.alignment", DEFAULT_ALIGNMENT))  # a UINT32 power of two: checked by the schema
    tensors = [_tensor_info(c, i, alignment) for i in range(n_tensors)]
    data_offset = pad(c.pos, alignment)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise _fail(path, "duplicate tensor names")
    end = data_offset
    for t in sorted(tensors, key=lambda t: t.offset):
        if data_offset + t.offset < end:
            raise GGUFError(f"tensor {t.name} overlaps the previous tensor", path=str(path), show_path=path.name, tensor=t.name, show_tensor="")
        end = data_offset + t.offset + t.nbytes
    if end > size:
        raise _fail(path, f"tensor data ends at byte {end}, file has {size} bytes (truncated?)")
    return GGUFHeader(path, version, kv, kv_types, tensors, alignment, data_offset, size, kv_subtypes=kv_subtypes)


def split_set(first: str | Path) -> list[Path]:
    """All files of the set `first` belongs to (by llama.cpp's naming), or just `first` for a single file."""
    first = Path(first)
    m = SPLIT_RE.match(first.name)
    if not m:
        return [first]
    no, count = int(m["no"]), int(m["count"])
    if not 1 <= no <= count:
        raise _fail(first, f"the file name says part {no} of {count} (parts are numbered 1..count)")
    return [first.with_name(n) for n in split_names(m["prefix"], count)]


def is_gguf_path(path: str | Path) -> bool:
    """A .gguf file, or a directory holding .gguf files and no config.json."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".gguf"
    return p.is_dir() and not (p / "config.json").exists() and any(p.glob("*.gguf"))


def resolve_split_set(path: str | Path) -> list[Path]:
    """The one GGUF model `path` names: a file's split set (from its first or any file), or the one set a
    directory holds. A directory with none, or with several models, is refused (never "the first file")."""
    p = Path(path)
    if p.is_file():
        return split_set(p)
    files = sorted(p.glob("*.gguf"))
    if not files:
        raise GGUFError("no .gguf file in the directory", path=str(p))
    prefixes = {(m["prefix"], m["count"]) if (m := SPLIT_RE.match(f.name)) else (f.name, "1") for f in files}
    if len(prefixes) != 1:
        raise GGUFError(f"holds {len(prefixes)} GGUF models ({', '.join(sorted(x for x, _ in prefixes))}); name one file",
                        path=str(p))
    return split_set(files[0])
