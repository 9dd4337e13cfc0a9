"""Kubernetes: Deployment + Service for one node; LeaderWorkerSet + Service for several (serving.md §1.4, §2 LWS);
before them the RWX model-cache PVC and, for a hub model, the Job that downloads into it (render/k8s_cache.py).
/dev/shm as a Memory emptyDir, requests and limits from the plan, GPU placement, HF token from a Secret,
HF_HUB_OFFLINE=1 in the server, a startup probe long enough for a 700 GB load. Plain YAML: no anchors or aliases."""
from __future__ import annotations

from typing import Any

import yaml

from dshub.recipes.launch import NET_IFACE_REF, Launch, NodeLaunch, NodeRef, pieces, plain
from dshub.recipes.render.common import (LWS_LEADER, SHM_GB, STARTUP_BUDGET_S, app_name, comment_block, comment_text,
                                         k8s_word, quote_ours)
from dshub.recipes.render.k8s_cache import (HF_SECRET, MODEL_PVC, download_job, notes, placement, pvc, resources,
                                            wait_for_download)


class PlainDumper(yaml.SafeDumper):
    """Every repeated value written out in full: no `&id001` anchors, which some YAML tools and reviewers trip on."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
PROBE_PERIOD_S = 30
SCRIPT_NAME = "dshub-recipe"  # $0 of the LWS pod's sh -c


def lws_script(argv: list[str]) -> tuple[str, list[str]]:
    """`exec ARGV` for the pod's sh, and its positional parameters: our text is inline (rank and leader
    expressions live), each piece of user text is `"${N}"`, so none of it is ever shell syntax."""
    values: list[str] = []

    def word(arg: str) -> str:
        out = []
        for is_user, text in pieces(arg):
            if is_user:
                values.append(text)
                out.append(f'"${{{len(values)}}}"')
            else:
                out.append(quote_ours(text))
        return "".join(out) or "''"

    script = "exec " + " ".join(word(a) for a in argv)
    # Kubernetes expands $(VAR) in command and args; escape $( so shell arithmetic reaches the shell intact.
    return script.replace("$(", "$$("), values


def _command(node: NodeLaunch, lws: bool) -> dict[str, list[str]]:
    """Exec-form `command` (and `args`): the argv itself, or under LWS a fixed sh script plus the user values."""
    if not lws:
        return {"command": [k8s_word(a) for a in node.argv]}
    script, values = lws_script(node.argv)
    args = {"args": [SCRIPT_NAME, *map(k8s_word, values)]} if values else {}
    return {"command": ["/bin/sh", "-c", script], **args}


def _env(launch: Launch, node: NodeLaunch, lws: bool) -> list[dict[str, Any]]:
    # An interface to be found at start (no --net-iface) is left to NCCL and Gloo: in a pod they pick its own
    # interface (NCCL skips lo and docker*); a pod has no shell step before the engine to run `ip route get`.
    env: list[dict[str, Any]] = [{"name": k, "value": k8s_word(v)} for k, v in sorted(node.env.items())
                                 if v != NET_IFACE_REF]
    if launch.needs_hf_token:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {**HF_SECRET, "optional": True}}})
    env.append({"name": "HF_HUB_OFFLINE", "value": "1"})  # the weights are on the PVC; the server never downloads
    if lws:
        env.append({"name": "LWS_WORKER_INDEX",
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{WORKER_INDEX_LABEL}']"}}})
    return env


def _probes(launch: Launch) -> dict[str, Any]:
    http = {"path": launch.plan.engine.health_path, "port": "http"}
    return {
        "startupProbe": {"httpGet": http, "periodSeconds": PROBE_PERIOD_S,
                         "failureThreshold": STARTUP_BUDGET_S // PROBE_PERIOD_S},
        "readinessProbe": {"httpGet": http, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": http, "periodSeconds": 30, "failureThreshold": 5},
    }


def pod_spec(launch: Launch, node: NodeLaunch, *, lws: bool) -> dict[str, Any]:
    """The pod for one node. Under LWS the argv runs through sh so the rank arithmetic happens in the pod."""
    container: dict[str, Any] = {"name": launch.engine, "image": launch.image, **_command(node, lws)}
    container["env"] = _env(launch, node, lws)
    if node.ports:
        container["ports"] = [{"name": "http", "containerPort": launch.port, "protocol": "TCP"}]
        container.update(_probes(launch))
    container["resources"] = resources(launch)
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_GB}Gi"}}]
    for m in launch.mounts:
        mounts.append({"name": m.name, "mountPath": plain(m.container)})
        volumes.append({"name": m.name, "persistentVolumeClaim": {"claimName": MODEL_PVC}})
    spec: dict[str, Any] = {}
    if launch.network.rdma:
        container["securityContext"] = {"privileged": True, "capabilities": {"add": ["IPC_LOCK"]}}
        mounts.append({"name": "infiniband", "mountPath": "/dev/infiniband"})
        volumes.append({"name": "infiniband", "hostPath": {"path": "/dev/infiniband"}})
        spec.update({"hostNetwork": True, "hostIPC": True, "dnsPolicy": "ClusterFirstWithHostNet"})
    container["volumeMounts"] = mounts
    init = wait_for_download(launch, app_name(launch))
    spec.update({**placement(launch), **({"initContainers": init} if init else {}), "containers": [container],
                 "volumes": volumes, "terminationGracePeriodSeconds": 120})
    return spec


def _service(name: str, launch: Launch, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": launch.port, "targetPort": "http", "protocol": "TCP"}]}}


def k8s_docs(launch: Launch) -> list[dict[str, Any]]:
    """The model-cache PVC, its download Job (hub models), then the server and its Service."""
    name = app_name(launch)
    job = download_job(launch, name)
    return [pvc(launch), *([job] if job else []), *server_docs(launch, name)]


def server_docs(launch: Launch, name: str) -> list[dict[str, Any]]:
    if not launch.multi_node:
        node = launch.build_node(NodeRef(0, "127.0.0.1"), True)
        labels = {"app": name}
        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                  "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": pod_spec(launch, node, lws=False)}}}
        return [deploy, _service(name, launch, labels)]
    leader = launch.build_node(NodeRef(0, LWS_LEADER), True)
    worker = launch.build_node(NodeRef(None, LWS_LEADER), True)
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": 1, "leaderWorkerTemplate": {
               "size": launch.plan.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
               "leaderTemplate": {"metadata": {"labels": {"app": name, "role": "leader"}},
                                  "spec": pod_spec(launch, leader, lws=True)},
               "workerTemplate": {"metadata": {"labels": {"app": name, "role": "worker"}},
                                  "spec": pod_spec(launch, worker, lws=True)}}}}
    return [lws, _service(name, launch, {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"})]


def render_k8s(launch: Launch) -> dict[str, str]:
    body = yaml.dump_all(k8s_docs(launch), Dumper=PlainDumper, sort_keys=False, default_flow_style=False, width=1000)
    head = "".join(f"# {comment_text(line)}\n" for line in notes(launch, app_name(launch)))
    return {"k8s.yaml": comment_block(launch) + head + body}
