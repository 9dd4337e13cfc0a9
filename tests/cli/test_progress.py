"""Progress on long steps (issue 17, item 7): bytes, rate and ETA on stderr when it is a terminal, nothing when it is
not (CI logs stay clean); stdout keeps only the result."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import subprocess
import sys

from tests.support.tools import REPO_ROOT


def run_on_a_tty(*args: str) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 0-column terminal shows no bar
    proc = subprocess.Popen([sys.executable, "-m", "dshub.cli", *args], stdout=subprocess.PIPE, stderr=slave,
                            cwd=REPO_ROOT, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = proc.stdout.read().decode()
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


def test_verify_deep_shows_rate_and_eta_on_a_terminal(tiny_ckpt):
    code, out, shown = run_on_a_tty("verify", str(tiny_ckpt), "--deep")
    assert code == 0 and "verify --deep" in shown and "B/s" in shown and "<" in shown  # tqdm's elapsed<remaining
    assert "verify --deep" not in out


def test_verify_deep_is_quiet_when_stderr_is_not_a_terminal(tiny_ckpt):
    r = subprocess.run([sys.executable, "-m", "dshub.cli", "verify", str(tiny_ckpt), "--deep"], capture_output=True,
                       text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 0 and r.stderr == ""


def test_synth_shows_progress_on_a_terminal_and_nothing_otherwise(tmp_path):
    code, out, shown = run_on_a_tty("synth", str(tmp_path / "tty"), "--preset", "tiny")
    assert code == 0 and "synth tiny" in shown and "B/s" in shown and "<" in shown
    assert "synth tiny" not in out
    r = subprocess.run([sys.executable, "-m", "dshub.cli", "synth", str(tmp_path / "pipe"), "--preset", "tiny"],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 0 and r.stderr == ""
    assert (tmp_path / "pipe" / "config.json").exists()
