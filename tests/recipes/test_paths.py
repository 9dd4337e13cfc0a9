"""Host paths in recipes (issue 17, item 1): a relative local directory, a hub id and an absolute directory each give
a Compose file that Docker Compose v2's own `config -q` accepts, and the model Compose builds from it mounts the
intended host directory as a bind mount (never a named volume). The sh script's `-v` carries the same path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dshub.errors import UsageError
from dshub.recipes import RecipeOptions, Request, make_recipe
from dshub.recipes.engines.common import host_path
from dshub.recipes.validate import check_compose, resolve_compose
from tests.support.tools import require_validator_venv

SMALL = dict(engine="vllm", gpu="l40s", gpus_per_node=1, mtp=False)


@pytest.fixture(scope="module")
def venv() -> Path:
    return require_validator_venv()


@pytest.fixture
def model_dir(tiny_ckpt: Path, tmp_path: Path) -> Path:
    """A real (tiny) checkpoint at tmp_path/work/models/DeepSeek-tiny."""
    d = tmp_path / "work" / "models" / "DeepSeek-tiny"
    shutil.copytree(tiny_ckpt, d)
    return d


def compose_service(venv: Path, tmp_path: Path, files: dict[str, str], env: dict[str, str]) -> dict:
    """Write the compose file into a directory of its own (elsewhere than the model), check it, return its service
    as Compose's own model of it."""
    where = tmp_path / "deploy"
    where.mkdir(exist_ok=True)
    path = where / "compose.yaml"
    path.write_text(files["compose.yaml"])
    assert check_compose(venv, path, env) is None
    return resolve_compose(venv, path, env)["services"]["vllm"]


def test_relative_local_dir_is_mounted_by_its_absolute_path(venv, model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(model_dir.parent.parent)
    _, files = make_recipe(Request("models/DeepSeek-tiny", **SMALL), RecipeOptions(), "compose")
    svc = compose_service(venv, tmp_path, files, {"HOME": str(tmp_path)})
    vol = svc["volumes"][0]
    assert vol["type"] == "bind" and vol["source"] == str(model_dir) and vol["target"] == "/models/DeepSeek-tiny"
    assert svc["entrypoint"][2] == "/models/DeepSeek-tiny"
    _, js = make_recipe(Request("models/DeepSeek-tiny", **SMALL), RecipeOptions(), "sh")
    assert f"-v {model_dir}:/models/DeepSeek-tiny" in js["serve.sh"]


def test_absolute_local_dir_is_mounted_as_given(venv, model_dir, tmp_path):
    _, files = make_recipe(Request(str(model_dir), **SMALL), RecipeOptions(), "compose")
    vol = compose_service(venv, tmp_path, files, {"HOME": str(tmp_path)})["volumes"][0]
    assert vol["type"] == "bind" and vol["source"] == str(model_dir)


@pytest.mark.parametrize("hf_home", [None, "/srv/hf"])
def test_hub_id_mounts_the_hf_cache(venv, tmp_path, hf_home, monkeypatch):
    env = {"HOME": str(tmp_path), **({"HF_HOME": hf_home} if hf_home else {})}
    monkeypatch.delenv("HF_HOME", raising=False)  # conftest points it at tmp_path; Compose reads our environment too
    _, files = make_recipe(Request("deepseek-ai/DeepSeek-R1", engine="vllm", gpu="h200"), RecipeOptions(), "compose")
    svc = compose_service(venv, tmp_path, files, env)
    vol = svc["volumes"][0]
    assert vol["type"] == "bind" and vol["target"] == "/root/.cache/huggingface"
    assert vol["source"] == (hf_home or f"{tmp_path}/.cache/huggingface")
    assert svc["entrypoint"][2] == "deepseek-ai/DeepSeek-R1"


def test_relative_model_path_is_resolved_now(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/ops")
    assert host_path("--model-path", "w/DeepSeek-V3-int4") == f"{tmp_path}/w/DeepSeek-V3-int4"
    assert host_path("--model-path", "~/w/x") == "/home/ops/w/x"
    assert host_path("--model-path", "/data/x/") == "/data/x"
    _, js = make_recipe(Request("deepseek-r1", engine="vllm", gpu="h200"), RecipeOptions(model_path="w/R1"), "json")
    doc = json.loads(js["recipe.json"])
    assert doc["mounts"] == [{"name": "models", "host": f"{tmp_path}/w/R1", "container": "/models/R1"}]


def test_a_cwd_with_a_colon_is_refused(tmp_path, monkeypatch):
    odd = tmp_path / "a:b"
    odd.mkdir()
    monkeypatch.chdir(odd)
    with pytest.raises(UsageError, match="cannot be bind-mounted"):
        host_path("--model-path", "x")
