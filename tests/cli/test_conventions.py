"""CLI conventions (issue 17, item 7): `--version`, `-h`, shell completion, an Examples block in every command's help
(each example parses), no `<bool>` placeholders, case-insensitive choices, "did you mean" for near misses."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import typer

from dshub import __version__
from dshub.cli import COMMANDS, app
from dshub.cli.examples import EXAMPLES
from tests.support.tools import REPO_ROOT

NAMES = [name for name, _ in COMMANDS]


def test_version(cli):
    for flag in ("--version", "-V"):
        r = cli(flag)
        assert r.exit_code == 0 and r.stdout.strip() == f"dshub {__version__}"


@pytest.mark.parametrize("name", [None, *NAMES])
def test_short_help_and_no_bool_placeholders(cli, name):
    args = [name] if name else []
    r = cli(*args, "-h")
    assert r.exit_code == 0 and "Usage: dshub" in r.stdout
    assert "<bool>" not in r.stdout
    assert r.stdout == cli(*args, "--help").stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_examples_that_parse(cli, name):
    assert EXAMPLES.get(name), f"{name}: no Examples block (dshub/cli/examples.py)"
    help_text = cli(name, "--help").stdout
    assert "Examples:" in help_text
    command = typer.main.get_command(app).commands[name]
    for line in EXAMPLES[name]:
        words = [w for w in shlex.split(line, comments=True) if "=" not in w or w.startswith("-")]
        assert words[:2] == ["dshub", name], line
        command.make_context(name, words[2:])  # the example parses: known options, valid values, required arguments


def test_shell_completion_completes_commands():
    env = {**os.environ, "_DSHUB_COMPLETE": "complete_bash", "COMP_WORDS": "dshub pl", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-c", "from dshub.cli import app; app(prog_name=\"dshub\")"], env=env, capture_output=True,
                       text=True, timeout=120, cwd=REPO_ROOT)
    assert r.returncode == 0 and r.stdout.split() == ["plan"], r.stdout + r.stderr
    env["COMP_WORDS"], env["COMP_CWORD"] = "dshub recipe x --form", "3"
    r = subprocess.run([sys.executable, "-c", "from dshub.cli import app; app(prog_name=\"dshub\")"], env=env, capture_output=True,
                       text=True, timeout=120, cwd=REPO_ROOT)
    assert "--format" in r.stdout.split()


def test_completion_script_for_bash():
    """What `dshub --install-completion` installs (the shell is detected there; here it is named)."""
    env = {**os.environ, "_DSHUB_COMPLETE": "source_bash"}
    r = subprocess.run([sys.executable, "-c", "from dshub.cli import app; app(prog_name='dshub')"], env=env,
                       capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert r.returncode == 0 and "_dshub_completion" in r.stdout and "complete_bash" in r.stdout, r.stderr


def test_choices_are_case_insensitive(cli):
    r = cli("plan", "deepseek-v3.1", "--gpu", "H200", "--engine", "SGLang", "--goal", "Throughput", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["engine"] == "sglang" and doc["goal"] == "throughput"
    r = cli("recipe", "deepseek-r1", "--format", "JSON")
    assert r.exit_code == 0 and json.loads(r.stdout)["engine"] == "vllm"


@pytest.mark.parametrize("args,guess", [
    (("recipe", "deepseek-r1", "--format", "compse"), "compose"),
    (("plan", "deepseek-r1", "--engine", "vlm"), "vllm"),
    (("plan", "deepseek-r1", "--gpu", "h2000"), "h200"),
    (("plan", "deepseek-r11"), "deepseek-r1"),
    (("synth", "x", "--preset", "tinyy"), "tiny"),
])
def test_near_misses_get_did_you_mean(cli, tmp_path, args, guess):
    r = cli(*args)
    assert r.exit_code == 2 and f"did you mean {guess!r}?" in r.stderr
    doc = json.loads(cli(*args, "--json").stdout)
    assert doc["error"]["message"].endswith(f"did you mean {guess!r}?")


def test_far_misses_get_no_guess(cli):
    r = cli("plan", "deepseek-r1", "--gpu", "zzz")
    assert r.exit_code == 2 and "did you mean" not in r.stderr and "known:" in r.stderr


def test_convert_help_groups_each_targets_options(cli):
    """--help lists the INT4, GGUF and ONNX options under their own headings, each option under its target's."""
    help_text = cli("convert", "--help").stdout
    sections: dict[str, str] = {}
    title = None
    for line in help_text.splitlines():
        if line.startswith("╭─"):
            title = line.strip("╭─╮ ").rstrip("─ ")
            sections[title] = ""
        elif title:
            sections[title] += line + "\n"
    assert "--group-size" in sections["INT4 options (--to int4)"] and "--quant" not in sections["INT4 options (--to int4)"]
    assert "--quant" in sections["GGUF options (--to gguf)"] and "--imatrix" in sections["GGUF options (--to gguf)"]
    assert "--precision" in sections["ONNX options (--to onnx)"]
    assert "--out" in sections["Options"] and "--quant" not in sections["Options"]
