"""`dshub run PIPELINE.yaml --emit k8s`: a Job (local executor) or a KubeRay RayJob (ray) with the shared claim, the
token from a Secret and resources from the plan, checked by kubernetes-validate --strict (RayJob: its own fields from
KubeRay's v1 API reference, every pod template as a Pod)."""
from __future__ import annotations

import json

import pytest
import yaml

from dshub.converters.executors import WORKER_BASE_MEMORY
from dshub.recipes.validate import check_k8s
from tests.support.pipelines import PIPELINE
from tests.support.fakehub import REPO, TEST_TOKEN
from tests.support.tools import require_validator_venv


@pytest.fixture(scope="module")
def venv():
    return require_validator_venv()


@pytest.fixture
def hub_pipeline(hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files, gated=True)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    return path


def emit(cli, path, *args: str) -> tuple[str, list[dict]]:
    r = cli("run", path, "--emit", "k8s", *args)
    assert r.exit_code == 0, r.output
    return r.stdout, [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.mark.parametrize("executor, kind", [("local", "Job"), ("ray", "RayJob")])
def test_emitted_objects_pass_kubernetes_validate(cli, venv, hub_pipeline, tmp_path, executor, kind):
    text, docs = emit(cli, hub_pipeline, "--executor", executor, "--cpus", "4", "--nodes", "3")
    assert TEST_TOKEN not in text and "hf-token" in text
    assert [d["kind"] for d in docs] == ["ConfigMap", "PersistentVolumeClaim", kind]
    assert docs[0]["data"]["pipeline.yaml"] == hub_pipeline.read_text()  # the file as written: ${HF_TOKEN} only
    out = tmp_path / "k8s.yaml"
    out.write_text(text)
    results = check_k8s(venv, [out])
    assert [r["kind"] for r in results] == [d["kind"] for d in docs] and all(r["ok"] for r in results), results

    plan = json.loads(cli("run", hub_pipeline, "--dry-run", "--json").stdout)
    largest = max(s["plan"].get("task_memory", 0) for s in plan["steps"].values())
    assert largest > WORKER_BASE_MEMORY  # the conversions' plans declare their largest tensor's copies
    claim = docs[1]["spec"]["resources"]["requests"]["storage"]
    assert int(claim.removesuffix("Gi")) << 30 >= plan["plan"]["peak_disk"]
    job = docs[2]["spec"]
    if kind == "Job":
        pod = job["template"]["spec"]
    else:
        group = job["rayClusterSpec"]["workerGroupSpecs"][0]
        assert group["replicas"] == 3 and group["rayStartParams"] == {"num-cpus": "4"}
        assert "--executor ray" in job["entrypoint"]
        pod = group["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["requests"]["cpu"] == "4"
    assert int(c["resources"]["requests"]["memory"].removesuffix("Gi")) << 30 >= 4 * largest
    assert c["env"] == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]


def test_the_rayjob_checker_is_live(cli, venv, hub_pipeline, tmp_path):
    _, docs = emit(cli, hub_pipeline, "--executor", "ray")
    bad_field, bad_pod = json.loads(json.dumps(docs[2])), json.loads(json.dumps(docs[2]))
    bad_field["spec"]["shutdownAfterJobFinish"] = True
    bad_pod["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "x"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([bad_field, bad_pod]))
    results = check_k8s(venv, [path])
    assert [r["ok"] for r in results] == [False, False]
    assert "shutdownAfterJobFinish" in results[0]["error"] and "workerGroupSpecs[0].template as a Pod" in results[1]["error"]
