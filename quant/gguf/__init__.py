"""GGUF tensor encodings: the ggml type table and quantizers registered as codecs `gguf_<TYPE>`."""
import importlib
import importlib.util

from .types import GGML_TYPES, GGMLType, FILE_TYPES, fit_type, ggml_type  # noqa: F401
from . import legacy  # noqa: F401  (registers gguf_F32, gguf_F16, gguf_BF16, gguf_Q4_0, ...)

if importlib.util.find_spec(f"{__name__}.kquants") is not None:  # K-quants: their own module (separate issue)
    importlib.import_module(f"{__name__}.kquants")
