"""The CLI's one catch: each exception class maps to one exit code and one line on stderr; `--json` failures print
exactly one JSON document; DSHUB_DEBUG adds the traceback; commands hold no error handling of their own."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from dshub import constants, errors
from dshub.cli import COMMANDS, checkpoint, error_table
from dshub.cli.error_table import ERRORS, exit_code
from dshub.quant.registry import Registry, UnknownName

ROOT = Path(__file__).resolve().parents[2]

DSHUB_ERRORS = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.DshubError)]


DATA = {"path": "model-00001-of-00002.safetensors", "tensor": "model.embed_tokens.weight", "expected": 1, "actual": 2,
        "needed": 3, "free": 1, "reasons": ["r"], "alternatives": ["a"]}


def make(cls: type[errors.DshubError]) -> errors.DshubError:
    """An instance of any dshub error class, with the data its constructor takes."""
    params = inspect.signature(cls.__init__).parameters
    return cls("something failed", **{k: v for k, v in DATA.items() if k in params})


# ------------------------------------------------------------------------------------------------ the table itself
@pytest.mark.parametrize("cls", DSHUB_ERRORS, ids=lambda c: c.__name__)
def test_every_dshub_error_exits_with_its_own_code(cls):
    assert exit_code(make(cls)) == cls.exit_code


def test_exit_codes_of_the_table():
    assert exit_code(errors.DshubError("x")) == 1
    assert exit_code(errors.UsageError("x")) == 2 and exit_code(errors.PolicyError("x")) == 2
    assert exit_code(errors.GatedRepo("x")) == 1  # a HubError and a PermissionError: the dshub row comes first
    assert exit_code(UnknownName("codec", "Q9_X", ["Q4_0", "Q8_0"])) == 2
    for e in (FileNotFoundError(2, "No such file or directory", "x"), PermissionError(13, "Permission denied", "x"),
              IsADirectoryError(21, "Is a directory", "x")):
        assert exit_code(e) == 1
    assert exit_code(KeyboardInterrupt()) == 130
    assert exit_code(typer.BadParameter("x")) is None  # typer's own: typer prints it and exits 2
    assert exit_code(typer.Exit(3)) is None
    assert exit_code(RuntimeError("a bug")) is None  # not in the table: keeps its traceback


def test_subclass_rows_come_before_their_base():
    for i, earlier in enumerate(ERRORS):
        for later in ERRORS[i + 1:]:
            assert not issubclass(later.kind, earlier.kind), f"{later.kind.__name__} is shadowed by {earlier.kind.__name__}"


def test_commands_hold_no_error_handling():
    for name, fn in COMMANDS:
        src = inspect.getsource(fn)
        assert "guarded" not in src and "except" not in src, name
    assert not hasattr(error_table, "guarded")


# ------------------------------------------------------------------------------------------------ through the CLI
CASES = [
    (errors.ScaleError("weight_scale_inv missing", path="model-00001-of-00002.safetensors", tensor="w"), 1),
    (errors.UsageError("--quant Q9: unknown"), 2),
    (UnknownName("GGUF type", "Q9_X", ["Q4_0", "Q8_0"]), 2),
    (FileNotFoundError(2, "No such file or directory", "/nowhere/config.json"), 1),
    (PermissionError(13, "Permission denied", "/root/x"), 1),
    (IsADirectoryError(21, "Is a directory", "/tmp"), 1),
    (KeyboardInterrupt(), 130),
]


@pytest.fixture
def raising(monkeypatch):
    """Make `dshub info` raise `exc` from inside the library call."""
    def arm(exc: BaseException) -> None:
        def boom(path):
            raise exc
        monkeypatch.setattr(checkpoint, "checkpoint_info", boom)
    return arm


@pytest.mark.parametrize("exc,code", CASES, ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else str(x))
def test_cli_maps_each_error_to_its_exit_code_and_one_line(cli, raising, tmp_path, exc, code):
    raising(exc)
    r = cli("info", tmp_path)
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output and r.stdout == ""
    if isinstance(exc, OSError):
        assert lines[0] == f"error: {exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyboardInterrupt):
        assert lines[0] == "error: interrupted"
    else:
        assert lines[0] == f"error: {exc}"


@pytest.mark.parametrize("exc,code", CASES, ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else str(x))
def test_json_failure_prints_exactly_one_document(cli, raising, tmp_path, exc, code):
    raising(exc)
    r = cli("info", tmp_path, "--json")
    assert r.exit_code == code
    doc = json.loads(r.stdout)  # one document, nothing else on stdout
    assert doc["ok"] is False and doc["error"]["exit_code"] == code and doc["error"]["type"] == type(exc).__name__
    assert r.stderr.strip().splitlines()[0] == "error: " + doc["error"]["message"]


def test_json_failure_document_carries_the_errors_data(cli, raising, tmp_path):
    raising(errors.ScaleError("weight_scale_inv missing", path="model-00001-of-00002.safetensors", tensor="w"))
    err = json.loads(cli("info", tmp_path, "--json").stdout)["error"]
    assert err["path"] == "model-00001-of-00002.safetensors" and err["tensor"] == "w" and err["detail"] == "weight_scale_inv missing"
    assert err["message"] == "model-00001-of-00002.safetensors: tensor w: weight_scale_inv missing"


def test_a_real_failure_with_json(cli, tmp_path):
    r = cli("info", tmp_path / "missing", "--json")
    assert r.exit_code == 1 and "Traceback" not in r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and str(tmp_path / "missing") in doc["error"]["message"]


def test_a_command_that_printed_its_document_prints_no_second_one(cli):
    r = cli("plan", "deepseek-r1", "--gpu", "h100", "--json")  # the refused plan is the document
    assert r.exit_code == 1
    assert json.loads(r.stdout)["chosen"] is None


def test_usage_error_with_json(cli):
    r = cli("plan", "deepseek-v3", "--nodes", "0", "--json")  # typer's own range check: exit 2, typer's message
    assert r.exit_code == 2 and "Traceback" not in r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["error"]["exit_code"] == 2 and "--nodes" in doc["error"]["message"]
    r = cli("plan", "deepseek-v3", "--nodes", "0")
    assert r.exit_code == 2 and r.stdout == ""


def test_dshub_debug_adds_the_traceback(cli, raising, tmp_path, monkeypatch):
    raising(errors.ConfigError("required field 'hidden_size' is missing", path="config.json"))
    assert "Traceback" not in cli("info", tmp_path).stderr
    monkeypatch.setattr(constants, "DSHUB_DEBUG", True)
    r = cli("info", tmp_path)
    assert r.exit_code == 1 and "Traceback" in r.stderr and "ConfigError" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: config.json: required field 'hidden_size' is missing"


def test_a_bug_keeps_its_traceback(cli, raising, tmp_path):
    raising(RuntimeError("a bug"))
    r = cli("info", tmp_path)
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)  # not swallowed into a one-line message


def test_unknown_registry_name_message_lists_the_known_ones(cli, raising, tmp_path):
    reg: Registry[str, int] = Registry("model family")
    reg.add("deepseek_v3", 1)
    with pytest.raises(UnknownName) as e:
        reg.get("llama")
    raising(e.value)
    r = cli("info", tmp_path)
    assert r.exit_code == 2 and "unknown model family 'llama'; known: deepseek_v3" in r.stderr


def test_console_script_exit_codes(tmp_path):
    """`python -m dshub.cli`: the same codes outside CliRunner (0 ok, 1 failure + JSON document, 2 usage)."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "dshub.cli", *map(str, a)], capture_output=True, text=True,
                                    timeout=300, cwd=ROOT)
    r = run("info", tmp_path / "missing", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False and r.stderr.startswith("error: "), r.stderr
    r = run("info")
    assert r.returncode == 2 and "Missing argument" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and all(name in r.stdout for name, _ in COMMANDS)
