"""Conversion targets. Each module registers a Converter; `run_conversion` drives plan -> execute -> finalize."""
from .base import CONVERTERS, ConversionOptions, ConversionPlan, Converter, OutputFile, register_converter, run_conversion  # noqa: F401
from . import bf16  # noqa: F401  (registers)
from . import int4  # noqa: F401  (registers)
from . import gguf  # noqa: F401  (registers)

__all__ = ["CONVERTERS", "ConversionOptions", "ConversionPlan", "Converter", "OutputFile", "register_converter", "run_conversion"]
