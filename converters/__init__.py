"""Conversion targets. Each module registers a Converter; `run_conversion` drives plan -> execute -> finalize."""
from dshub.converters.base import CONVERTERS, ConversionOptions, ConversionPlan, Converter, OutputFile, register_converter, run_conversion  # noqa: F401
from dshub.converters import bf16  # noqa: F401  (registers)
from dshub.converters import int4  # noqa: F401  (registers)
from dshub.converters import gguf  # noqa: F401  (registers)

__all__ = ["CONVERTERS", "ConversionOptions", "ConversionPlan", "Converter", "OutputFile", "register_converter", "run_conversion"]
