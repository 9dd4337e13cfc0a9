"""`dshub run PIPELINE.yaml --emit k8s`: the pipeline as Kubernetes objects, sized by its dry-run plan.

- a ConfigMap holding the pipeline file as written (references such as ${HF_TOKEN} unresolved: no token in it);
- a PersistentVolumeClaim (ReadWriteMany: every node mounts it) as large as the plan's peak disk, mounted at /work,
  where the pipeline's relative workdir and sources live;
- `--executor local`: a batch/v1 Job running `dshub run` in one pod, CPU and memory from the plan;
- `--executor ray`: a KubeRay RayJob (ray.io/v1) whose entrypoint runs `dshub run --executor ray` on a Ray cluster of
  one head (no tasks: `num-cpus: 0`) and N workers, each worker's memory the plan's per-task memory times its CPUs.
The HF token comes from the Secret `hf-token` (key `token`), which the objects name and never contain; every pod
has it as HF_TOKEN, where the driver lists the repository and the download tasks on the workers fetch with it
(`dshub.hub.ray_fetch`: no token travels with a task).

RayJob fields (KubeRay v1 API, docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html):
`entrypoint`, `shutdownAfterJobFinishes`, `ttlSecondsAfterFinished`, `rayClusterSpec` with `headGroupSpec`
(`rayStartParams`, `template`) and `workerGroupSpecs` (`groupName`, `replicas`, `minReplicas`, `maxReplicas`,
`rayStartParams`, `template`).
"""
from __future__ import annotations

import math
from typing import Any

import yaml

from dshub.constants import VERSION
from dshub.converters.executors import WORKER_BASE_MEMORY
from dshub.pipeline.model import HubSource, Pipeline

HF_SECRET = {"name": "hf-token", "key": "token"}
MOUNT = "/work"
CONFIG_MOUNT = "/pipeline"
PIPELINE_FILE = "pipeline.yaml"
DISK_HEADROOM = 1.1  # the claim beyond the plan's peak (filesystem overhead, temp files during renames)
MIN_CLAIM = 1 << 30


def _gi(n: int) -> str:
    return f"{max(1, math.ceil(n / (1 << 30)))}Gi"


def _container(name: str, image: str, command: list[str] | None, cpus: int, memory: int, token: bool) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name, "image": image, **({"command": command} if command else {}),
        "resources": {"requests": {"cpu": str(cpus), "memory": _gi(memory)}, "limits": {"memory": _gi(memory)}},
        "volumeMounts": [{"name": "work", "mountPath": MOUNT},
                         {"name": "pipeline", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }
    if token:
        c["env"] = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": dict(HF_SECRET)}}]
    return c


def _volumes(name: str) -> list[dict[str, Any]]:
    return [{"name": "work", "persistentVolumeClaim": {"claimName": f"{name}-work"}},
            {"name": "pipeline", "configMap": {"name": f"{name}-pipeline"}}]


def _run_command(executor: str) -> list[str]:
    """Copy the file onto the shared volume (its relative workdir then lands there) and run it."""
    flags = " --executor ray" if executor == "ray" else ""
    return ["/bin/sh", "-c", f"cp {CONFIG_MOUNT}/{PIPELINE_FILE} {MOUNT}/{PIPELINE_FILE} && "
                             f"exec dshub run {MOUNT}/{PIPELINE_FILE}{flags}"]


def task_memory(plan: dict[str, Any]) -> int:
    """The largest per-task memory any conversion step of the plan declares (a worker's base when none)."""
    return max([s["plan"].get("task_memory", 0) for s in plan["steps"].values()] + [WORKER_BASE_MEMORY])


def k8s_objects(pipeline: Pipeline, text: str, plan: dict[str, Any], *, name: str, executor: str, image: str | None,
                cpus: int, nodes: int) -> list[dict[str, Any]]:
    """The ConfigMap, the claim and the Job or RayJob for one pipeline and its dry-run plan (`plan`)."""
    image = image or f"dshub:{VERSION}"
    token = isinstance(pipeline.source, HubSource) and pipeline.source.token is not None
    memory = cpus * task_memory(plan)
    labels = {"app.kubernetes.io/name": "dshub", "app.kubernetes.io/instance": name}
    meta = lambda suffix="": {"name": f"{name}{suffix}", "labels": dict(labels)}  # noqa: E731
    claim = max(MIN_CLAIM, int(plan["plan"]["peak_disk"] * DISK_HEADROOM))
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-pipeline"), "data": {PIPELINE_FILE: text}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("-work"),
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": _gi(claim)}}}},
    ]
    if executor == "local":
        pod = {"restartPolicy": "Never", "volumes": _volumes(name),
               "containers": [_container("dshub", image, _run_command("local"), cpus, memory, token)]}
        docs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(),
                     "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": dict(labels)}, "spec": pod}}})
        return docs
    # No command: KubeRay starts Ray in each pod itself, from rayStartParams.
    head_pod = {"volumes": _volumes(name),
                "containers": [_container("ray-head", image, None, 1, 2 * WORKER_BASE_MEMORY, token)]}
    worker_pod = {"volumes": _volumes(name), "containers": [_container("ray-worker", image, None, cpus, memory, token)]}
    docs.append({
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta(),
        "spec": {
            "entrypoint": _run_command("ray")[2],
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "rayClusterSpec": {
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                                  "template": {"metadata": {"labels": dict(labels)}, "spec": head_pod}},
                "workerGroupSpecs": [{
                    "groupName": "convert", "replicas": nodes, "minReplicas": nodes, "maxReplicas": nodes,
                    "rayStartParams": {"num-cpus": str(cpus)},
                    "template": {"metadata": {"labels": dict(labels)}, "spec": worker_pod}}],
            },
        },
    })
    return docs


def render(docs: list[dict[str, Any]]) -> str:
    note = (f"# dshub {VERSION} pipeline job. Needs: Secret `{HF_SECRET['name']}` (key `{HF_SECRET['key']}`), e.g.\n"
            "#   kubectl create secret generic hf-token --from-literal=token=\"$HF_TOKEN\"\n"
            "# and a StorageClass that provides ReadWriteMany volumes (NFS, Lustre, CephFS) for the claim.\n")
    return note + yaml.safe_dump_all(docs, sort_keys=False)
