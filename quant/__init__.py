"""Pure tensor codecs (no file I/O). Torch references are bit-exact on CPU; Triton kernels share signatures."""
from .registry import get_codec, register_codec, CODECS  # noqa: F401
from . import fp8  # noqa: F401  (registers)
