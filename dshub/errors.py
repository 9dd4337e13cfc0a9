"""Every error dshub raises on purpose. Each carries its data and maps to a CLI exit code."""
from __future__ import annotations


class DshubError(Exception):
    """Base of all dshub errors. `exit_code` is what the CLI returns for it."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, tensor: str | None = None):
        self.path = path
        self.tensor = tensor
        super().__init__(message)


class UsageError(DshubError, ValueError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class CheckpointError(DshubError, ValueError):
    """A checkpoint directory or file is malformed."""


class HeaderError(CheckpointError):
    """A safetensors header breaks the format's rules."""


class ShardTruncated(CheckpointError):
    """A shard is shorter (or longer) than its header says."""

    def __init__(self, message: str, *, path: str, expected: int, actual: int):
        super().__init__(message, path=path)
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

    def __init__(self, message: str, *, path: str, needed: int, free: int):
        super().__init__(message, path=path)
        self.needed = needed
        self.free = free


class DeviceError(DshubError, RuntimeError):
    """The requested compute device is not usable."""


class HubError(DshubError, RuntimeError):
    """A hub request or download failed."""
