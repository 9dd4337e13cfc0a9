"""Check Kubernetes manifests: built-in kinds with kubernetes-validate --strict; LeaderWorkerSet and RayJob (CRDs the
bundled schemas do not know) by validating their pod templates as Pods plus their own fields
(recipe-validation.md §3, "Lighter option").

argv: K8S_VERSION FILE...; stdout: JSON list of {"file", "kind", "ok", "error"}.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import kubernetes_validate
import yaml

LWS_RESTART_POLICIES = {"RecreateGroupOnPodRestart", "None", "Default"}
LWS_TEMPLATE_KEYS = {"size", "restartPolicy", "leaderTemplate", "workerTemplate", "subGroupPolicy", "resizePolicy"}


def _pod(spec: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lws-template", **(meta or {})}, "spec": spec}


def check_lws(doc: dict[str, Any], version: str) -> str | None:
    if doc.get("apiVersion") != "leaderworkerset.x-k8s.io/v1":
        return f"apiVersion {doc.get('apiVersion')!r}"
    spec = doc.get("spec") or {}
    if not isinstance(spec.get("replicas", 1), int):
        return "spec.replicas must be an integer"
    t = spec.get("leaderWorkerTemplate") or {}
    unknown = set(t) - LWS_TEMPLATE_KEYS
    if unknown:
        return f"leaderWorkerTemplate: unknown fields {sorted(unknown)}"
    if not isinstance(t.get("size"), int) or t["size"] < 1:
        return "leaderWorkerTemplate.size must be a positive integer"
    if t.get("restartPolicy", "Default") not in LWS_RESTART_POLICIES:
        return f"restartPolicy {t.get('restartPolicy')!r}"
    if "workerTemplate" not in t:
        return "leaderWorkerTemplate.workerTemplate is required"
    for key in ("leaderTemplate", "workerTemplate"):
        if key in t:
            tpl = t[key]
            try:
                kubernetes_validate.validate(_pod(tpl.get("spec") or {}, tpl.get("metadata")), version, strict=True)
            except kubernetes_validate.ValidationError as e:
                return f"{key} as a Pod: {e.message} at {'/'.join(map(str, e.path))}"
    return None


# KubeRay's RayJob (ray.io/v1), a CRD the bundled schemas do not know either: its own fields from the KubeRay v1 API
# reference (ray-project/kuberay docs/reference/api.md: RayJobSpec, RayClusterSpec, HeadGroupSpec, WorkerGroupSpec),
# and every pod template validated as a Pod with --strict, as for LeaderWorkerSet.
RAYJOB_SPEC_KEYS = {"activeDeadlineSeconds", "backoffLimit", "entrypoint", "entrypointNumCpus", "entrypointNumGpus",
                    "entrypointResources", "jobId", "managedBy", "metadata", "rayClusterSpec", "runtimeEnvYAML",
                    "shutdownAfterJobFinishes", "submissionMode", "submitterConfig", "submitterPodTemplate",
                    "suspend", "deletionStrategy", "clusterSelector", "ttlSecondsAfterFinished", "schedule"}
RAYCLUSTER_SPEC_KEYS = {"autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
                        "headServiceAnnotations", "managedBy", "rayVersion", "suspend", "workerGroupSpecs"}
HEAD_GROUP_KEYS = {"enableIngress", "headService", "rayStartParams", "serviceType", "template"}
WORKER_GROUP_KEYS = {"groupName", "idleTimeoutSeconds", "maxReplicas", "minReplicas", "numOfHosts", "rayStartParams",
                     "replicas", "scaleStrategy", "suspend", "template"}


def _group(where: str, group: dict[str, Any], keys: set[str], version: str) -> str | None:
    unknown = set(group) - keys
    if unknown:
        return f"{where}: unknown fields {sorted(unknown)}"
    params = group.get("rayStartParams", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return f"{where}.rayStartParams must map names to strings"
    tpl = group.get("template") or {}
    try:
        kubernetes_validate.validate(_pod(tpl.get("spec") or {}, tpl.get("metadata")), version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{where}.template as a Pod: {e.message} at {'/'.join(map(str, e.path))}"
    return None


def check_rayjob(doc: dict[str, Any], version: str) -> str | None:
    if doc.get("apiVersion") != "ray.io/v1":
        return f"apiVersion {doc.get('apiVersion')!r}"
    spec = doc.get("spec") or {}
    unknown = set(spec) - RAYJOB_SPEC_KEYS
    if unknown:
        return f"spec: unknown fields {sorted(unknown)}"
    if not isinstance(spec.get("entrypoint"), str) or not spec["entrypoint"]:
        return "spec.entrypoint must be a command"
    cluster = spec.get("rayClusterSpec") or {}
    unknown = set(cluster) - RAYCLUSTER_SPEC_KEYS
    if unknown:
        return f"rayClusterSpec: unknown fields {sorted(unknown)}"
    if "headGroupSpec" not in cluster:
        return "rayClusterSpec.headGroupSpec is required"
    err = _group("headGroupSpec", cluster["headGroupSpec"], HEAD_GROUP_KEYS, version)
    for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
        if err is None and not isinstance(group.get("replicas", 0), int):
            err = f"workerGroupSpecs[{i}].replicas must be an integer"
        err = err or _group(f"workerGroupSpecs[{i}]", group, WORKER_GROUP_KEYS, version)
    return err


def check_doc(doc: dict[str, Any], version: str) -> str | None:
    if doc.get("kind") == "LeaderWorkerSet":
        return check_lws(doc, version)
    if doc.get("kind") == "RayJob":
        return check_rayjob(doc, version)
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{e.message} at {'/'.join(map(str, e.path))}"
    except Exception as e:  # unknown kinds/versions
        return f"{type(e).__name__}: {e}"
    return None


def main() -> None:
    version, files = sys.argv[1], sys.argv[2:]
    out = []
    for f in files:
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is None:
                    continue
                err = check_doc(doc, version)
                out.append({"file": f, "kind": doc.get("kind"), "ok": err is None, "error": err})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
