"""JSON from outside (config, index, safetensors header) parsed with a nesting bound, so no input reaches the parser's
recursion limit: a document nested deeper than `MAX_JSON_DEPTH` is refused before it is parsed."""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 64  # safetensors headers nest 3 deep, configs and indexes 4; 64 leaves room for any real file

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)  # string literals: brackets inside them do not nest
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    """A JSON document nests deeper than the bound (caught where the other JSON errors are)."""


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (0 for a scalar); not a validation of the JSON."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0)


def loads_bounded(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` of a document no deeper than `max_depth`. Raises ValueError (JSONDecodeError, JSONTooDeep, or
    UnicodeDecodeError for bytes that are not UTF-8) for anything else."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONTooDeep(f"nested {depth} levels deep, more than the {max_depth} dshub reads")
    return json.loads(text)
