"""What verification reports: findings that name file and tensor, and the report of one run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dshub.errors import DshubError


@dataclass(frozen=True)
class Finding:
    """One problem found. `severity` is "error" (fails verification) or "warning"."""

    check: str
    severity: str
    file: str | None
    tensor: str | None
    message: str

    def __str__(self) -> str:
        where = ": ".join(x for x in (self.file, f"tensor {self.tensor}" if self.tensor else None) if x)
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class VerifyReport:
    path: str
    findings: list[Finding]
    shards: int
    tensors: int
    checks: list[str]
    checkpoint: Any = field(default=None, repr=False)  # the opened checkpoint, for callers that go on

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "shards": self.shards, "tensors": self.tensors, "checks": self.checks,
                "findings": [f.to_dict() for f in self.findings]}


def error_text(e: DshubError, *named: str | None) -> str:
    """The text of `e` for a Finding that holds the file and tensor itself: the error's detail, after those parts of
    its location that are not among `named` (a full path, say, where the finding names the file by its base name)."""
    return ": ".join((*(part for part in e.where if part not in named), e.detail))
