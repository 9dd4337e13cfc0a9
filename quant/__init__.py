"""Pure tensor codecs (no file I/O). Torch references are bit-exact on CPU; Triton kernels share signatures."""
from dshub.quant.registry import get_codec, register_codec, CODECS  # noqa: F401
from dshub.quant import fp8  # noqa: F401  (registers)
from dshub.quant import mxfp4  # noqa: F401  (registers)
from dshub.quant import triton as _triton_kernels  # noqa: F401  (registers "cuda" kernels when triton is installed)
from dshub.quant import int4  # noqa: F401  (registers)
from dshub.quant import int4_nbits  # noqa: F401  (registers)
