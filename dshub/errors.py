"""Every error dshub raises on purpose. Each carries its data and maps to a CLI exit code.

An error's text is composed from its fields, `FILE: tensor TENSOR: DETAIL` (each part only when set), never
formatted into the message at the raise site: `ScaleError("not finite and positive", path=shard, tensor=name)`.
"""
from __future__ import annotations

import os


class DshubError(Exception):
    """Base of all dshub errors. `exit_code` is what the CLI returns for it.

    Fields: `detail` (what is wrong, and what to do about it), `path` (the file or directory at fault, as the program
    found it), `tensor` (the tensor at fault). How the message names them, when not `PATH` and `tensor TENSOR`:
    `show_path` (e.g. the shard's base name, or `--out DIR`) and `show_tensor` (e.g. `tensor X -> blk.0.attn_q`);
    an empty string leaves that part out, for a detail whose own words name it.
    """

    exit_code = 1

    def __init__(self, detail: str, *, path: str | os.PathLike[str] | None = None, tensor: str | None = None,
                 show_path: str | None = None, show_tensor: str | None = None):
        self.detail = detail
        self.path = path
        self.tensor = tensor
        self.show_path = show_path
        self.show_tensor = show_tensor
        super().__init__(detail)

    @property
    def where(self) -> tuple[str, ...]:
        """How the message names the file and the tensor: the parts in front of the detail."""
        file = str(self.path) if self.show_path is None and self.path is not None else self.show_path
        tensor = f"tensor {self.tensor}" if self.show_tensor is None and self.tensor else self.show_tensor
        return tuple(part for part in (file, tensor) if part)

    def __str__(self) -> str:
        return ": ".join(part for part in (*self.where, self.detail) if part)


class UsageError(DshubError, ValueError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class CheckpointError(DshubError, ValueError):
    """A checkpoint directory or file is malformed."""


class HeaderError(CheckpointError):
    """A safetensors header breaks the format's rules."""


class ShardTruncated(CheckpointError):
    """A shard is shorter (or longer) than its header says."""

    def __init__(self, detail: str, *, path: str, expected: int, actual: int, **where: str | None):
        super().__init__(detail, path=path, **where)
        self.expected = expected
        self.actual = actual


class IndexError_(CheckpointError):
    """`model.safetensors.index.json` disagrees with the shards or escapes the directory."""


class ConfigError(CheckpointError):
    """config.json is missing or lacks a field the architecture needs."""


class PickleRefused(CheckpointError):
    """A `.bin`/`.pt` pickle file was found; dshub never unpickles model files."""


class ScaleError(CheckpointError):
    """A block-FP8 weight's `weight_scale_inv` is missing, mis-shaped or not finite and positive."""


class UnsupportedArchitecture(CheckpointError):
    """No ArchSpec is registered for config.json's `architectures`."""


class OutputError(DshubError, OSError):
    """The output cannot be written (bad location, disk full, ...)."""


class DiskSpaceError(OutputError):
    """Not enough free disk space for the planned output."""

    def __init__(self, detail: str, *, path: str, needed: int, free: int, **where: str | None):
        super().__init__(detail, path=path, **where)
        self.needed = needed
        self.free = free


class DeviceError(DshubError, RuntimeError):
    """The requested compute device is not usable."""


class HubError(DshubError, RuntimeError):
    """A hub request or download failed."""


# ---- hub / download (issue 3) ----
class RepoNotFound(HubError, LookupError):
    """The repository does not exist (or is private and no valid token was sent)."""


class GatedRepo(HubError, PermissionError):
    """The repository is gated or the token was refused."""


class RevisionNotFound(HubError, LookupError):
    """The branch, tag or commit does not exist in the repository."""


class RemoteFileMissing(HubError, LookupError):
    """A file listed for download is missing on the hub."""


class HubUnreachable(HubError, ConnectionError):
    """The hub cannot be reached (network down, or HF_HUB_OFFLINE set with files still missing)."""


class SourceUnavailable(HubError):
    """The requested source needs an optional package that is not installed."""


class HubMetadataRefused(HubError, CheckpointError):
    """A hub-supplied value (commit id, digest, size, file path) that dshub will not use: malformed or hostile."""


class TokenRejected(HubError, PermissionError):
    """HTTP 401: the hub wants a token and none was sent, or the one sent was rejected."""


class FileForbidden(HubError, PermissionError):
    """HTTP 403 on one file: gated, or the token lacks access to it."""


class ListingTooLong(HubError):
    """The hub's file listing did not end within dshub's page bound (a misbehaving or hostile server)."""


class HashMismatch(CheckpointError):
    """A file's sha256 (or git blob sha1) differs from what the hub or the download manifest records."""

    def __init__(self, detail: str, *, path: str, expected: str, actual: str, **where: str | None):
        super().__init__(detail, path=path, **where)
        self.expected = expected
        self.actual = actual


class GGUFError(CheckpointError):
    """A GGUF file or split set is malformed, incomplete or disagrees with its architecture."""


class QuantizationError(DshubError, ValueError):
    """A weight cannot be quantized or packed as asked (shape not divisible, scale out of range)."""


class PlanRefused(DshubError, ValueError):
    """The memory planner found no parallel layout that works for the request (recipes/planner.py)."""

    def __init__(self, detail: str, *, reasons: list[str], alternatives: list[str]):
        super().__init__(detail)
        self.reasons = reasons
        self.alternatives = alternatives


class PolicyError(UsageError):
    """A GGUF quantization policy (file, preset or --target-size) cannot be applied to this model (exit 2)."""


class ServedWrongSize(HubError):
    """A server's answer cannot be the listed file: wrong length or range (an HTML page, an LFS pointer, a mirror's error)."""


class PipelineError(UsageError):
    """A pipeline file (`dshub run`) is malformed: the message names the file and line (exit 2)."""


class StepFailed(DshubError, RuntimeError):
    """A pipeline step ran and failed (a verify step's findings, a download left incomplete); exit 1."""


class ExecutorError(DshubError, RuntimeError):
    """The executor cannot run the work as asked: a cluster unreachable, a node that cannot see the shared directory."""
