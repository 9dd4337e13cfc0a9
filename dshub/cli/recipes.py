"""Commands: plan (memory planner) and recipe (engine launch configs)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dshub.recipes import FORMATS, Network, RecipeOptions, Request, plan as run_plan, require, write_recipe
from dshub.recipes.api import render_recipe
from dshub.recipes.planner import GB
from dshub.recipes.render import summary_lines
from dshub.recipes.render.jsondoc import recipe_doc

from dshub.cli.options import (ContextOpt, EngineOpt, FractionOpt, GoalOpt, GpnOpt, GpuMemoryOpt, GpuOpt, HostRamOpt, JsonOpt, KvOpt, ModelArg, MtpOpt,
                               NodesOpt, VersionOpt, WeightsOpt, choice)
from dshub.cli.output import err_console, on_failure, out_console, print_json


def _request(model: str, engine: str, gpu: str, gpus_per_node: Optional[int], nodes: int, weights: Optional[str],
             context: Optional[int], goal: str, mtp: Optional[bool], kv_dtype: Optional[str],
             memory_fraction: Optional[float], engine_version: Optional[str], gpu_memory: Optional[str],
             host_ram: Optional[str]) -> Request:
    return Request(model=model, engine=engine, gpu=gpu, gpus_per_node=gpus_per_node, nodes=nodes, weights=weights,
                   context=context, goal=goal, mtp=mtp, kv_dtype=kv_dtype, memory_fraction=memory_fraction,
                   engine_version=engine_version, gpu_memory=gpu_memory, host_ram=host_ram)


def _verdict(e) -> str:
    word = "[green]yes[/]" if e.ok else "[red]no[/]"
    return f"{word} [yellow](borderline)[/]" if e.borderline else word


def _print_plan(p) -> None:
    summary = summary_lines(p)
    out_console.print(f"[bold]{escape(summary[0])}[/]")  # summaries carry user-given names
    t = Table("layout", "kind", "weights/GPU", "KV/GPU", "KV tokens", "max ctx", "fits")
    for e in p.evaluations:
        t.add_row(e.layout.label, e.layout.kind, f"{e.weights_per_gpu / GB:.1f} GB", f"{e.kv_budget_per_gpu / GB:.1f} GB",
                  f"{e.tokens_per_group:,}", f"{e.max_context:,}", _verdict(e))
    out_console.print(t)
    for line in summary[1:]:
        out_console.print(line, soft_wrap=True, markup=False)
    for alt in p.alternatives:
        out_console.print(f"works instead: {alt}", soft_wrap=True, markup=False)


def plan(
    model: ModelArg,
    gpu: GpuOpt = "h200",
    gpu_memory: GpuMemoryOpt = None,
    host_ram: HostRamOpt = None,
    gpus_per_node: GpnOpt = None,
    nodes: NodesOpt = 1,
    weights: WeightsOpt = None,
    context: ContextOpt = None,
    engine: EngineOpt = "vllm",
    goal: GoalOpt = "latency",
    mtp: MtpOpt = None,
    kv_dtype: KvOpt = None,
    memory_fraction: FractionOpt = None,
    engine_version: VersionOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Size MODEL on GPUs: weights per GPU for each parallel layout, MLA KV cache, max context x concurrency."""
    req = _request(model, engine, gpu, gpus_per_node, nodes, weights, context, goal, mtp, kv_dtype, memory_fraction,
                   engine_version, gpu_memory, host_ram)
    p = run_plan(req)
    for w in p.warnings:
        err_console.print(f"warning: {w}", soft_wrap=True, markup=False, highlight=False)
    if p.chosen is None:
        on_failure(p.to_dict())  # a refused plan: the failure document carries it, with the reasons
    elif json_:
        print_json(p.to_dict())
    if not json_:
        _print_plan(p)
    require(p)


def recipe(
    model: ModelArg,
    engine: EngineOpt = "vllm",
    gpu: GpuOpt = "h200",
    gpu_memory: GpuMemoryOpt = None,
    host_ram: HostRamOpt = None,
    gpus_per_node: GpnOpt = None,
    nodes: NodesOpt = 1,
    goal: GoalOpt = "latency",
    weights: WeightsOpt = None,
    context: ContextOpt = None,
    mtp: MtpOpt = None,
    kv_dtype: KvOpt = None,
    memory_fraction: FractionOpt = None,
    engine_version: VersionOpt = None,
    image: Annotated[Optional[str], typer.Option("--image", help="Container image (default: the engine's release image).")] = None,
    model_path: Annotated[Optional[str], typer.Option("--model-path", help="Where the weights are on each node (dir, or first GGUF split).")] = None,
    served_name: Annotated[Optional[str], typer.Option("--served-model-name", help="Model name clients ask for (default: the catalog name).")] = None,
    fmt: Annotated[str, choice("--format", " | ".join(FORMATS))] = "sh",
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory to write the files into (default: print them).")] = None,
    net_iface: Annotated[Optional[str], typer.Option("--net-iface", help="NIC for NCCL/Gloo on multi-node runs (default: found on each node at start, `ip route get $HEAD_IP`).")] = None,
    ib_hca: Annotated[Optional[str], typer.Option("--ib-hca", help="NCCL_IB_HCA, e.g. mlx5.")] = None,
    roce: Annotated[bool, typer.Option("--roce", help="RoCE fabric: NCCL_IB_GID_INDEX=3.")] = False,
    rdma: Annotated[bool, typer.Option("--rdma", help="InfiniBand/RoCE: privileged containers with /dev/infiniband and IPC_LOCK, DeepEP all-to-all (default: TCP sockets).")] = False,
    experimental: Annotated[bool, typer.Option("--experimental", help="Also the engines' experimental switches (e.g. SGLang's SGLANG_ENABLE_SPEC_V2 with MTP).")] = False,
    json_: JsonOpt = False,
) -> None:
    """Write a serving recipe for MODEL: the planner's layout, the engine's flags, as sh | compose | k8s | json."""
    req = _request(model, engine, gpu, gpus_per_node, nodes, weights, context, goal, mtp, kv_dtype, memory_fraction,
                   engine_version, gpu_memory, host_ram)
    opts = RecipeOptions(image=image, model_path=model_path, network=Network(net_iface, ib_hca, roce, rdma),
                         served_name=served_name, experimental=experimental)
    p = run_plan(req)
    on_failure({"files": [], "recipe": None, "plan": p.to_dict()})
    require(p)
    launch, files = render_recipe(p, opts, fmt)
    for w in launch.warnings:
        err_console.print(f"warning: {w}", soft_wrap=True, markup=False, highlight=False)
    written = write_recipe(files, out) if out else []
    if json_:
        print_json({"files": [str(w) for w in written], "recipe": recipe_doc(launch)})
        return
    if out:
        for line in summary_lines(launch.plan):
            out_console.print(line, soft_wrap=True, markup=False)
        for w in written:
            out_console.print(f"wrote {w}", markup=False)
        return
    for line in summary_lines(launch.plan):
        err_console.print(line, soft_wrap=True, markup=False)
    for name, text in files.items():
        if len(files) > 1:
            typer.echo(f"# ==> {name} <==")
        typer.echo(text, nl=False)
