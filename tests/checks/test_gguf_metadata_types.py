"""GGUF metadata of the wrong type or value: `verify`, `info` and `plan` exit 1 with one line naming the file and
the key, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dshub.checks import verify
from dshub.formats.gguf_file import VT
from tests.support.gguf_files import with_kv

CASES: dict[str, tuple[str, VT, Any, VT | None, str]] = {
    "alignment-string": ("general.alignment", VT.STRING, "32", None, "is STRING, the spec says UINT32"),
    "alignment-array": ("general.alignment", VT.ARRAY, [32], VT.UINT32, "is ARRAY, the spec says UINT32"),
    "alignment-0": ("general.alignment", VT.UINT32, 0, None, "is 0, the spec says a power of two > 0"),
    "alignment-3": ("general.alignment", VT.UINT32, 3, None, "is 3, the spec says a power of two > 0"),
    "block-count-string": ("deepseek2.block_count", VT.STRING, "2", None, "is STRING, the spec says UINT32"),
    "block-count-huge": ("deepseek2.block_count", VT.UINT32, 2**32 - 1, None, "is 4294967295, the spec says 1..512"),
    "expert-count-huge": ("deepseek2.expert_count", VT.UINT32, 2**32 - 1, None, "is 4294967295, the spec says <= 512"),
    "split-count-string": ("split.count", VT.STRING, "1", None, "is STRING, the spec says UINT16"),
    "tokens-of-ints": ("tokenizer.ggml.tokens", VT.ARRAY, [1, 2], VT.INT32, "is an ARRAY of INT32, the spec says ARRAY of STRING"),
    "architecture-int": ("general.architecture", VT.UINT32, 2, None, "is UINT32, the spec says STRING"),
}


@pytest.fixture(params=sorted(CASES))
def bad(request: pytest.FixtureRequest, tiny_gguf: Path, tmp_path: Path) -> tuple[Path, str]:
    key, vtype, value, sub, why = CASES[request.param]
    return with_kv(tiny_gguf, tmp_path / "F.gguf", key, vtype, value, sub), f"F.gguf: metadata {key} {why}"


def test_verify_reports_file_and_key(bad: tuple[Path, str], cli) -> None:
    path, message = bad
    errors = [f for f in verify(path).findings if f.severity == "error"]
    assert [(f.check, f.file, f.message) for f in errors] == [("gguf-header", "F.gguf", message.removeprefix("F.gguf: "))]
    res = cli("verify", path)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert [line for line in res.output.splitlines() if line.startswith("error:")] == [f"error: {message}"]
    res = cli("verify", path, "--json")
    assert res.exit_code == 1
    assert [f["message"] for f in json.loads(res.stdout)["findings"]] == [message.removeprefix("F.gguf: ")]


@pytest.mark.parametrize("command", [("info",), ("plan",), ("plan", "--engine", "llamacpp")])
def test_info_and_plan_exit_1_with_one_line(bad: tuple[Path, str], cli, command: tuple[str, ...]) -> None:
    path, message = bad
    res = cli(command[0], path, *command[1:])
    assert res.exit_code == 1, res.output
    assert res.output.splitlines() == [f"error: {message}"]


def test_the_untouched_file_passes(tiny_gguf: Path, cli) -> None:
    assert verify(tiny_gguf).ok
    assert cli("info", tiny_gguf).exit_code == 0
    assert cli("plan", tiny_gguf, "--engine", "llamacpp").exit_code == 0


def test_a_per_layer_array_the_family_cannot_read(tiny_gguf: Path, tmp_path: Path, cli) -> None:
    """The spec allows `feed_forward_length` as a per-layer array; deepseek2's mapping reads one UINT32: a finding in
    verify, one line in plan, and info (which only shows it) still works."""
    path = with_kv(tiny_gguf, tmp_path / "F.gguf", "deepseek2.feed_forward_length", VT.ARRAY, [64, 64], VT.UINT32)
    message = "metadata deepseek2.feed_forward_length is ARRAY, the deepseek2 mapping reads UINT32"
    errors = [(f.check, f.file, f.message) for f in verify(path).findings if f.severity == "error"]
    assert errors == [("gguf-architecture", "F.gguf", message)]
    res = cli("plan", path, "--engine", "llamacpp")
    assert res.exit_code == 1 and res.output.splitlines() == [f"error: F.gguf: {message}"]
    res = cli("info", path, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["hparams"]["feed_forward_length"] == [64, 64]


@pytest.mark.parametrize("key, value", [
    ("general.name", "[bold red]x[/] \x1b[2J\x1b]0;owned\x07 line\nbreak"),
    ("general.architecture", "[/]deepseek2\r"),
    ("tokenizer.ggml.pre", "[link=file:///etc]pre[/link]\x9b31m"),
])
def test_info_prints_markup_and_control_characters_verbatim(tiny_gguf: Path, tmp_path: Path, cli, key: str, value: str) -> None:
    path = with_kv(tiny_gguf, tmp_path / "F.gguf", key, VT.STRING, value)
    res = cli("info", path)
    assert res.exit_code == 0, res.output
    assert not any(c in res.output for c in "\x1b\x07\r\x9b")
    shown = value.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\n", "\\x0a").replace("\r", "\\x0d").replace("\x9b", "\\x9b")
    assert all(part in res.output for part in shown.split()), res.output  # rich may wrap the line at a space


@pytest.mark.parametrize("name, part, count", [("x-00001-of-00000.gguf", 1, 0), ("x-00000-of-00002.gguf", 0, 2),
                                               ("x-00003-of-00002.gguf", 3, 2)])
def test_split_file_names_outside_their_set(tiny_gguf: Path, tmp_path: Path, cli, name: str, part: int, count: int) -> None:
    path = tmp_path / name
    path.write_bytes(tiny_gguf.read_bytes())
    message = f"{name}: the file name says part {part} of {count} (parts are numbered 1..count)"
    report = verify(path)
    assert not report.ok and [(f.file, f.message) for f in report.findings] == [(name, message.removeprefix(f"{name}: "))]
    for command in (("verify",), ("info",), ("plan", "--engine", "llamacpp")):
        res = cli(command[0], path, *command[1:])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert f"error: {message}" in res.output.splitlines()
