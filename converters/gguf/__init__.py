"""GGUF target for llama.cpp (`deepseek2`): metadata, tensor mapping, tokenizer, quant schemes, streaming writer."""
from dshub.converters.gguf import convert  # noqa: F401  (registers the "gguf" converter)
from dshub.converters.gguf import imatrix, mixtures, policy  # noqa: F401  (register the K-quant mixtures and the imatrix/policy/target_size hooks)
from dshub.converters.gguf.schemes import SCHEMES, register_param_hook, register_scheme  # noqa: F401
