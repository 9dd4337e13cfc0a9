"""The `--json` contract's schemas (dshub/schemas/), loaded once, and a check of one CLI result against them."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "dshub" / "schemas"
BASE = "https://dshub.dev/schemas/"


@lru_cache(maxsize=None)
def registry() -> Registry:
    resources = [(BASE + p.name, Resource.from_contents(json.loads(p.read_text()))) for p in SCHEMAS.glob("*.json")]
    return Registry().with_resources(resources)


def schema_for(command: str | None) -> dict[str, Any]:
    """The command's own schema; the envelope for a command that has none (or a usage error before one)."""
    path = SCHEMAS / f"{command}.schema.json"
    return json.loads((path if command and path.exists() else SCHEMAS / "envelope.schema.json").read_text())


def one_document(result: Any) -> dict[str, Any]:
    """stdout holds exactly one JSON document (nothing before or after it) that its command's schema accepts."""
    doc, end = json.JSONDecoder().raw_decode(result.stdout.lstrip())
    assert result.stdout.lstrip()[end:].strip() == "", f"more than one document: {result.stdout[:2000]}"
    errors = sorted(Draft202012Validator(schema_for(doc.get("command")), registry=registry()).iter_errors(doc),
                    key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    return doc
