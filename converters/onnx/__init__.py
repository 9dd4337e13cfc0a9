"""ONNX target for onnxruntime-genai (dense decoders): graph, external-data writer, genai_config."""
from dshub.converters.onnx import convert  # noqa: F401  (registers)
