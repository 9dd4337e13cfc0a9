"""Conversion targets. Each module registers a Converter for its typed options; `run_conversion` drives
preflight -> plan -> execute -> finalize."""
from dshub.converters.base import CONVERTERS, ConversionPlan, ConversionResult, Converter, OutputFile, make_plan, register_converter, run_conversion
from dshub.converters.options import OPTIONS, Bf16Options, GGUFOptions, Int4Options, ONNXOptions, TargetOptions, build_options
from dshub.converters import bf16  # noqa: F401  (registers)
from dshub.converters import int4  # noqa: F401  (registers)
from dshub.converters import gguf  # noqa: F401  (registers)
from dshub.converters import onnx  # noqa: F401  (registers)

__all__ = ["CONVERTERS", "OPTIONS", "ConversionPlan", "ConversionResult", "Converter", "OutputFile", "make_plan",
           "register_converter", "run_conversion", "TargetOptions", "Bf16Options", "Int4Options", "GGUFOptions", "ONNXOptions",
           "build_options"]
