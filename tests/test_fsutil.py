"""The writer that hashes on a second thread: the digest is the file's, whatever the write sizes; a failure inside the
block leaves no file and no thread behind."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from dshub.fsutil import HashedWriter, hashed_atomic_open, tmp_name


def test_digest_is_the_files_whatever_the_write_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 1, 7, HashedWriter.SLICE * 3 + 5, 4096, 1)]
    parts.append(rng.standard_normal(1000).astype(np.float32))  # multi-byte items are hashed as their bytes
    path = tmp_path / "out.bin"
    with hashed_atomic_open(path) as f:
        for p in parts:
            assert f.write(p) == p.nbytes
            del p  # the writer keeps what it still has to hash alive
    data = path.read_bytes()
    assert f.size == len(data) == sum(p.nbytes for p in parts)
    assert f.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_failure_leaves_no_file_and_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="producer failed"):
        with hashed_atomic_open(path) as f:
            f.write(b"x" * (HashedWriter.SLICE * 6))  # more than the queue holds: the hash thread is busy
            raise RuntimeError("producer failed")
    assert not path.exists() and not tmp_name(path).exists()
    assert "sha256" not in {t.name for t in threading.enumerate()} - before
