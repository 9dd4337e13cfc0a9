"""Ray, shared by every command that spreads work over a cluster (`convert --executor ray`, `download --executor ray`):
importing it (missing: a usage error), connecting (driver logs on stderr), the shared-filesystem check every run
does first, and a task's failure brought back as one line.

Ray is an optional dependency (`pip install 'dshub[ray]'`). Ray facts used here (docs.ray.io, Ray 2.x):
`NodeAffinitySchedulingStrategy(node_id, soft=False)` pins a task to one node; `ray.nodes()` lists nodes with
`Alive`, `NodeID`, `NodeManagerAddress`; a task's exception reaches the driver as `RayTaskError` whose `.cause` is the
original exception; `RayError` is the base of the rest (worker crashed past its retries, node lost).
"""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from dshub.errors import ExecutorError, UsageError

RAY_HINT = "install it with: pip install 'dshub[ray]'"
PROBE_TIMEOUT_S = 300  # every node answers the marker probe within this, or the run stops
MARKER_PREFIX = ".dshub-shared-"


def require_ray() -> Any:
    """The `ray` module; without it, a usage error (raised before any work)."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed; {RAY_HINT}") from None
    return ray


def check_executor(name: str, known: Iterable[str], address: str | None) -> None:
    """Refuse an unknown `--executor`, Ray without Ray installed, or `--ray-address` for another executor (before any
    work; every command with `--executor` calls this with its own executors' names)."""
    known = list(known)
    if name not in known:
        raise UsageError(f"--executor {name!r}: choose one of {', '.join(known)}")
    if name == "ray":
        require_ray()  # imported here, so that a missing Ray is a usage error before any work
    if name != "ray" and address:
        raise UsageError("--ray-address is for --executor ray")


def connect(address: str | None) -> tuple[Any, bool]:
    """Ray, connected to `address` (None: RAY_ADDRESS, else a new local cluster); True when this call connected."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
        raise ExecutorError(f"cannot connect to the Ray cluster at {where}: {str(e).splitlines()[0]} (a cluster "
                            "with token auth needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN here too)") from None
    return ray, True


@contextlib.contextmanager
def session(address: str | None) -> Iterator[Any]:
    """Connected for the block, disconnected after when this block connected. Ray's driver prints cluster events (a
    worker died, its task retried) on stdout; they are logs, so stdout goes to stderr meanwhile (`--json` stays one
    document)."""
    with contextlib.redirect_stdout(sys.stderr):
        ray, connected = connect(address)
        try:
            yield ray
        finally:
            if connected:
                ray.shutdown()


def _probe(marker: str, token: str, paths: list[str]) -> str | None:
    """On one node: None when the driver's marker and the paths are visible there, else what is not."""
    try:
        if Path(marker).read_text() != token:
            return f"sees another {marker}"
    except OSError:
        return f"does not see {marker}"
    missing = [p for p in paths if not Path(p).exists()]
    return f"does not see {missing[0]}" if missing else None


def check_shared(ray: Any, where: Path, inputs: list[Path], *, flag: str, what: str) -> None:
    """Every alive node must see a marker the driver writes into `where` now, and each of `inputs`: else one error
    naming the node. `flag` names the option that chose `where` (`--out`, `--local-dir`); `what` the directories
    that must be shared ("input and --out")."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    marker = where / f"{MARKER_PREFIX}{token}"
    marker.write_text(token)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(_probe)
        refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker), token, [str(p) for p in inputs]) for n in nodes]
        for node, why in zip(nodes, ray.get(refs, timeout=PROBE_TIMEOUT_S)):
            if why is not None:
                raise ExecutorError(f"Ray node {node.get('NodeManagerAddress')} {why}: {what} must be on a filesystem "
                                    "every node mounts (NFS, Lustre, an object-store mount)",
                                    path=str(where), show_path=f"{flag} {where}")
    finally:
        marker.unlink(missing_ok=True)


def task_result(ray: Any, ref: Any, what: str, retries: int) -> Any:
    """The value of a finished task; its own dshub error raised as it was, anything else one `ExecutorError` line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None  # the task's own error (one line, its exit code)
        raise ExecutorError(f"a {what} task failed on the cluster: {str(e).splitlines()[0]}") from None
    except ray.exceptions.RayError as e:  # retries exhausted, node lost
        raise ExecutorError(f"a {what} task failed on the cluster after {retries} retries: "
                            f"{str(e).splitlines()[0]}") from None
