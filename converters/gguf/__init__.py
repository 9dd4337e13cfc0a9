"""GGUF target for llama.cpp (`deepseek2`): metadata, tensor mapping, tokenizer, quant schemes, streaming writer."""
import importlib
import importlib.util

from . import convert  # noqa: F401  (registers the "gguf" converter)
from .schemes import SCHEMES, register_param_hook, register_scheme  # noqa: F401

if importlib.util.find_spec(f"{__name__}.mixtures") is not None:  # K-quant mixtures/policies register more schemes
    importlib.import_module(f"{__name__}.mixtures")
