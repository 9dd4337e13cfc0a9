"""Kill a conversion mid-run: start it, SIGKILL it once its manifest exists, until a try leaves it unfinished."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dshub.constants import MANIFEST_NAME


def kill_mid_run(cmd: list[str], out: Path, finished: str, tries: int = 8) -> None:
    """Run `cmd` (writing into `out`) and kill it after it started writing; a try that got as far as the file
    `finished` (written last) is discarded and repeated. Fails the test when no try could be interrupted."""
    for _ in range(tries):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (out / MANIFEST_NAME).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (out / finished).exists():
            return
        shutil.rmtree(out)
    pytest.fail("could not interrupt the conversion mid-run")
