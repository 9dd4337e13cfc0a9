"""Renderers: a Launch as shell scripts, docker compose files, Kubernetes manifests or one JSON document.
Each returns {file name: text}; every file carries the plan it came from."""
from __future__ import annotations

from typing import Callable

from dshub.quant.registry import Registry
from dshub.recipes.launch import Launch
from dshub.recipes.render.common import summary_lines
from dshub.recipes.render.compose import render_compose
from dshub.recipes.render.jsondoc import render_json
from dshub.recipes.render.k8s import render_k8s
from dshub.recipes.render.sh import render_sh

RENDERERS: Registry[str, Callable[[Launch], dict[str, str]]] = Registry("recipe --format")
for _name, _render in (("sh", render_sh), ("compose", render_compose), ("k8s", render_k8s), ("json", render_json)):
    RENDERERS.add(_name, _render)

__all__ = ["RENDERERS", "summary_lines"]
