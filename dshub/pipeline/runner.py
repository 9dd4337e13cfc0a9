"""Run a pipeline: steps in dependency order, each skipped when what it read, its options and its recorded outputs
are unchanged; the run report written after every step, so a killed run leaves a true report and a rerun resumes."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from dshub.converters.executors import EXECUTORS, check_executor
from dshub.errors import DshubError, UsageError
from dshub.fsutil import DISK_MARGIN, free_space
from dshub.pipeline.graph import ordered
from dshub.pipeline.k8s import k8s_objects
from dshub.pipeline.loader import Loaded, load
from dshub.pipeline.model import SOURCE, LocalSource, Step
from dshub.pipeline.report import DONE, REPORT_NAME, RunReport, changed_output, record_outputs, source_digest
from dshub.pipeline.steps import STEP_KINDS, Context
from dshub.hub.hashing import sha256_file


def _context(loaded: Loaded, executor: str, ray_address: str | None, progress: bool | None) -> Context:
    return Context(loaded.pipeline, loaded.path.parent.resolve(), loaded.workdir, executor, ray_address, progress)


def _raw_body(loaded: Loaded, step: Step) -> Any:
    """The step as written in the file (references such as ${HF_TOKEN} unresolved): what the report records."""
    i = loaded.pipeline.steps.index(step)
    return loaded.raw["steps"][i]


def _local_source(ctx: Context, loaded: Loaded) -> None:
    src = ctx.pipeline.source
    if isinstance(src, LocalSource):
        root = (ctx.base / src.path).resolve()
        if not root.is_dir():
            raise loaded.error(("source", "path"), f"{root} is not a directory")
        ctx.outputs[SOURCE] = {"dir": str(root), "digest": None}


def _why_rerun(prev: dict[str, Any] | None, key: str, inputs: dict[str, Any]) -> str | None:
    """Why a recorded step cannot be kept as is (before looking at its outputs), or None."""
    if prev is None or prev.get("status") not in DONE:
        return "not run before" if prev is None else f"the last run ended it {prev.get('status')}"
    if prev.get("options_sha256") != key:
        return "its options changed"
    if prev.get("inputs") != inputs:
        return "its input changed"
    return None


def _one(ctx: Context, loaded: Loaded, step: Step, prev: dict[str, Any] | None) -> dict[str, Any]:
    kind = STEP_KINDS.get(step.kind)
    t0 = time.monotonic()
    inputs = kind.inputs(ctx, step)
    key = ctx.options_key(step)
    reason = _why_rerun(prev, key, inputs)
    if reason is None and kind.writes:
        reason = changed_output(prev["outputs"])  # type: ignore[index]
    rec: dict[str, Any] = {"uses": step.kind, "options": _raw_body(loaded, step), "options_sha256": key,
                           "inputs": inputs}
    if reason is None:
        assert prev is not None
        rec.update(status="skipped", reason="inputs, options and outputs unchanged", outputs=prev.get("outputs"),
                   detail=prev.get("detail", {}))
    else:
        rec.update(status="ran", reason=reason, detail=kind.run(ctx, step),
                   outputs=record_outputs(ctx.out_dir(step)) if kind.writes else None)
    rec["seconds"] = round(time.monotonic() - t0, 3)
    return rec


def run_pipeline(path: str | os.PathLike[str], *, dry_run: bool = False, executor: str = "local",
                 ray_address: str | None = None, progress: bool | None = None,
                 env: Mapping[str, str] | None = None) -> RunReport:
    """`dshub run PIPELINE.yaml`: the report of the run (or, with `dry_run`, of the plan)."""
    loaded = load(path, env)
    steps = ordered(loaded)
    check_executor(executor, ray_address)
    ctx = _context(loaded, executor, ray_address, progress)
    _local_source(ctx, loaded)
    report = RunReport(ctx.workdir / REPORT_NAME, str(loaded.path), source=loaded.raw["source"], dry_run=dry_run)
    if dry_run:
        return _plan(ctx, steps, report)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    if SOURCE in ctx.outputs:
        ctx.outputs[SOURCE]["digest"] = source_digest(Path(ctx.outputs[SOURCE]["dir"]), ctx.workdir)
    previous = RunReport.previous(ctx.workdir)
    report.pipeline_sha256 = sha256_file(loaded.path)
    for step in steps:
        try:
            rec = _one(ctx, loaded, step, previous.get(step.name))
        except DshubError as e:
            report.steps[step.name] = {"uses": step.kind, "status": "failed", "error": str(e)}
            report.save()
            raise
        report.steps[step.name] = rec
        if rec.get("outputs"):
            ctx.outputs[step.name] = {"dir": rec["outputs"]["dir"], "digest": rec["outputs"]["digest"]}
        report.save()
    report.ok = True
    report.save()
    return report


def emit_k8s(path: str | os.PathLike[str], *, executor: str = "local", name: str = "dshub-pipeline",
             image: str | None = None, cpus: int = 8, nodes: int = 2,
             env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """`dshub run PIPELINE.yaml --emit k8s`: the pipeline's Kubernetes objects, sized by its dry-run plan."""
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    report = run_pipeline(path, dry_run=True, env=env)
    loaded = load(path, env)
    return k8s_objects(loaded.pipeline, loaded.path.read_text(encoding="utf-8"), report.to_dict(), name=name,
                       executor=executor, image=image, cpus=cpus, nodes=nodes)


def _plan(ctx: Context, steps: list[Step], report: RunReport) -> RunReport:
    """Every step's plan before any byte moves: bytes to download and to write, the disk needed at the peak (every
    output is kept), and the layouts each recipe step's planner refuses, with the reasons."""
    total = 0
    for step in steps:
        doc = STEP_KINDS.get(step.kind).plan(ctx, step)
        report.steps[step.name] = {"uses": step.kind, "status": "planned", "plan": doc}
        total += int(doc.get("writes", 0))
    free = free_space(ctx.workdir)
    report.plan = {"bytes_to_write": total, "peak_disk": total, "free": free, "fits": free >= total * DISK_MARGIN,
                   "workdir": str(ctx.workdir)}
    report.ok = True
    return report
