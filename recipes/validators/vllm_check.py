"""Check `vllm serve` argv lists with vLLM's own parser, plus the values it only checks at engine build time.

stdin: JSON list of {"id": str, "argv": [args after `vllm serve`]}; stdout: JSON list of {"id", "ok", "error"}.
Run with the validator venv's python; VLLM_TARGET_DEVICE=cpu is set before the import (recipe-validation.md §1).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from typing import Any, get_args

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")


def registries() -> dict[str, set[str]]:
    """Names vLLM accepts for values its parser lets through unchecked."""
    from vllm.config.cache import KV_CACHE_DTYPES
    from vllm.config.parallel import DataParallelBackend
    from vllm.config.speculative import SpeculativeMethod
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.reasoning import ReasoningParserManager as R
    from vllm.tool_parsers import ToolParserManager as T

    return {
        "kv_cache_dtype": set(KV_CACHE_DTYPES),
        "reasoning_parser": set(R.reasoning_parsers) | set(R.lazy_parsers),
        "tool_call_parser": set(T.tool_parsers) | set(T.lazy_parsers),
        "quantization": set(QUANTIZATION_METHODS),
        "speculative_method": set(get_args(SpeculativeMethod)),
        "data_parallel_backend": set(get_args(DataParallelBackend)),
    }


def check(parser: Any, validate: Any, regs: dict[str, set[str]], argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(argv)
            validate(ns)
    except SystemExit as e:
        return f"parser exit {e.code}: {err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ''}"
    except Exception as e:  # validate_parsed_serve_args raises TypeError/ValueError
        return f"{type(e).__name__}: {e}"
    for field in ("kv_cache_dtype", "reasoning_parser", "tool_call_parser", "quantization", "data_parallel_backend"):
        value = getattr(ns, field, None)
        if value not in (None, "auto", "") and value not in regs[field]:
            return f"--{field.replace('_', '-')} {value!r} is not registered in vLLM"
    spec = getattr(ns, "speculative_config", None)
    if spec:
        method = spec.get("method") if isinstance(spec, dict) else getattr(spec, "method", None)
        if method not in regs["speculative_method"]:
            return f"speculative method {method!r} is not one of vLLM's SpeculativeMethod"
    return None


IMAGE_PREFIX = "/vllm-workspace/"


def stand_in_templates(argv: list[str], tmp: str) -> list[str]:
    """Chat templates live inside the vLLM image; give the parser a stand-in file of the same name here.
    (Whether the image ships that file is not something this check can see.)"""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == "--chat-template" and out[i + 1].startswith(IMAGE_PREFIX):
            local = os.path.join(tmp, os.path.basename(out[i + 1]))
            with open(local, "w") as f:
                f.write("{% for m in messages %}{{ m['content'] }}{% endfor %}")
            out[i + 1] = local
    return out


def main() -> None:
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    items = json.load(sys.stdin)
    regs = registries()
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))  # 0.3 s to build; parse_args is stateless
    out = []
    tmp = tempfile.mkdtemp(prefix="vllm-check-")
    for item in items:
        error = check(parser, validate_parsed_serve_args, regs, stand_in_templates(item["argv"], tmp))
        out.append({"id": item["id"], "ok": error is None, "error": error})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
