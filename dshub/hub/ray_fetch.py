"""`dshub download --executor ray`: the files of a download spread over a Ray cluster's nodes, one task per file,
into the shared target directory (checked first: `dshub.raycluster.check_shared`). Each task runs `fetch_file`, the
local path's own: resumed from its partial file, verified against the hub's sha256 (or git sha1), then renamed into
place; the driver records each outcome and writes the one manifest.

The token never travels: a task carries the source's name and endpoint, and the worker builds its own source with
no token, so huggingface_hub reads that node's HF_TOKEN or token file (ModelScope: MODELSCOPE_API_TOKEN). Nothing
secret enters the object store, task arguments, Ray's job table or its logs; a gated repository needs the token in
every node's environment (a KubeRay RayJob from `--emit k8s` sets it from the Secret on every pod).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from dshub import raycluster
from dshub.errors import UsageError
from dshub.hub.fetch import Fetched, Origin, fetch_file
from dshub.hub.layout import Layout
from dshub.hub.manifest import state_dir
from dshub.hub.plan import DownloadPlan, FilePlan
from dshub.hub.redact import redact_url
from dshub.hub.sources import make_source
from dshub.hub.transfer import RetryPolicy

TASK_RETRIES = 3  # a task whose worker dies is retried this often; it resumes from the partial file's bytes
TASK_NAME = "dshub-download-file"


@dataclass(frozen=True)
class FileTask:
    """One file for a worker: what it is, where it lands, where from. No token and no source object (which may hold
    one): the worker builds its source from `source` and `endpoint` alone."""

    plan: FilePlan
    layout: Layout
    source: str
    endpoint: str
    repo_id: str
    commit: str
    retry: RetryPolicy


def fetch_task(task: FileTask) -> Fetched:
    """The Ray task: one file fetched, verified and moved into place on whichever node the scheduler chose."""
    origin = Origin(make_source(task.source, endpoint=task.endpoint), task.repo_id, task.commit)
    return fetch_file(task.plan, task.layout, origin, task.retry, lambda n: None)


def endpoint_of(plan: DownloadPlan) -> str:
    """The endpoint every task is given; one with credentials in it is refused (it would travel with each task)."""
    endpoint = getattr(plan.source, "endpoint", "")
    if redact_url(endpoint) != endpoint:
        raise UsageError(f"--executor ray sends the endpoint to every node; {redact_url(endpoint)} carries credentials: "
                         "give the workers a token in their environment instead")
    return endpoint


def tasks_for(runner: Any, firsts: list[FilePlan]) -> list[FileTask]:
    """The tasks of a download: one per blob."""
    src, m = runner.plan.source, runner.plan.manifest
    assert src is not None
    endpoint = endpoint_of(runner.plan)
    return [FileTask(p, runner.plan.layout, src.name, endpoint, m.repo_id, m.commit, runner.retry) for p in firsts]


@contextlib.contextmanager
def on_cluster(address: str | None, plan: DownloadPlan) -> Iterator[Callable[[Any, list[FilePlan], Any], None]]:
    """Connected to the cluster, every node checked to see the download's state directory (written before any file),
    for the block: yields the runner's `fetch`."""
    endpoint_of(plan)  # refused before connecting
    with raycluster.session(address) as ray:
        raycluster.check_shared(ray, state_dir(plan.root), [], flag="--local-dir",
                                what="the download directory (--local-dir, or the HF cache)")
        yield fetch_with(ray)


def fetch_with(ray: Any) -> Callable[[Any, list[FilePlan], Any], None]:
    """A `Fetch` for the runner: one task per blob on the connected cluster, each outcome recorded as it finishes."""

    def fetch(runner: Any, firsts: list[FilePlan], bar: Any) -> None:
        tasks = tasks_for(runner, firsts)
        remote = ray.remote(fetch_task).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False,
                                                name=TASK_NAME)
        pending = {remote.remote(t): t for t in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    pending.pop(ref)
                    out = raycluster.task_result(ray, ref, "download", TASK_RETRIES)
                    bar.update(out.transferred)
                    runner.record(out, bar)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    return fetch
