"""GGUF tensor encodings: the ggml type table and quantizers registered as codecs `gguf_<TYPE>`."""
from dshub.quant.gguf.types import GGML_TYPES, GGMLType, FILE_TYPES, fit_type, ggml_type  # noqa: F401
from dshub.quant.gguf import legacy_imatrix  # noqa: F401  (registers gguf_F32, gguf_F16, gguf_BF16, gguf_Q4_0, ...)
from dshub.quant.gguf import kquants  # noqa: F401  (registers gguf_Q2_K .. gguf_Q6_K)
from dshub.quant.gguf import ggml  # noqa: F401  (registers the "ggml" implementations; loads the library on first use)
from dshub.quant.gguf import native  # noqa: F401  (registers the "native" implementations; builds them on first use)
