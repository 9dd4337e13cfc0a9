"""What an engine module produces: per node, the exact argv, environment and ports, plus what containers need.

A node's argv is built by the engine for a `NodeRef`: a concrete rank (0 is the head) or, for Kubernetes
LeaderWorkerSet workers, a rank known only inside the pod. Addresses and ranks that only exist where the recipe
runs are shell expressions (`${HEAD_IP}`), which every renderer knows how to pass on.

Values from outside (`--served-model-name`, `--model-path`, a local directory's name) are checked here and marked
inside argv words with `user()`: renderers quote marked text as data, never as shell or Compose syntax. Only our
own text may hold a runtime expression. The marks are control characters, which no checked value can contain.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from dshub.errors import UsageError
from dshub.recipes.planner import Plan

USER_OPEN, USER_CLOSE = "\x02", "\x03"  # around user text inside an argv word, mount path or env value
_USER_TEXT = re.compile(f"{USER_OPEN}(.*?){USER_CLOSE}", re.DOTALL)
# Control, format (bidi overrides), surrogate, private, unassigned, line and paragraph separators: no shell,
# YAML comment or terminal carries these as plain data.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

# The OCI / distribution reference grammar: name[:tag][@digest] (distribution/reference regexp.go).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
OCI_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
OCI_NAME_MAX = 255


def check_value(option: str, value: str, *, argument: bool = False) -> str:
    """`value` unchanged, or UsageError naming `option`: a character no recipe carries safely, or (for an engine
    argument) a leading '-' the engine would read as an option."""
    bad = next((c for c in value if unicodedata.category(c) in UNSAFE_CATEGORIES), None)
    if bad is not None:
        raise UsageError(f"{option} {value!r}: the character {bad!r} cannot be written safely into a recipe")
    if argument and value.startswith("-"):
        raise UsageError(f"{option} {value!r}: a value starting with '-' would be read as an option")
    return value


def check_image(option: str, ref: str) -> str:
    """`ref` unchanged when it is an OCI image reference (name[:tag][@digest]), else UsageError naming `option`."""
    check_value(option, ref)
    m = OCI_REFERENCE.fullmatch(ref)
    if m is None or len(m["name"]) > OCI_NAME_MAX:
        raise UsageError(f"{option} {ref!r}: not an image reference (name[:tag][@digest], lowercase name)")
    return ref


def user(text: str) -> str:
    """Mark `text` (a checked outside value) as data inside a word."""
    return f"{USER_OPEN}{text}{USER_CLOSE}"


def pieces(word: str) -> list[tuple[bool, str]]:
    """A word as (is_user, text) pieces in order; empty pieces of ours left out (an empty user value stays)."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _USER_TEXT.finditer(word):
        out += [(False, word[pos:m.start()]), (True, m[1])]
        pos = m.end()
    out.append((False, word[pos:]))
    return [(u, t) for u, t in out if u or t]


def plain(word: str) -> str:
    """The word as the process receives it: marks removed."""
    return _USER_TEXT.sub(r"\1", word)


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


# The NCCL/Gloo interface when --net-iface was not given: found on each node when the recipe starts (the sh script
# runs `ip route get $HEAD_IP`; Compose takes it from the environment), never assumed to be eth0.
NET_IFACE_REF = "${NET_IFACE:?set NET_IFACE to the network interface that reaches HEAD_IP}"
TCP_WARNING = ("cross-node traffic goes over TCP sockets (NCCL's socket transport): no InfiniBand/RoCE devices are "
               "passed to the containers; on an RDMA fabric pass --rdma (privileged containers, /dev/infiniband, "
               "DeepEP all-to-all) and check `NCCL_DEBUG=INFO` shows NET/IB, not NET/Socket")


@dataclass(frozen=True)
class Network:
    """Multi-node networking (serving.md §6 "Multi-node NCCL hang"). Safe by default: plain TCP sockets, the
    published TCP layouts (SGLang's `--tp 16` for 2x8), the interface found on the node at start. `rdma` opts into
    privileged containers with /dev/infiniband and IPC_LOCK and DeepEP's all-to-all."""

    iface: str | None = None  # None: found on each node when the recipe starts
    ib_hca: str | None = None
    roce: bool = False
    rdma: bool = False

    def __post_init__(self) -> None:
        if self.iface is not None:
            check_value("--net-iface", self.iface)
        if self.ib_hca is not None:
            check_value("--ib-hca", self.ib_hca)

    @property
    def detect_iface(self) -> bool:
        return self.iface is None

    def env(self) -> dict[str, str]:
        """Environment of every node (values from the user marked as data; NET_IFACE_REF ours)."""
        iface = NET_IFACE_REF if self.iface is None else user(self.iface)
        env = {"GLOO_SOCKET_IFNAME": iface, "NCCL_SOCKET_IFNAME": iface}
        if self.ib_hca:
            env["NCCL_IB_HCA"] = user(self.ib_hca)
        if self.roce:
            env["NCCL_IB_GID_INDEX"] = "3"  # RoCE v2 GID (sglang#3516; LWS example)
            if self.rdma:
                env["NVSHMEM_IB_GID_INDEX"] = "3"  # DeepEP's NVSHMEM on RoCE (sglang lws_pd d.yaml)
        return env


@dataclass(frozen=True)
class RecipeOptions:
    """Recipe choices that do not change the memory plan."""

    image: str | None = None
    model_path: str | None = None  # where the weights are on the node (host path); default: hub id or /models/...
    network: Network = field(default_factory=Network)
    served_name: str | None = None
    experimental: bool = False  # the engines' experimental switches (recipes.env rules marked experimental)

    def __post_init__(self) -> None:
        if self.image:
            check_image("--image", self.image)
        if self.model_path:
            check_value("--model-path", self.model_path, argument=True)
        if self.served_name is not None:
            check_value("--served-model-name", self.served_name, argument=True)


@dataclass
class NodeLaunch:
    """One node's process."""

    role: str  # "server" (single node), "head", "worker"
    rank: int | None
    argv: list[str]
    env: dict[str, str]
    ports: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "rank": self.rank, "argv": [plain(a) for a in self.argv],
                "env": {k: plain(v) for k, v in sorted(self.env.items())},
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
    warnings: list[str] = field(default_factory=list)  # printed on stderr when the recipe is written
    needs_hf_token: bool = True
    network: Network = field(default_factory=Network)

    @property
    def multi_node(self) -> bool:
        return self.plan.nodes > 1

    def nodes(self, head_address: str, container: bool) -> list[NodeLaunch]:
        return [self.build_node(NodeRef(r, head_address), container) for r in range(self.plan.nodes)]


def role_for(ref: NodeRef, nodes: int) -> str:
    return "server" if nodes == 1 else ("head" if ref.is_head else "worker")
