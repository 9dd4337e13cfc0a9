"""One JSON contract (issue 17, item 8): every `--json` command prints exactly one document, on success and on every
failure path (usage errors included), carrying schema_version and the dshub version; the JSON Schemas in
dshub/schemas/ accept the real output of every command."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dshub import __version__
from dshub.cli import COMMANDS
from tests.support.ckpt_edit import retype
from tests.support.fakehub import REPO
from tests.support.json_contract import SCHEMAS, one_document

NAMES = [name for name, _ in COMMANDS]
KV_A = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"
COVERED = ("synth", "info", "verify", "download", "convert", "plan", "recipe")


def failure(r, code: int, error_code: str | None = None) -> dict:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    doc = one_document(r)
    assert doc["ok"] is False and doc["schema_version"] == 1 and doc["dshub_version"] == __version__
    err = doc["error"]
    assert err["exit_code"] == code and err["message"]
    assert error_code is None or err["code"] == error_code, err
    return doc


def test_every_command_has_a_schema():
    for name in COVERED:
        assert name in NAMES and (SCHEMAS / f"{name}.schema.json").exists(), name


# ------------------------------------------------------------------------------------------------ usage errors
@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_with_json_prints_one_error_document(cli, name):
    doc = failure(cli(name, "--no-such-option", "--json"), 2, "no_such_option")
    assert doc["command"] == name and "--no-such-option" in doc["error"]["message"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "synth"])
def test_missing_argument_with_json_prints_one_error_document(cli, name):
    failure(cli(name, "--json"), 2, "missing_parameter")


def test_group_level_usage_errors_with_json(cli):
    doc = failure(cli("--no-such-option", "--json"), 2, "no_such_option")
    assert doc["command"] is None
    assert failure(cli("no-such-command", "--json"), 2)["command"] == "no-such-command"


def test_json_after_double_dash_is_an_argument_not_the_flag(cli, tmp_path):
    r = cli("info", "--", "--json")
    assert r.exit_code == 1 and r.stdout == ""


# ------------------------------------------------------------------------------------------------ job failures
def failing_invocations(tmp_path: Path, tiny_ckpt: Path) -> dict[str, list[list[str]]]:
    """Per command, invocations that fail after parsing (exit 1 or 2 from dshub itself)."""
    missing = str(tmp_path / "missing")
    return {
        "synth": [["synth", str(tmp_path / "s"), "--preset", "no-such-preset"]],
        "info": [["info", missing], ["info", str(tmp_path)]],
        "verify": [["verify", missing]],
        "download": [["download", "not a repo id"], ["download", "a/b", "--source", "nowhere"]],
        "convert": [["convert", missing, "--to", "bf16", "--out", str(tmp_path / "o")],
                    ["convert", str(tiny_ckpt), "--to", "nothing", "--out", str(tmp_path / "o")],
                    ["convert", str(tiny_ckpt), "--to", "bf16", "--out", str(tmp_path / "o"), "--quant", "Q4_K_M"]],
        "plan": [["plan", "deepseek-r1", "--gpu", "h100"], ["plan", "no-such-model"], ["plan", "deepseek-r1", "--gpu", "z9"]],
        "recipe": [["recipe", "deepseek-r1", "--gpu", "h100"], ["recipe", "deepseek-r1", "--format", "nope"]],
    }


def test_every_failure_path_of_every_command_prints_one_error_document(cli, tmp_path, tiny_ckpt):
    cases = failing_invocations(tmp_path, tiny_ckpt)
    assert set(COVERED) <= set(cases)
    for name, invocations in cases.items():
        for args in invocations:
            r = cli(*args, "--json")
            assert r.exit_code in (1, 2), (args, r.output)
            doc = failure(r, r.exit_code)
            assert doc["command"] == name, args


def test_a_refused_plan_is_the_failure_document(cli):
    doc = failure(cli("plan", "deepseek-r1", "--gpu", "h100", "--json"), 1, "plan_refused")
    assert doc["chosen"] is None and doc["candidates"] and "no layout fits" in doc["error"]["message"]
    doc = failure(cli("recipe", "deepseek-r1", "--gpu", "h100", "--json"), 1, "plan_refused")
    assert doc["recipe"] is None and doc["plan"]["chosen"] is None


def test_failed_verify_names_file_and_tensor(cli, tiny_ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ckpt, bad)
    shard = retype(bad, KV_A, "BF16", 2)  # an FP8 weight stored as BF16: the dtype check names it
    doc = failure(cli("verify", bad, "--json"), 1, "check_failed")
    assert doc["findings"] and doc["error"]["tensor"].startswith(KV_A) and doc["error"]["path"] == shard.name, doc["error"]


# ------------------------------------------------------------------------------------------------ successes
def test_success_documents_match_their_schemas(cli, tmp_path, tiny_ckpt, hub, repo_files):
    ok = lambda *a: one_document(_ok(cli(*a, "--json")))
    assert ok("synth", tmp_path / "s")["command"] == "synth"
    assert ok("info", tiny_ckpt)["path"]
    assert ok("verify", tiny_ckpt)["ok"] is True
    assert ok("convert", tiny_ckpt, "--to", "bf16", "--out", tmp_path / "bf16", "--dry-run")["dry_run"] is True
    assert ok("convert", tiny_ckpt, "--to", "bf16", "--out", tmp_path / "bf16")["files"]
    assert ok("plan", "deepseek-r1")["chosen"]
    assert ok("recipe", "deepseek-r1")["recipe"]["nodes"]
    hub.add_repo(REPO, repo_files)
    assert ok("download", REPO, "--local-dir", tmp_path / "d", "--dry-run")["dry_run"] is True
    assert ok("download", REPO, "--local-dir", tmp_path / "d")["ok"] is True
    assert ok("verify", tmp_path / "d", "--hashes")["hashes"]["ok"] is True


def _ok(r):
    assert r.exit_code == 0, r.output
    return r
