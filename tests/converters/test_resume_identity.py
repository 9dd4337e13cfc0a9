"""A resume is keyed by the input's identity and --out is locked: a changed input refuses to resume (one line naming
the shard, nothing kept as if finished), a damaged manifest is one clean line, and a second convert into a busy --out
is refused naming the holder, leaving the first one's files alone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from dshub.constants import MANIFEST_NAME, TMP_SUFFIX
from dshub.converters import build_options, run_conversion
from dshub.converters.base import LOCK_NAME
from dshub.errors import OutputError, UsageError
from dshub.hub.manifest import DownloadManifest, RemoteFile, save_manifest
from tests.support.ckpt_edit import read_shard, shard_of, write_shard

NORM = "model.norm.weight"


def error_line(stderr: str) -> str:
    """The one error line of a failed run (besides it, only notes such as the device choice)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and all(line.startswith(("error:", "note:")) for line in lines), stderr
    return errors[0]


def _convert(src: Path, out: Path) -> dict[str, Any]:
    return run_conversion(src, build_options("bf16", out=out), progress=False).to_dict()


def _same_size_new_bytes(ckpt: Path) -> str:
    """Rewrite one tensor's bytes in place: same size, same header (a re-made checkpoint with another seed)."""
    p = shard_of(ckpt, NORM)
    header, blobs = read_shard(p)
    blobs[NORM] = bytes(reversed(blobs[NORM]))
    time.sleep(0.01)
    write_shard(p, header, blobs)
    return p.name


def _same_size_new_header(ckpt: Path) -> str:
    """Same file size and mtime, a different header: one byte of the metadata changes in place."""
    p = shard_of(ckpt, NORM)
    st = p.stat()
    raw = bytearray(p.read_bytes())
    at = raw.index(b'"pt"', 8)
    raw[at + 2] = ord("x")
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the header digest can tell
    return p.name


def _hub_digest_changed(ckpt: Path) -> str:
    """The download manifest now lists another hub digest for a shard (a new revision fetched into the directory)."""
    p = shard_of(ckpt, NORM)
    files = {p.name: RemoteFile(p.name, p.stat().st_size, "ab" * 32, None)}
    save_manifest(ckpt, DownloadManifest("hf", "o/n", "main", "c" * 40, "https://huggingface.co", files))
    return p.name


CHANGES: dict[str, Callable[[Path], str]] = {
    "same-size-new-bytes": _same_size_new_bytes,
    "same-size-new-header": _same_size_new_header,
    "hub-digest-changed": _hub_digest_changed,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changed_input_refuses_to_resume(change: str, cli, tiny_copy: Path, tmp_path: Path):
    out = tmp_path / "out"
    _convert(tiny_copy, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    shard = CHANGES[change](tiny_copy)
    with pytest.raises(UsageError, match=f"input shard {shard} changed"):
        _convert(tiny_copy, out)
    r = cli("convert", tiny_copy, "--to", "bf16", "--out", out)
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = error_line(r.stderr)
    assert shard in line and "changed" in line, r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing resumed, nothing reported finished


def test_unchanged_input_resumes(tiny_copy: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = _convert(tiny_copy, out)
    again = _convert(tiny_copy, out)
    assert again["written"] == [] and again["resumed_skipped"] == first["written"]
    assert not (out / LOCK_NAME).exists()


# damaged manifest -> what is written in its place
DAMAGED: dict[str, str] = {
    "not-json": "{not json",
    "not-utf8": "\udcff",
    "a-list": "[]",
    "no-key": json.dumps({"files": {}}),
    "files-a-string": json.dumps({"key": {}, "files": "x"}),
    "record-without-size": json.dumps({"key": {}, "files": {"model-00001-of-00009.safetensors": {"sha256": "0"}}}),
    "size-a-string": json.dumps({"key": {}, "files": {"a": {"sha256": "0", "size": "12"}}}),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_manifest_is_one_clean_line(case: str, cli, tiny_ckpt: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_bytes(DAMAGED[case].encode("utf-8", "surrogateescape"))
    with pytest.raises(OutputError):
        _convert(tiny_ckpt, out)
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out)
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = error_line(r.stderr)
    assert MANIFEST_NAME in line and "damaged" in line, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME]


def _cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "bf16", "--out", str(out), "--workers", "1"]


# A real `dshub convert` whose file writes wait for a gate file: it holds --out for as long as the test needs.
GATED = """
import sys, time, pathlib
from dshub.converters.bf16 import Bf16Converter
from dshub.cli import main
gate, write = pathlib.Path(sys.argv.pop(1)), Bf16Converter.write_file
def gated(self, *args, **kw):
    while not gate.exists():
        time.sleep(0.01)
    return write(self, *args, **kw)
Bf16Converter.write_file = gated
sys.argv[0] = "dshub"
main()
"""


def test_second_convert_into_a_busy_out_is_refused(tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path):
    """Two processes: the second one is refused naming the first one's pid and deletes none of its temp files; the
    first one finishes with the right bytes."""
    out, gate = tmp_path / "busy", tmp_path / "gate"
    first = subprocess.Popen([sys.executable, "-c", GATED, str(gate), *_cmd(tiny_ckpt, out)[3:]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        lock = out / LOCK_NAME
        while not (lock.exists() and lock.read_text().strip()) and first.poll() is None and time.time() < deadline:
            time.sleep(0.01)  # the first run holds --out once its pid is in the lock file
        assert first.poll() is None and lock.read_text().strip() == str(first.pid), first.stderr.read() if first.poll() is not None else ""
        temp = out / f"model-00001-of-00009.safetensors{TMP_SUFFIX}"  # as a writer's temp file looks
        temp.write_bytes(b"in progress")
        second = subprocess.run(_cmd(tiny_ckpt, out), capture_output=True, text=True)
        assert second.returncode == 1, second.stderr
        line = error_line(second.stderr)
        assert f"pid {first.pid}" in line and "--out" in line and "Traceback" not in second.stderr, second.stderr
        assert temp.read_bytes() == b"in progress"  # the second run removed nothing of the first one's
        temp.unlink()
    finally:
        gate.touch()
        first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()
    for p in tiny_bf16.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_file_of_a_killed_run_does_not_block(tiny_ckpt: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999\n")  # left by a run killed with -9: the file stays, its lock does not
    assert _convert(tiny_ckpt, out)["written"]
    assert not (out / LOCK_NAME).exists()
