"""What each kind of step does: the identity of what it reads (`inputs`), its work (`run`) and its dry-run plan
(`plan`). Each kind calls the verb the CLI calls (download, verify, convert, recipe) with the same typed options."""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dshub.checks import verify as verify_structure
from dshub.converters import build_options, run_conversion
from dshub.converters.executors import Job
from dshub.converters.options import TargetOptions
from dshub.errors import StepFailed
from dshub.hub.download import DownloadPlan, download, plan_download, run_download
from dshub.pipeline.model import SOURCE, HubSource, LocalSource, Pipeline, Step
from dshub.quant.registry import Registry
from dshub.recipes import RecipeOptions, Request, plan as plan_recipe, require, write_recipe
from dshub.recipes.api import render_recipe

RUN_ONLY = frozenset({"workers", "device", "after"})  # where and how fast a step runs, not what it produces


def digest(doc: Any) -> str:
    """sha256 of a JSON document in canonical form."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass
class Context:
    """One run of a pipeline: where outputs go, how conversions execute, what the steps so far produced."""

    pipeline: Pipeline
    base: Path  # the pipeline file's directory: relative paths in the file are relative to it
    workdir: Path
    executor: str = "local"
    ray_address: str | None = None
    progress: bool | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> {"dir", "digest"} of this run
    plans: dict[str, Any] = field(default_factory=dict)  # step -> what `inputs` learnt and `run` reuses

    def out_dir(self, step: Step) -> Path:
        out = step.body.out  # type: ignore[attr-defined]
        return (self.base / out).resolve() if out else self.workdir / step.name

    def input_dir(self, step: Step) -> Path:
        name = step.body.input  # type: ignore[attr-defined]
        if name == SOURCE:
            assert isinstance(self.pipeline.source, LocalSource)
            return (self.base / self.pipeline.source.path).resolve()
        return Path(self.outputs[name]["dir"]) if name in self.outputs else self.out_dir(self.step(name))

    def step(self, name: str) -> Step:
        return next(s for s in self.pipeline.steps if s.name == name)

    def options_key(self, step: Step) -> str:
        body = step.body.model_dump(mode="json", exclude=set(RUN_ONLY) | {"out"})
        return digest({"uses": step.kind, "body": body, "out": str(self.out_dir(step))})


class StepKind:
    """A kind of step. `inputs` names what it reads (digests, no secrets); `run` does the work; `plan` sizes it."""

    writes = True  # its output directory is recorded and verified on the next run

    def inputs(self, ctx: Context, step: Step) -> dict[str, Any]:
        name = step.body.input  # type: ignore[attr-defined]
        if name == SOURCE:
            return {"source": str(ctx.input_dir(step)), "digest": ctx.outputs[SOURCE]["digest"]}
        return {"step": name, "digest": ctx.outputs[name]["digest"]}

    def run(self, ctx: Context, step: Step) -> dict[str, Any]:
        raise NotImplementedError

    def plan(self, ctx: Context, step: Step) -> dict[str, Any]:
        raise NotImplementedError


STEP_KINDS: Registry[str, StepKind] = Registry("pipeline step")


def _hub(ctx: Context) -> HubSource:
    assert isinstance(ctx.pipeline.source, HubSource)
    return ctx.pipeline.source


def _token(source: HubSource) -> str | None:
    """The resolved token (the loader replaced the reference); never recorded."""
    return source.token


class Download(StepKind):
    def _plan(self, ctx: Context, step: Step) -> DownloadPlan:
        src, body = _hub(ctx), step.download
        assert body is not None
        return plan_download(src.repo, revision=src.revision, local_dir=ctx.out_dir(step), include=body.include,
                             exclude=body.exclude, source=src.hub, token=_token(src))

    def inputs(self, ctx: Context, step: Step) -> dict[str, Any]:
        plan = ctx.plans[step.name] = self._plan(ctx, step)
        m = plan.manifest
        listed = {p: [f.size, f.sha256 or f.blob_id] for p, f in sorted(m.files.items())}
        return {"repo": m.repo_id, "revision": m.revision, "commit": m.commit, "digest": digest(listed)}

    def run(self, ctx: Context, step: Step) -> dict[str, Any]:
        assert step.download is not None
        res = run_download(ctx.plans[step.name], workers=step.download.workers, progress=bool(ctx.progress),
                           executor=ctx.executor, ray_address=ctx.ray_address)
        if not res.ok:
            first = res.failures[0].message if res.failures else next(c["message"] for c in res.checks if c["severity"] == "error")
            raise StepFailed(f"step {step.name}: download incomplete: {first}; run again to resume")
        return {"fetched": len(res.fetched), "verified": len(res.verified), "bytes_transferred": res.bytes_transferred}

    def plan(self, ctx: Context, step: Step) -> dict[str, Any]:
        plan = ctx.plans.get(step.name) or self._plan(ctx, step)
        totals = plan.to_dict()["totals"]
        return {"files": totals["files"], "bytes": totals["bytes"], "to_download": plan.to_fetch_bytes,
                "writes": plan.to_fetch_bytes, "commit": plan.manifest.commit}


class Verify(StepKind):
    writes = False

    def run(self, ctx: Context, step: Step) -> dict[str, Any]:
        assert step.verify is not None
        report = verify_structure(ctx.input_dir(step), deep=step.verify.deep)
        errors = [f for f in report.findings if f.severity == "error"]
        if errors:
            raise StepFailed(f"step {step.name}: {len(errors)} structural error(s); first: {errors[0]}")
        return {"ok": True, "warnings": sum(f.severity == "warning" for f in report.findings)}

    def plan(self, ctx: Context, step: Step) -> dict[str, Any]:
        return {"writes": 0}


class PlanningInput:
    """For a dry run: the input's directory when it is on disk, else a directory with the source's config.json alone
    (fetched alone into a temporary directory for a hub source: a few kB, no weights), planned as the release layout."""

    def __init__(self, ctx: Context, step: Step):
        self.ctx, self.step = ctx, step
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> tuple[Path, bool]:
        d = self.ctx.input_dir(self.step)
        if (d / "config.json").is_file() or any(d.glob("*.gguf")):
            return d, True
        src = self.ctx.pipeline.source
        if isinstance(src, LocalSource):
            return (self.ctx.base / src.path).resolve(), False
        self._tmp = tempfile.TemporaryDirectory(prefix="dshub-plan-")
        download(src.repo, revision=src.revision, local_dir=self._tmp.name, include=["config.json"], source=src.hub,
                 token=_token(src), verify=False, progress=False)
        return Path(self._tmp.name), False

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class Convert(StepKind):
    def options(self, ctx: Context, step: Step, dry_run: bool = False) -> TargetOptions:
        body = step.convert
        assert body is not None
        values = body.model_dump(exclude={"to", "input", "out", "after", "dry_run"})
        return build_options(body.to, **values, out=ctx.out_dir(step), dry_run=dry_run)

    def run(self, ctx: Context, step: Step) -> dict[str, Any]:
        res = run_conversion(ctx.input_dir(step), self.options(ctx, step), progress=ctx.progress,
                             executor=ctx.executor, ray_address=ctx.ray_address)
        return {"target": res.plan.target, "files_written": len(res.written), "files_resumed": len(res.skipped),
                "bytes": res.plan.total_bytes}

    def plan(self, ctx: Context, step: Step) -> dict[str, Any]:
        with PlanningInput(ctx, step) as (path, on_disk):
            res = run_conversion(path, self.options(ctx, step, dry_run=True))
        doc = {"target": res.plan.target, "files": len(res.plan.files), "writes": res.plan.total_bytes,
               "task_memory": Job(None, None, res.plan, None).task_memory}
        if not on_disk:
            doc["planned_from"] = "the source's config.json (the input is not on disk yet): the release layout"
        return doc


def recipe_model(path: Path) -> Path:
    """What the planner reads for a step's output: the directory, or the first file of a GGUF set."""
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
    return ggufs[0] if ggufs and not (path / "config.json").exists() else path


