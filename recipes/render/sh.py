"""One shell script per node: `docker run` of the engine image with the node's argv and environment."""
from __future__ import annotations

from dshub.recipes.launch import Launch, NodeLaunch, plain
from dshub.recipes.render.common import (DETECT_IFACE_SH, HEAD_IP_SHELL, SHM_GB, app_name, comment_block, node_file_stem,
                                         shell_word)

VENDOR_DOCKER_ARGS = {
    "nvidia": ["--gpus", "all"],
    # ROCm containers (serving.md §1.4): devices, video group, seccomp off.
    "amd": ["--device=/dev/kfd", "--device=/dev/dri", "--group-add", "video", "--security-opt", "seccomp=unconfined"],
}


def docker_argv(launch: Launch, node: NodeLaunch) -> list[str]:
    a = ["docker", "run", "--rm", "--name", f"{app_name(launch)}-{node_file_stem(node, launch.plan.nodes)}",
         *VENDOR_DOCKER_ARGS[launch.vendor], "--ipc=host", f"--shm-size={SHM_GB}g"]
    if launch.multi_node:
        a += ["--network", "host"]
        if launch.network.rdma:
            a += ["--privileged", "--device=/dev/infiniband", "--ulimit", "memlock=-1"]
    else:
        a += ["-p", f"{launch.port}:{launch.port}"]
    for m in launch.mounts:
        a += ["-v", f"{m.host}:{m.container}"]
    for k, v in sorted(node.env.items()):
        a += ["-e", f"{k}={v}"]  # user values are marked (data, never expanded); ours may expand ($NET_IFACE)
    if launch.needs_hf_token:
        a += ["-e", "HF_TOKEN"]  # passed through from the caller's environment, never written here
    a += ["--entrypoint", node.argv[0], launch.image, *node.argv[1:]]
    return a


def render_sh(launch: Launch) -> dict[str, str]:
    out = {}
    for node in launch.nodes(HEAD_IP_SHELL, container=True):
        lines = ["#!/usr/bin/env bash", comment_block(launch).rstrip(), "set -euo pipefail"]
        if launch.multi_node:
            lines.append(f"# node {node.rank} of {launch.plan.nodes} ({node.role}); start the head first")
            lines.append(f': {shell_word(HEAD_IP_SHELL)}')
            if launch.network.detect_iface:
                lines += ["# NCCL/Gloo interface: NET_IFACE, else the one that reaches HEAD_IP on this node "
                          "(--net-iface fixes it when the recipe is written)", DETECT_IFACE_SH.format(head="${HEAD_IP}")]
        args = docker_argv(launch, node)
        lines.append("exec " + " \\\n  ".join(_chunks(args)))
        out[node_file_stem(node, launch.plan.nodes) + ".sh"] = "\n".join(lines) + "\n"
    return out


def _chunks(argv: list[str]) -> list[str]:
    """One line per option with its value; positional words stay on the line before them."""
    lines: list[str] = []
    for i, arg in enumerate(argv):
        word, prev, text = shell_word(arg), plain(argv[i - 1]) if i else "", plain(arg)
        takes_value = i > 0 and prev.startswith("-") and "=" not in prev and not text.startswith("-")
        if lines and (takes_value or not text.startswith("-")):
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


__all__ = ["render_sh", "docker_argv"]
