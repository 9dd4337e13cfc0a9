"""Typed options per conversion target: pydantic models with `extra="forbid"`, built once (from the CLI or from
Python), validated before any work, frozen so no converter can change them.

`dshub.convert(path, Int4Options(out=..., group_size=64))` and `dshub convert PATH --to int4 --group-size 64` build
the same object. Sizes such as `--split-max-size 50G` are parsed here, once; converters read typed fields only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dshub.arch.family import SCOPE_NAMES
from dshub.errors import UsageError
from dshub.quant.device import DEVICES
from dshub.quant.backends import BACKENDS
from dshub.quant.int4 import GROUP_SIZES, Int4Error, scheme_for
from dshub.quant.registry import Registry

SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}  # decimal, as llama.cpp's gguf-split


def parse_size(text: str | int, option: str = "--split-max-size") -> int:
    """'50G', '500M', '1.5T' or a byte count -> bytes (decimal units, as llama.cpp)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m:
        raise ValueError(f"{option} {text!r}: expected a size like 50G, 500M or a byte count")
    return int(float(m[1]) * SIZE_UNITS[m[2]])


def one_of(option: str, value: str, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`; else the one-line error naming the option and the choices."""
    if value not in choices:
        raise ValueError(f"{option} {value!r}: choose one of {', '.join(choices)}")
    return value


def _cli_name(field: str) -> str:
    return "--" + field.replace("_", "-")


class TargetOptions(BaseModel):
    """What every target takes. Subclasses add their own fields and name their target in `target`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target: ClassVar[str] = ""
    # Fields that change where or how fast the work runs, not the bytes written (left out of `key`).
    RUN_FIELDS: ClassVar[frozenset[str]] = frozenset({"out", "device", "workers", "dry_run", "force"})

    out: Path
    device: str = "auto"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    drop_mtp: bool = False
    dry_run: bool = False
    force: bool = False  # write into a non-empty --out that holds no dshub conversion

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return one_of("--device", v, DEVICES)

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"--workers {v}: must be at least 1")
        return v

    def key(self) -> dict[str, Any]:
        """What makes two runs produce the same bytes (the manifest compares it on resume)."""
        fields = self.model_dump(mode="json", exclude=set(self.RUN_FIELDS))
        return {"target": self.target, "drop_mtp": fields.pop("drop_mtp"), "params": dict(sorted(fields.items()))}


class Bf16Options(TargetOptions):
    """`--to bf16`: nothing beyond the common options."""

    target: ClassVar[str] = "bf16"


class Int4Options(TargetOptions):
    """`--to int4`: W4A16 group quantization and its on-disk packing."""

    target: ClassVar[str] = "int4"

    format: str = "compressed-tensors"
    group_size: int = 128
    symmetric: bool = True
    scope: str | None = None  # None: the model family's default (experts for MoE, all-linear for dense)
    ignore: tuple[str, ...] = ()

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str | None) -> str | None:
        if v is not None and v not in SCOPE_NAMES:
            raise ValueError(f"--scope {v!r}: choose one of {', '.join(SCOPE_NAMES)}")
        return v

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v not in GROUP_SIZES:
            raise ValueError(f"--group-size {v}: choose one of {', '.join(map(str, GROUP_SIZES))} (what the engines' INT4 kernels run)")
        return v

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pat in v:
            try:
                re.compile(pat)
            except re.error as e:
                raise ValueError(f"--ignore {pat!r}: not a valid regular expression ({e})") from None
        return v

    @model_validator(mode="after")
    def _storable(self) -> "Int4Options":
        try:
            scheme_for(self.format, self.group_size, self.symmetric)
        except Int4Error as e:
            raise ValueError(f"--format {self.format}: {e}") from None
        return self

    def ignore_patterns(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.ignore]


class GGUFOptions(TargetOptions):
    """`--to gguf`: a quant type or mixture, per-tensor overrides, policies, splits and an importance matrix."""

    target: ClassVar[str] = "gguf"
    # every codec backend writes the same bytes (tests/quant/gguf/test_ggml.py), so the choice is not part of `key`
    RUN_FIELDS: ClassVar[frozenset[str]] = TargetOptions.RUN_FIELDS | {"codec_backend"}

    quant: str
    codec_backend: str = "auto"
    split_max_size: int | None = None
    split_max_tensors: int | None = None
    tensor_type: tuple[str, ...] = ()
    policy: str | None = None
    target_size: int | None = None
    imatrix: Path | None = None
    mtp: bool = False
    name: str | None = None

    @field_validator("quant")
    @classmethod
    def _quant(cls, v: str) -> str:
        if not v:
            raise ValueError("--to gguf needs --quant TYPE (e.g. Q8_0, BF16)")
        return v.upper()  # the scheme registry checks the name at preflight

    @field_validator("codec_backend")
    @classmethod
    def _codec_backend(cls, v: str) -> str:
        return one_of("--codec-backend", v, BACKENDS)

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v  # a file path or a preset name

    @field_validator("split_max_size", mode="before")
    @classmethod
    def _split_size(cls, v: Any) -> Any:
        if v is None:
            return v
        n = parse_size(v)
        if n <= 0:
            raise ValueError("--split-max-size must be positive")
        return n

    @field_validator("target_size", mode="before")
    @classmethod
    def _target_size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v, "--target-size")

    @field_validator("split_max_tensors")
    @classmethod
    def _split_tensors(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise ValueError("--split-max-tensors must be positive")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "GGUFOptions":
        if self.drop_mtp and self.mtp:
            raise ValueError("--drop-mtp and --mtp contradict each other; pass one")
        return self


ONNX_PRECISIONS = ("fp32", "fp16", "int4")
NBITS_BLOCK_SIZES = (32, 64, 128)  # MatMulNBits block sizes dshub writes (powers of two >= 16 in the spec)


class ONNXOptions(TargetOptions):
    """`--to onnx`: an onnxruntime-genai decoder; weights fp32, fp16, or int4 (MatMulNBits, activations fp32)."""

    target: ClassVar[str] = "onnx"

    precision: str = "fp32"
    block_size: int = 32
    symmetric: bool = True

    @field_validator("precision", "block_size")
    @classmethod
    def _choices(cls, v: Any, info: Any) -> Any:
        choices = {"precision": ONNX_PRECISIONS, "block_size": NBITS_BLOCK_SIZES}[info.field_name]
        if v not in choices:
            raise ValueError(f"{_cli_name(info.field_name)} {v!r}: choose one of {', '.join(map(str, choices))}")
        return v


OPTIONS: Registry[str, type[TargetOptions]] = Registry("target --to")
for _cls in (Bf16Options, Int4Options, GGUFOptions, ONNXOptions):
    OPTIONS.add(_cls.target, _cls)


def _message(e: ValidationError, cls: type[TargetOptions]) -> str:
    """One line from pydantic's first error: our validators' own text, or a plain sentence naming the option."""
    err = e.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else ""
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":
        own = [_cli_name(f) for f in cls.model_fields if f not in TargetOptions.model_fields]
        return (f"--to {cls.target} does not take {field} ({_cli_name(field)}): it takes no option of that name"
                + (f"; its own are {', '.join(own)}" if own else ""))
    if err["type"] == "missing" and (cls.target, field) == ("gguf", "quant"):
        return "--to gguf needs --quant TYPE (e.g. Q8_0, BF16)"
    return f"{_cli_name(field)}: {err['msg']} (got {err.get('input')!r})" if field else str(err["msg"])


def build_options(target: str | type[TargetOptions], **values: Any) -> TargetOptions:
    """Typed options for `--to target` from keyword values (None means "not given"); UsageError when invalid."""
    cls = OPTIONS.get(target) if isinstance(target, str) else target
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as e:
        raise UsageError(_message(e, cls)) from None
