"""Check Kubernetes manifests: built-in kinds with kubernetes-validate --strict; LeaderWorkerSet (a CRD the
bundled schemas do not know) by validating its leader and worker pod templates as Pods plus its own fields
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


def check_doc(doc: dict[str, Any], version: str) -> str | None:
    if doc.get("kind") == "LeaderWorkerSet":
        return check_lws(doc, version)
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
