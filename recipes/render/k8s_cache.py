"""Kubernetes: what a serving pod needs besides itself. The model-cache PVC (ReadWriteMany: every node of a
multi-node group mounts it), the Job that fills it with `dshub download` for a hub model, the init container that
holds the server until the Job is done, requests and limits from the plan, GPU placement.

Sizes here that no source states are dshub's own estimates, named as such: host memory per GPU for the engine's
processes, CPU per GPU, scratch space.
"""
from __future__ import annotations

import math
from typing import Any

from dshub.constants import VERSION
from dshub.recipes.launch import Launch, plain
from dshub.recipes.planner import total_weight_bytes
from dshub.recipes.render.common import SHM_GB

GiB = 2**30
GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
# NVIDIA GPU feature discovery labels each node with the product the driver reports, spaces as dashes.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HF_SECRET = {"name": "hf-token", "key": "token"}
SECRET_COMMAND = f'kubectl create secret generic {HF_SECRET["name"]} --from-literal={HF_SECRET["key"]}="$HF_TOKEN"'
MODEL_PVC = "dshub-model-cache"
CACHE_HEADROOM = 1.10  # the PVC holds the checkpoint plus 10 % (partial files during a resumed download)
HOST_MEMORY_PER_GPU_GIB = 16  # dshub estimate: engine worker, CUDA context and pinned buffers per GPU
CPU_PER_GPU = 4  # dshub estimate: tokenizer, API server and one worker process per GPU
SCRATCH_GIB = 50  # dshub estimate: compile and CUDA-graph caches, logs
DOWNLOAD_IMAGE = "python:3.12-slim"
READY_MARK = ".dshub-ready-{name}"
WAIT_IMAGE = "busybox:1.36"
DOWNLOAD_SCRIPT = ('pip install --no-cache-dir --quiet "dshub==$0" && dshub download "$1" && '
                   'touch "$HF_HOME/$2"')
WAIT_SCRIPT = 'until [ -f "$0" ]; do echo "waiting for the model download ($0)"; sleep 30; done'


def gib(n: float) -> str:
    return f"{max(1, math.ceil(n))}Gi"


def downloads(launch: Launch) -> bool:
    """A hub model through the HF cache: the Job can fill the PVC. Local or converted weights are the user's to put there."""
    return any(m.name == "hf-cache" for m in launch.mounts)


def cache_mount(launch: Launch) -> str:
    return next(plain(m.container) for m in launch.mounts if m.name == "hf-cache")


def resources(launch: Launch) -> dict[str, Any]:
    """Requests and limits from the plan: the GPUs, host memory for the engine plus /dev/shm (a Memory emptyDir
    counts against the limit) plus routed experts kept in RAM (llama.cpp), CPU and scratch space."""
    p = launch.plan
    gpus = p.gpus_per_node
    experts_ram = p.chosen.experts_on_cpu_bytes if p.chosen else 0
    memory = gib(HOST_MEMORY_PER_GPU_GIB * gpus + SHM_GB + experts_ram / GiB)
    gpu = GPU_RESOURCE[launch.vendor]
    return {"requests": {"cpu": str(CPU_PER_GPU * gpus), "memory": memory, "ephemeral-storage": f"{SCRATCH_GIB}Gi", gpu: gpus},
            "limits": {"memory": memory, "ephemeral-storage": f"{SCRATCH_GIB}Gi", gpu: gpus}}


def placement(launch: Launch) -> dict[str, Any]:
    """nodeSelector on the GPU product label (where the card's product name is known) and a toleration for the
    GPU taint GPU node pools commonly carry; adjust both to the cluster's own labels and taints."""
    gpu = launch.plan.gpu
    out: dict[str, Any] = {"tolerations": [{"key": GPU_RESOURCE[launch.vendor], "operator": "Exists",
                                            "effect": "NoSchedule"}]}
    if launch.vendor == "nvidia" and gpu.product:
        out["nodeSelector"] = {GPU_PRODUCT_LABEL: gpu.product.replace(" ", "-")}
    return out


def wait_for_download(launch: Launch, name: str) -> list[dict[str, Any]]:
    """The init container that holds the server until the download Job marked the cache complete."""
    if not downloads(launch):
        return []
    mark = f"{cache_mount(launch)}/{READY_MARK.format(name=name)}"
    return [{"name": "wait-for-model", "image": WAIT_IMAGE, "command": ["/bin/sh", "-c", WAIT_SCRIPT], "args": [mark],
             "volumeMounts": [{"name": "hf-cache", "mountPath": cache_mount(launch)}],
             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}]


def pvc(launch: Launch) -> dict[str, Any]:
    p = launch.plan
    size = total_weight_bytes(p.model, p.weights, True) * CACHE_HEADROOM / GiB
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": MODEL_PVC},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": gib(size)}}}}


def download_job(launch: Launch, name: str) -> dict[str, Any] | None:
    """`dshub download HUB_ID` into the PVC's HF cache (resumable: a retried pod fetches only what is missing)."""
    if not downloads(launch):
        return None
    mount = cache_mount(launch)
    env = [{"name": "HF_HOME", "value": mount},
           {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {**HF_SECRET, "optional": True}}}]
    container = {"name": "download", "image": DOWNLOAD_IMAGE, "command": ["/bin/sh", "-c", DOWNLOAD_SCRIPT],
                 "args": [VERSION, plain(launch.model_arg_container), READY_MARK.format(name=name)], "env": env,
                 "volumeMounts": [{"name": "hf-cache", "mountPath": mount}],
                 "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-download", "labels": {"app": name}},
            "spec": {"backoffLimit": 6, "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "restartPolicy": "OnFailure", "containers": [container],
                "volumes": [{"name": "hf-cache", "persistentVolumeClaim": {"claimName": MODEL_PVC}}]}}}}


def notes(launch: Launch, name: str) -> list[str]:
    lines = [f"Needs: Secret `{HF_SECRET['name']}` for gated repos: {SECRET_COMMAND}",
             f"PVC `{MODEL_PVC}` is ReadWriteMany: set spec.storageClassName to an RWX class (NFS, CephFS, EFS, Filestore)"]
    if downloads(launch):
        lines.append(f"Job `{name}-download` fills it with `dshub download`; the server waits for it, then runs "
                     "with HF_HUB_OFFLINE=1")
    else:
        lines.append(f"put the weights into the PVC at {plain(launch.model_arg_container)} before the server starts")
    if launch.vendor != "nvidia" or not launch.plan.gpu.product:
        lines.append("nodeSelector: label the GPU nodes and add it (the card's product label is not known here)")
    if launch.multi_node:
        lines.append("the LeaderWorkerSet controller (lws.sigs.k8s.io)")
    return lines
