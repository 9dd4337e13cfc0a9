"""One module per engine, each turning a Plan into a Launch; registered by engine name in `common.BUILDERS`."""
from __future__ import annotations

from dshub.recipes.engines.common import BUILDERS, register
from dshub.recipes.launch import Launch, RecipeOptions
from dshub.recipes.planner import Plan

from dshub.recipes.engines import vllm, sglang, llamacpp  # noqa: E402,F401  (register)


def build_launch(plan: Plan, opts: RecipeOptions | None = None) -> Launch:
    """The engine's Launch for a plan that has a chosen layout."""
    return BUILDERS.get(plan.engine.name)(plan, opts or RecipeOptions())


__all__ = ["BUILDERS", "build_launch", "register"]
