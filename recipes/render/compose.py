"""Docker Compose v2 files: one per node. GPU reservations, `ipc: host`, shm, model volume, health check on the head."""
from __future__ import annotations

from typing import Any

import yaml

from dshub.recipes.launch import Launch, NodeLaunch
from dshub.recipes.render.common import HEAD_IP_SHELL, SHM_GB, STARTUP_BUDGET_S, app_name, comment_block, compose_word

AMD_DEVICE_KEYS: dict[str, Any] = {
    "devices": ["/dev/kfd", "/dev/dri"], "group_add": ["video"], "security_opt": ["seccomp=unconfined"],
}


def compose_service(launch: Launch, node: NodeLaunch) -> dict[str, Any]:
    env = {k: compose_word(v) for k, v in sorted(node.env.items())}  # user values are data; $NET_IFACE from the env
    if launch.needs_hf_token:
        env["HF_TOKEN"] = "${HF_TOKEN:-}"  # from the caller's environment or .env, never inline
    svc: dict[str, Any] = {
        "image": compose_word(launch.image),
        "entrypoint": [compose_word(a) for a in node.argv],
        "environment": env,
        "ipc": "host",
        "shm_size": f"{SHM_GB}gb",
        "volumes": [compose_word(f"{m.host}:{m.container}") for m in launch.mounts],
        "restart": "unless-stopped",
    }
    if launch.vendor == "nvidia":
        svc["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
    else:
        svc.update(AMD_DEVICE_KEYS)
    if launch.multi_node:
        svc["network_mode"] = "host"
        if launch.network.rdma:
            svc["privileged"] = True
            svc["ulimits"] = {"memlock": -1}
    else:
        svc["ports"] = [f"{launch.port}:{launch.port}"]
    if node.ports:
        svc["healthcheck"] = {
            "test": ["CMD-SHELL", f"curl -fsS http://localhost:{launch.port}{launch.plan.engine.health_path} || exit 1"],
            "interval": "30s", "timeout": "10s", "retries": 5, "start_period": f"{STARTUP_BUDGET_S}s",
        }
    return svc


def render_compose(launch: Launch) -> dict[str, str]:
    out = {}
    for node in launch.nodes(HEAD_IP_SHELL, container=True):
        name = app_name(launch)
        doc = {"name": name if not launch.multi_node else f"{name}-node{node.rank}",
               "services": {launch.engine: compose_service(launch, node)}}
        stem = "compose" if not launch.multi_node else f"compose-node{node.rank}-{node.role}"
        text = comment_block(launch) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
        out[f"{stem}.yaml"] = text
    return out


__all__ = ["render_compose", "compose_service"]
