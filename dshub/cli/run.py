"""Command: run (a declarative pipeline file: download, verify, convert, recipe steps; one run report)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from importlib import import_module

from dshub.errors import UsageError
from dshub.pipeline import emit_k8s, pipeline_schema, render_k8s, run_pipeline

from dshub.cli.format import human
from dshub.cli.options import DryRunOpt, ExecutorOpt, JsonOpt, RayAddressOpt
from dshub.cli.output import out_console, print_json

_CLICK_ERRORS = import_module(typer.BadParameter.__module__)  # click's exceptions, or typer's own copy of them


def _plan_line(name: str, step: dict[str, Any]) -> str:
    doc = step["plan"]
    parts = [f"{name}: {step['uses']}"]
    if "to_download" in doc:
        parts.append(f"download {human(doc['to_download'])} of {human(doc['bytes'])} ({doc['files']} files)")
    elif step["uses"] == "convert":
        parts.append(f"write {human(doc['writes'])} as {doc['target']} ({doc['files']} files)")
    if step["uses"] == "recipe":
        parts.append(f"layout {doc['layout'] or 'none fits'}")
    return ", ".join(parts)


def _print_plan(doc: dict[str, Any]) -> None:
    for name in doc["order"]:
        step = doc["steps"][name]
        out_console.print(_plan_line(name, step), soft_wrap=True, markup=False)
        for r in step["plan"].get("refused", []):
            out_console.print(f"  refused {r['layout']}: {'; '.join(r['reasons'])}", soft_wrap=True, markup=False)
    p = doc["plan"]
    out_console.print(f"disk at the peak: {human(p['peak_disk'])}, {human(p['free'])} free at {p['workdir']}"
                      + ("" if p["fits"] else " (does not fit)"), soft_wrap=True, markup=False)


def _print_report(doc: dict[str, Any]) -> None:
    for name in doc["order"]:
        step = doc["steps"][name]
        out_console.print(f"{name}: {step['uses']} {step['status']} ({step['reason']}, {step['seconds']:.1f} s)",
                          soft_wrap=True, markup=False)
    ran = doc["ran"]
    out_console.print(f"nothing to do: all {len(doc['steps'])} steps unchanged and verified" if not ran
                      else f"ran {len(ran)} of {len(doc['steps'])} steps: {', '.join(ran)}; report {doc['report']}",
                      soft_wrap=True, markup=False)


def run(
    pipeline: Annotated[Optional[Path], typer.Argument(help="Pipeline file (YAML); see examples/pipeline.yaml.")] = None,
    dry_run: DryRunOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    schema: Annotated[bool, typer.Option("--schema", help="Print the pipeline file's JSON Schema and exit.")] = False,
    emit: Annotated[Optional[str], typer.Option("--emit", help="k8s: print a Job (--executor local) or KubeRay RayJob (ray) that runs the pipeline, sized by its plan.")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="--emit: container image with dshub and Ray installed.")] = None,
    name: Annotated[str, typer.Option("--name", help="--emit: name of the Kubernetes objects.")] = "dshub-pipeline",
    cpus: Annotated[int, typer.Option("--cpus", min=1, help="--emit: CPUs per pod (memory follows from the plan).")] = 8,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="--emit with --executor ray: Ray worker pods.")] = 2,
    json_: JsonOpt = False,
) -> None:
    """Run a pipeline file: its steps in dependency order, unchanged and verified ones skipped, one run report.

    Exit 0 done, 1 a step failed, 2 a bad pipeline file (one line: file, line, what)."""
    if schema:
        print_json(pipeline_schema())
        return
    if pipeline is None:  # optional only for --schema; otherwise missing like any required argument
        raise _CLICK_ERRORS.MissingParameter(param_type="argument", param_hint="'PIPELINE' (or --schema)")
    if emit is not None:
        if emit != "k8s":
            raise UsageError(f"--emit {emit!r}: choose k8s")
        docs = emit_k8s(pipeline, executor=executor, name=name, image=image, cpus=cpus, nodes=nodes)
        if json_:
            print_json({"objects": docs})
        else:
            typer.echo(render_k8s(docs), nl=False)
        return
    report = run_pipeline(pipeline, dry_run=dry_run, executor=executor, ray_address=ray_address)
    doc = report.to_dict()
    if json_:
        print_json(doc)
    elif dry_run:
        _print_plan(doc)
    else:
        _print_report(doc)
