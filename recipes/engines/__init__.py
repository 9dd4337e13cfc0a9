"""One module per engine, each turning a Plan into a Launch. Registry keyed by engine name."""
from __future__ import annotations

from typing import Callable

from dshub.recipes.launch import Launch, RecipeOptions
from dshub.recipes.planner import Plan

BUILDERS: dict[str, Callable[[Plan, RecipeOptions], Launch]] = {}


def register(name: str) -> Callable:
    def deco(fn: Callable[[Plan, RecipeOptions], Launch]) -> Callable[[Plan, RecipeOptions], Launch]:
        BUILDERS[name] = fn
        return fn

    return deco


def build_launch(plan: Plan, opts: RecipeOptions | None = None) -> Launch:
    """The engine's Launch for a plan that has a chosen layout."""
    return BUILDERS[plan.engine.name](plan, opts or RecipeOptions())


from dshub.recipes.engines import vllm, sglang, llamacpp  # noqa: E402,F401  (register)