def weights_of(ctx: Context, step: Step) -> str | None:
    """The weight format a convert step's output will have (for planning before it exists)."""
    name = step.body.input  # type: ignore[attr-defined]
    up = ctx.step(name) if name != SOURCE else None
    conv = up.convert if up is not None else None
    if conv is None:
        return None
    return f"gguf:{conv.quant}" if conv.to == "gguf" else conv.to  # type: ignore[union-attr]


class Recipe(StepKind):
    def _request(self, step: Step, model: Path, weights: str | None) -> Request:
        r = step.recipe
        assert r is not None
        return Request(model=str(model), engine=r.engine, gpu=r.gpu, gpus_per_node=r.gpus_per_node, nodes=r.nodes,
                       weights=weights, context=r.context, goal=r.goal, mtp=r.mtp, kv_dtype=r.kv_dtype)

    def run(self, ctx: Context, step: Step) -> dict[str, Any]:
        r = step.recipe
        assert r is not None
        model = recipe_model(ctx.input_dir(step))
        p = plan_recipe(self._request(step, model, None))
        chosen = require(p).chosen
        assert chosen is not None
        _, files = render_recipe(p, RecipeOptions(model_path=r.model_path or str(model)), r.format)
        write_recipe(files, ctx.out_dir(step))
        return {"layout": chosen.layout.label, "files": sorted(files)}

    def plan(self, ctx: Context, step: Step) -> dict[str, Any]:
        with PlanningInput(ctx, step) as (path, on_disk):
            model = recipe_model(path) if on_disk else path / "config.json"
            p = plan_recipe(self._request(step, model, None if on_disk else weights_of(ctx, step)))
        return {"writes": 0, "layout": p.chosen.layout.label if p.chosen else None,
                "refused": [{"layout": e.layout.label, "reasons": list(e.reasons)} for e in p.evaluations if not e.ok]}


for _name, _kind in (("download", Download()), ("verify", Verify()), ("convert", Convert()), ("recipe", Recipe())):
    STEP_KINDS.add(_name, _kind)
