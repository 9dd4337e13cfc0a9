"""Check `python3 -m sglang.launch_server` argv lists with SGLang's ServerArgs (parser + from_cli_args).

stdin: JSON list of {"id", "argv": [args after the module]}; stdout: JSON list of {"id", "ok", "error"}.
`check_server_args()` is not called: it needs the model's config.json (recipe-validation.md §2).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any


def check(ServerArgs: Any, algorithms: set[str], argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser = argparse.ArgumentParser(prog="sglang.launch_server")
            ServerArgs.add_cli_args(parser)
            ns = parser.parse_args(argv)
            ServerArgs.from_cli_args(ns)
    except SystemExit as e:
        lines = err.getvalue().strip().splitlines()
        return f"parser exit {e.code}: {lines[-1] if lines else ''}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    algo = getattr(ns, "speculative_algorithm", None)
    if algo and algo.upper() not in algorithms:
        return f"--speculative-algorithm {algo!r} is not one of SGLang's {sorted(algorithms)}"
    if "--enable-dp-attention" in argv and "deprecated" in err.getvalue():
        return "--enable-dp-attention is deprecated in this release; use --attn-dp-size"
    return None


def main() -> None:
    from sglang.srt.server_args import ServerArgs
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    algorithms = {a.name for a in SpeculativeAlgorithm if a.name != "NONE"}
    items = json.load(sys.stdin)
    out = [{"id": i["id"], **_result(check(ServerArgs, algorithms, i["argv"]))} for i in items]
    json.dump(out, sys.stdout)


def _result(error: str | None) -> dict[str, Any]:
    return {"ok": error is None, "error": error}


if __name__ == "__main__":
    main()
