"""What an engine module produces: per node, the exact argv, environment and ports, plus what containers need.

A node's argv is built by the engine for a `NodeRef`: a concrete rank (0 is the head) or, for Kubernetes
LeaderWorkerSet workers, a rank known only inside the pod. Addresses and ranks that only exist where the recipe
runs are shell expressions (`${HEAD_IP}`), which every renderer knows how to pass on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from dshub.recipes.planner import Plan


@dataclass(frozen=True)
class NodeRef:
    """Which node an argv is for. `rank` is an int, or None inside an LWS worker pod (rank from $LWS_WORKER_INDEX)."""

    rank: int | None
    head_address: str  # node 0's address, or a shell expression for it

    @property
    def is_head(self) -> bool:
        return self.rank == 0

    def rank_str(self, times: int = 1, plus: int = 0) -> str:
        """`rank * times + plus` as text: a number, or shell arithmetic on $LWS_WORKER_INDEX."""
        if self.rank is not None:
            return str(self.rank * times + plus)
        expr = "LWS_WORKER_INDEX" + (f" * {times}" if times != 1 else "") + (f" + {plus}" if plus else "")
        return f"$(({expr}))" if (times != 1 or plus) else "${LWS_WORKER_INDEX}"


@dataclass(frozen=True)
class Network:
    """Multi-node networking the NCCL/Gloo hang reports keep asking for (serving.md §6 "Multi-node NCCL hang")."""

    iface: str = "eth0"
    ib_hca: str | None = None
    roce: bool = False
    rdma: bool = False  # privileged pod / container with /dev/infiniband and IPC_LOCK

    def env(self) -> dict[str, str]:
        env = {"GLOO_SOCKET_IFNAME": self.iface, "NCCL_SOCKET_IFNAME": self.iface}
        if self.ib_hca:
            env["NCCL_IB_HCA"] = self.ib_hca
        if self.roce:
            env["NCCL_IB_GID_INDEX"] = "3"
        return env


@dataclass(frozen=True)
class RecipeOptions:
    """Recipe choices that do not change the memory plan."""

    image: str | None = None
    model_path: str | None = None  # where the weights are on the node (host path); default: hub id or /models/...
    network: Network = field(default_factory=Network)
    served_name: str | None = None


@dataclass
class NodeLaunch:
    """One node's process."""

    role: str  # "server" (single node), "head", "worker"
    rank: int | None
    argv: list[str]
    env: dict[str, str]
    ports: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "rank": self.rank, "argv": list(self.argv), "env": dict(sorted(self.env.items())),
                "ports": list(self.ports)}


@dataclass
class Mount:
    """A host directory the server needs inside its container."""

    host: str
    container: str
    name: str


@dataclass
class Launch:
    """An engine's recipe for a plan. `node(ref, container)` builds any node's process; `nodes()` the concrete ones."""

    plan: Plan
    engine: str
    version: str
    image: str
    port: int
    model_arg_host: str
    model_arg_container: str
    mounts: list[Mount]
    build_node: Callable[[NodeRef, bool], NodeLaunch]
    vendor: str
    notes: list[str] = field(default_factory=list)
    needs_hf_token: bool = True
    network: Network = field(default_factory=Network)

    @property
    def multi_node(self) -> bool:
        return self.plan.nodes > 1

    def nodes(self, head_address: str, container: bool) -> list[NodeLaunch]:
        return [self.build_node(NodeRef(r, head_address), container) for r in range(self.plan.nodes)]


def role_for(ref: NodeRef, nodes: int) -> str:
    return "server" if nodes == 1 else ("head" if ref.is_head else "worker")
