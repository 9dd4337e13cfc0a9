"""`convert` takes a hub id from the HF cache (or says to run `dshub download`), names GGUF output after the model
(never a commit hash) or `--name`, and refuses a non-empty `--out` it did not create unless `--force` (issue 17)."""
from __future__ import annotations

import json

from tests.support.fakehub import REPO


def test_hub_id_from_the_hf_cache_names_the_gguf_after_the_repo(cli, hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    assert cli("download", REPO).exit_code == 0  # into the HF cache (HF_HOME is the test's)
    r = cli("convert", REPO, "--to", "gguf", "--quant", "Q8_0", "--out", tmp_path / "g", "--json")
    assert r.exit_code == 0, r.output
    name = REPO.split("/")[1]
    assert [f["name"] for f in json.loads(r.stdout)["files"]] == [f"{name}-Q8_0.gguf"]
    r = cli("convert", REPO, "--to", "gguf", "--quant", "Q8_0", "--name", "R1-mini", "--out", tmp_path / "n",
            "--dry-run", "--json")
    assert r.exit_code == 0 and [f["name"] for f in json.loads(r.stdout)["files"]] == ["R1-mini-Q8_0.gguf"]


def test_hub_id_not_in_the_cache_names_dshub_download(cli, tmp_path):
    r = cli("convert", "deepseek-ai/DeepSeek-R1", "--to", "bf16", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "`dshub download deepseek-ai/DeepSeek-R1`" in r.stderr
    r = cli("convert", "deepseek-ai/DeepSeek-R1@v2", "--to", "bf16", "--out", tmp_path / "o", "--json")
    assert json.loads(r.stdout)["error"]["message"].endswith("`dshub download deepseek-ai/DeepSeek-R1 --revision v2`")


def test_name_only_where_the_target_names_files(cli, tiny_ckpt, tmp_path):
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--name", "x", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--name" in r.stderr


def test_non_empty_unrelated_out_is_refused_unless_force(cli, tiny_ckpt, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out)
    assert r.exit_code == 2 and "not empty (notes.txt)" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    assert cli("convert", tiny_ckpt, "--to", "bf16", "--out", out, "--dry-run").exit_code == 0  # a dry run writes nothing
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out, "--force")
    assert r.exit_code == 0 and (out / "notes.txt").read_text() == "keep me" and (out / "config.json").exists()
    assert cli("convert", tiny_ckpt, "--to", "bf16", "--out", out).exit_code == 0  # now it is a dshub conversion: resumes
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("convert", tiny_ckpt, "--to", "bf16", "--out", empty).exit_code == 0
