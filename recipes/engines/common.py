"""What the engine modules share: their registry, where the model comes from, version gates, the launch skeleton."""
from __future__ import annotations

import os
import posixpath
from typing import Callable

from dshub.arch.family import ServingFacts
from dshub.errors import UsageError
from dshub.quant.registry import Registry

from dshub.recipes.engine_facts import UNPINNED_TAGS, family_facts, image_for, version_key
from dshub.recipes.env import engine_env
from dshub.recipes.launch import (TCP_WARNING, Launch, Mount, NodeLaunch, NodeRef, RecipeOptions, check_image, check_value,
                                  role_for, user)
from dshub.recipes.planner import Plan

# engine name -> its Plan -> Launch builder (each engine module registers itself)
BUILDERS: Registry[str, Callable[[Plan, RecipeOptions], Launch]] = Registry("recipe engine")
register = BUILDERS.register

# The HF cache on the host, as huggingface_hub finds it: $HF_HOME, else ~/.cache/huggingface. Expanded where the
# recipe runs (sh, Compose), so it is the node's own cache; always an absolute path, never a named volume.
HF_CACHE_HOST = "${HF_HOME:-${HOME}/.cache/huggingface}"
MODELS_DIR = "/models"


def host_path(option: str, value: str) -> str:
    """`value` as the absolute host path a bind mount needs (`~` and a relative path resolved now, against this
    machine's home and working directory): Docker reads a relative `-v name:dir` as a named volume and mounts an
    empty one; Compose resolves it against the compose file's directory. Checked: a bind mount is `host:dir`."""
    check_value(option, value, argument=True)
    if posixpath.basename(value.rstrip("/")) in (".", ".."):
        raise UsageError(f"{option} {value!r}: name the directory itself (it is mounted at {MODELS_DIR}/<its name>)")
    absolute = check_value(option, os.path.abspath(os.path.expanduser(value)))
    if ":" in absolute:
        raise UsageError(f"{option} {absolute!r}: a path with ':' cannot be bind-mounted (`-v host:container`)")
    return absolute


def local_path(opts: RecipeOptions, m_path: str | None) -> str:
    """The weights' absolute host path (--model-path, else the local checkpoint)."""
    option, host = ("--model-path", opts.model_path) if opts.model_path else ("MODEL", str(m_path))
    return host_path(option, host)


def model_source(p: Plan, opts: RecipeOptions) -> tuple[str, str, list[Mount], list[str]]:
    """(argument on a host, argument in a container, mounts, notes) for the model weights; user paths marked."""
    eng, m, fmt = p.engine, p.model, p.weights
    if opts.model_path or m.source == "local":
        host = local_path(opts, m.path)
        base = user(posixpath.basename(host.rstrip("/")))
        if fmt.is_gguf and host.endswith(".gguf"):
            parent = posixpath.dirname(host) or "."
            return user(host), f"{MODELS_DIR}/{base}", [Mount(user(parent), MODELS_DIR, "models")], []
        return user(host), f"{MODELS_DIR}/{base}", [Mount(user(host), f"{MODELS_DIR}/{base}", "models")], []
    if fmt.is_gguf:
        path = f"{MODELS_DIR}/{m.name}-{fmt.gguf_type}.gguf"
        note = (f"expects the GGUF at {path} (for a split set, the -00001-of-N file); make it with "
                f"`dshub convert {m.hub_id} --to gguf` or pass --model-path")
        return path, path, [Mount(MODELS_DIR, MODELS_DIR, "models")], [note]
    if fmt.name == m.shipped:
        return m.hub_id or m.name, m.hub_id or m.name, [Mount(HF_CACHE_HOST, eng.model_cache, "hf-cache")], []
    path = f"{MODELS_DIR}/{m.name}-{fmt.name}"
    note = f"expects {fmt.name} weights at {path}: `dshub convert {m.hub_id} --to {fmt.name} --out {path}`"
    return path, path, [Mount(MODELS_DIR, MODELS_DIR, "models")], [note]


def served_name(p: Plan, opts: RecipeOptions) -> str:
    """The name clients ask for: --served-model-name, else the model's name (a local one marked as user text)."""
    if opts.served_name is not None:
        return user(opts.served_name)
    return user(check_value("MODEL", p.model.name, argument=True)) if p.model.source == "local" else p.model.name


def check_version(p: Plan, fam: ServingFacts) -> None:
    if fam.min_version and version_key(p.engine_version) < version_key(fam.min_version):
        raise UsageError(f"--engine-version {p.engine_version}: {p.model.name} needs {p.engine.name} >= "
                         f"{fam.min_version} ({fam.min_version_source})")
    if p.gpu.vendor in fam.unsupported_vendors:
        raise UsageError(f"{p.model.name} is not supported by {p.engine.name} on {p.gpu.vendor.upper()} GPUs")


def make_launch(p: Plan, opts: RecipeOptions, args_for: Callable[[NodeRef, str], list[str]],
                extra_env: Callable[[NodeRef], dict[str, str]] | None = None, notes: list[str] | None = None,
                needs_hf_token: bool = True) -> Launch:
    """Assemble a Launch: `args_for(ref, model_arg)` gives the argv after the engine's executable."""
    eng = p.engine
    fam = family_facts(eng.name, p.model.family)
    check_version(p, fam)
    host_arg, container_arg, mounts, src_notes = model_source(p, opts)
    base_env = engine_env(p, opts.experimental)
    net_env = opts.network.env() if p.nodes > 1 else {}

    def build(ref: NodeRef, container: bool) -> NodeLaunch:
        exe = eng.container_argv if container else eng.host_argv
        model_arg = container_arg if container else host_arg
        env = {**base_env, **net_env, **(extra_env(ref) if extra_env else {})}
        ports = [eng.port] if ref.is_head else []
        return NodeLaunch(role_for(ref, p.nodes), ref.rank, [*exe, *args_for(ref, model_arg)], env, ports)

    image = image_for(eng, p.gpu, p.engine_version, opts.image)
    check_image("--image" if opts.image else f"--engine-version {p.engine_version!r}: image", image)
    if image.rsplit(":", 1)[-1] in UNPINNED_TAGS:
        notes = [*(notes or []), f"{image} is not pinned to {eng.name} {p.engine_version}: pin a digest (or --image) "
                                 "so every node runs the same build"]
    warnings = [*p.warnings, *([TCP_WARNING] if p.nodes > 1 and not opts.network.rdma else [])]
    return Launch(p, eng.name, p.engine_version, image, eng.port, host_arg, container_arg, mounts, build,
                  p.gpu.vendor, notes=[*p.notes, *src_notes, *(notes or [])], warnings=warnings,
                  needs_hf_token=needs_hf_token, network=opts.network)
