"""Structural verification (`dshub verify`): findings, checks per format (safetensors, GGUF), one dispatcher
(`verify`), and the converters' preflight (`require_valid`)."""
from __future__ import annotations

from pathlib import Path

from dshub.checkpoint.reader import Checkpoint
from dshub.errors import CheckpointError
from dshub.checks.safetensors import verify_checkpoint
from dshub.checks.findings import Finding, VerifyReport
from dshub.formats.gguf_file import is_gguf_path
from dshub.checks.gguf import verify_gguf

__all__ = ["Finding", "VerifyReport", "verify", "require_valid"]


def verify(path: str | Path, *, deep: bool = False) -> VerifyReport:
    """Verify a checkpoint directory, a GGUF file or a GGUF split set (plus value scans with `deep`).
    Never raises for a bad input: reports it."""
    if is_gguf_path(path):
        return verify_gguf(path, deep=deep)
    return verify_checkpoint(path, deep=deep)


def require_valid(path: str | Path) -> Checkpoint:
    """Preflight for converters: verify structurally and raise the first error as CheckpointError."""
    report = verify(path)
    errors = [f for f in report.findings if f.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; run `dshub verify {path}`)" if len(errors) > 1 else ""
        raise CheckpointError(f"{first.message}{more}", path=first.file, tensor=first.tensor)
    return report.checkpoint or Checkpoint.open(path)
