"""A generated recipe's argv as the engine's own parser sees it (the tests feed it to vLLM's, SGLang's and
llama-server's parsers)."""
from __future__ import annotations

from dshub.recipes.engine_facts import ENGINES

HEAD = "10.0.0.1"  # the head node's address the tests fill in for ${HEAD_IP}


def engine_args(engine: str, argv: list[str]) -> list[str]:
    """argv after the engine's executable, with the head placeholder filled in."""
    prefix = len(ENGINES[engine].container_argv)
    return [a.replace("${HEAD_IP}", HEAD) for a in argv[prefix:]]
