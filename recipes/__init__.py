"""Deployment recipes: hardware and model facts, a memory planner, one Launch per engine, and renderers.

Library entry points: `plan(Request)` (recipes.planner) and `make_recipe(Request, RecipeOptions, fmt)`.
"""
from __future__ import annotations

from dshub.recipes.api import FORMATS, make_recipe, write_recipe
from dshub.recipes.launch import Network, RecipeOptions
from dshub.recipes.planner import Plan, Request, plan, require

__all__ = ["FORMATS", "make_recipe", "write_recipe", "Network", "RecipeOptions", "Plan", "Request", "plan", "require"]
