"""The plan and, per node, the exact argv, env, image and ports: for scripting and for tests."""
from __future__ import annotations

import json

from dshub.recipes.launch import Launch, plain
from dshub.recipes.render.common import HEAD_IP_JSON, summary_lines


def recipe_doc(launch: Launch) -> dict:
    nodes = launch.nodes(HEAD_IP_JSON, container=True)
    host = launch.nodes(HEAD_IP_JSON, container=False)
    return {
        "engine": launch.engine, "engine_version": launch.version, "image": launch.image, "port": launch.port,
        "model_arg": plain(launch.model_arg_container),
        "mounts": [{"name": m.name, "host": plain(m.host), "container": plain(m.container)} for m in launch.mounts],
        "nodes": [{**n.to_dict(), "image": launch.image, "host_argv": h.to_dict()["argv"]} for n, h in zip(nodes, host)],
        "placeholders": placeholders(launch),
        "summary": summary_lines(launch.plan), "notes": list(launch.notes), "warnings": list(launch.warnings),
        "plan": launch.plan.to_dict(),
    }


def placeholders(launch: Launch) -> dict[str, str]:
    """What the node's environment must provide when the recipe starts."""
    if not launch.multi_node:
        return {}
    out = {"HEAD_IP": "address of node 0, reachable from every node"}
    if launch.network.detect_iface:
        out["NET_IFACE"] = "network interface that reaches HEAD_IP on this node (`ip route get $HEAD_IP`)"
    return out


def render_json(launch: Launch) -> dict[str, str]:
    return {"recipe.json": json.dumps(recipe_doc(launch), indent=2, sort_keys=True) + "\n"}
