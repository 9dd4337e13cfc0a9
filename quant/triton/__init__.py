"""Triton kernels behind the codec registry (device kind "cuda").

Triton is optional: this package imports without it, and then registers nothing, so
`get_codec(name, "cuda")` falls back to the torch reference. Kernel modules are imported on
first call, which keeps `import quant` cheap and lets tests set TRITON_INTERPRET=1 first.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

from dshub.quant.device import interpreting, map_tensors, tensors_in, torch_device, triton_installed
from dshub.quant.registry import register_codec

# codec name -> (kernel module in this package, function). Same signature as the torch reference.
KERNELS: dict[str, tuple[str, str]] = {
    "fp8_block_dequant_f32": ("fp8", "dequant_fp8_block_f32"),
    "fp8_block_dequant_bf16": ("fp8", "dequant_fp8_block_bf16"),
    "mxfp4_dequant_f32": ("mxfp4", "dequant_mxfp4_f32"),
    "mxfp4_dequant_bf16": ("mxfp4", "dequant_mxfp4_bf16"),
    "int4_quantize": ("int4", "quantize_int4"),
    "int4_quantize_fp8": ("int4", "quantize_int4_fp8"),
    "int4_pack_compressed_tensors": ("int4", "pack_compressed_tensors"),
    "int4_pack_gptq": ("int4", "pack_gptq"),
    "int4_pack_awq": ("int4", "pack_awq"),
    "gguf_Q8_0": ("gguf_legacy", "quantize_q8_0"),
    "gguf_Q4_0": ("gguf_legacy", "quantize_q4_0"),
    "gguf_Q5_0": ("gguf_legacy", "quantize_q5_0"),
    "gguf_Q4_K": ("gguf_kquants", "quantize_q4_k"),
    "gguf_Q6_K": ("gguf_kquants", "quantize_q6_k"),
}


def kernel(codec: str) -> Callable[..., Any]:
    """The Triton implementation of `codec`, importing its module now."""
    module, fn = KERNELS[codec]
    return getattr(importlib.import_module(f"{__name__}.{module}"), fn)


_INTERPRETER_LOCK = threading.Lock()  # Triton's interpreter keeps launch state in globals: one launch at a time


def _lazy(codec: str) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        fn = kernel(codec)
        if interpreting():
            with _INTERPRETER_LOCK:
                return fn(*args, **kwargs)
        dev = torch_device("cuda")
        if dev.type == "cuda" and any(t.device.type == "cpu" for t in tensors_in(args)):
            # host tensors in, host tensors out (the pipeline helper overlaps these copies; this path is for plain callers)
            return map_tensors(fn(*map_tensors(args, lambda t: t.to(dev)), **kwargs), lambda t: t.cpu())
        return fn(*args, **kwargs)

    run.__name__ = f"triton_{codec}"
    run.__doc__ = f"Triton kernel for codec {codec!r} (imported on first call; host tensors are copied to the GPU and back)."
    return run


def register_all() -> list[str]:
    """Register every kernel under device kind "cuda"; nothing when triton is missing."""
    if not triton_installed():
        return []
    for codec in KERNELS:
        register_codec(codec, "cuda")(_lazy(codec))
    return sorted(KERNELS)


REGISTERED = register_all()
