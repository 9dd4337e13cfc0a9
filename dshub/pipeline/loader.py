"""Read a pipeline file: YAML with the line of every value kept, `${VAR}` references resolved from the environment,
validated by the pydantic models; every mistake is one `FILE:LINE: where: what` line (PipelineError, exit 2).

The file's text as written (references unresolved) is what the run report records, so a token read through
`${HF_TOKEN}` is never written anywhere.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from yaml.constructor import SafeConstructor
from pydantic import ValidationError

from dshub.errors import PipelineError
from dshub.pipeline.model import Pipeline

Loc = tuple[Any, ...]
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRETS: tuple[Loc, ...] = (("source", "token"),)  # values that must be references, never written out


@dataclass
class Loaded:
    """A validated pipeline, the data as written (references unresolved), and where each value sits in the file."""

    path: Path
    pipeline: Pipeline
    raw: dict[str, Any]
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        return line_for(self.lines, loc)

    def error(self, loc: Loc, detail: str) -> PipelineError:
        return pipeline_error(self.path, self.line_of(loc), loc, detail)

    @property
    def workdir(self) -> Path:
        return (self.path.parent / self.pipeline.workdir).resolve()


def line_for(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the deepest value of `loc` found in the file (pydantic's loc also names union members)."""
    at: Loc = ()
    for part in loc:
        if at + (part,) in lines:
            at = at + (part,)
    return lines.get(at, 1)


def where(loc: Loc) -> str:
    """`steps[2].convert.group_size` from a location (keys and list indices)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def pipeline_error(path: Path, line: int, loc: Loc, detail: str) -> PipelineError:
    at = where(loc)
    return PipelineError(f"{at}: {detail}" if at else detail, path=str(path), show_path=f"{path}:{line}")


def _to_data(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> Any:
    """Plain data from a composed YAML node, recording each value's (1-based) line under its location."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = SafeConstructor().construct_object(key_node)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise pipeline_error(path, key_node.start_mark.line + 1, loc, f"a key must be a name, not {key!r}")
            if key in out:
                raise pipeline_error(path, key_node.start_mark.line + 1, loc + (key,), "given twice")
            out[str(key)] = _to_data(value_node, loc + (str(key),), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, loc + (i,), lines, path) for i, item in enumerate(node.value)]
    return SafeConstructor().construct_object(node)


def resolve_env(data: Any, env: Mapping[str, str], lines: dict[Loc, int], path: Path, loc: Loc = ()) -> Any:
    """Every `${VAR}` in a string value replaced by the variable's value; an unset one is an error naming it."""
    if isinstance(data, dict):
        return {k: resolve_env(v, env, lines, path, loc + (k,)) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_env(v, env, lines, path, loc + (i,)) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def value(m: Any) -> str:
        if m[1] not in env:
            raise pipeline_error(path, line_for(lines, loc), loc, f"${{{m[1]}}} is not set in the environment")
        return env[m[1]]

    return ENV_REF.sub(value, data)


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (see `dshub run --schema`)"
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "missing":
        return "missing"
    if err["type"] == "union_tag_invalid":
        return f"{err['ctx']['tag']!r} is not one of {err['ctx']['expected_tags']}"
    given = err.get("input")
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {given!r})" if not isinstance(given, (dict, list)) else err["msg"]


def _loc(err: Mapping[str, Any], raw: Any) -> Loc:
    """pydantic's location without the union members it adds (`int4` in steps.0.convert.int4.group_size, `HubSource`)."""
    loc: Loc = ()
    node = raw
    for part in err["loc"]:
        if isinstance(node, dict) and part in node:
            loc, node = loc + (part,), node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            loc, node = loc + (part,), node[part]
        elif err["type"] in ("extra_forbidden", "missing") and part == err["loc"][-1]:
            loc = loc + (part,)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # point at the key that picks the member
        loc = loc + (str(err["ctx"]["discriminator"]).strip("'"),)
    return loc


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Loaded:
    """Parse, resolve and validate a pipeline file (PipelineError, exit 2, naming file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError("no such pipeline file", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"cannot read the pipeline file ({e})", path=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise PipelineError(f"not valid YAML: {problem}", path=str(path),
                            show_path=f"{path}:{mark.line + 1 if mark else 1}") from None
    lines: dict[Loc, int] = {}
    raw = _to_data(node, (), lines, path) if node is not None else None
    if not isinstance(raw, dict):
        raise pipeline_error(path, 1, (), "a pipeline file is a mapping with `source` and `steps` (see `dshub run --schema`)")
    for loc in SECRETS:
        value = _at(raw, loc)
        if value is not None and not (isinstance(value, str) and ENV_REF.fullmatch(value)):
            raise pipeline_error(path, line_for(lines, loc), loc, "write a reference such as ${HF_TOKEN}, never the token itself")
    resolved = resolve_env(raw, os.environ if env is None else env, lines, path)
    try:
        pipeline = Pipeline.model_validate(resolved)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _loc(err, raw)
        raise pipeline_error(path, line_for(lines, loc), loc, _message(err)) from None
    return Loaded(path, pipeline, raw, lines)
