"""Steps in dependency order: every `input` / `after` names an earlier-or-later step (or `source`), no cycle."""
from __future__ import annotations

from dshub.pipeline.loader import Loaded
from dshub.pipeline.model import SOURCE, HubSource, Step

READABLE = ("download", "convert")  # steps whose output another step may take as `input`


def _field(step: Step, name: str) -> str:
    return "input" if getattr(step.body, "input", None) == name else "after"


def check_references(loaded: Loaded) -> dict[str, Step]:
    """Steps by name; a duplicate name, a reference to no step, or an input that is not a checkpoint is an error."""
    steps: dict[str, Step] = {}
    for i, step in enumerate(loaded.pipeline.steps):
        if step.name in steps or step.name == SOURCE:
            raise loaded.error(("steps", i, "name"), f"step name {step.name!r} is "
                               + ("reserved for the local source" if step.name == SOURCE else "used twice"))
        steps[step.name] = step
    hub = isinstance(loaded.pipeline.source, HubSource)
    for i, step in enumerate(loaded.pipeline.steps):
        if step.kind == "download" and not hub:
            raise loaded.error(("steps", i, "download"), "a download step needs a hub source (source: {repo: ...})")
        src = getattr(step.body, "input", None)
        for ref in step.needs:
            loc = ("steps", i, step.kind, _field(step, ref))
            if ref == SOURCE and ref == src:
                if hub:
                    raise loaded.error(loc, "a hub source is read through a download step: name that step as input")
                continue
            if ref not in steps:
                known = ", ".join(s.name for s in loaded.pipeline.steps)
                raise loaded.error(loc, f"{ref!r} is no step's output (steps: {known}"
                                   + (f", {SOURCE})" if not hub else ")"))
            if ref == src and steps[ref].kind not in READABLE:
                raise loaded.error(loc, f"step {ref!r} ({steps[ref].kind}) writes no checkpoint to read; "
                                        f"take the output of a {' or '.join(READABLE)} step")
    return steps


def ordered(loaded: Loaded) -> list[Step]:
    """The steps so that each comes after what it needs (file order among independent ones); a cycle is an error."""
    steps = check_references(loaded)
    index = {s.name: i for i, s in enumerate(loaded.pipeline.steps)}
    done: list[Step] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = trail[trail.index(name):] + [name]
            raise loaded.error(("steps", index[cycle[0]], "name"), "steps depend on each other in a cycle: "
                               + " -> ".join(cycle))
        state[name] = "open"
        for ref in steps[name].needs:
            if ref in steps:
                visit(ref, trail + [name])
        state[name] = "done"
        done.append(steps[name])

    for step in loaded.pipeline.steps:
        visit(step.name, [])
    return done
