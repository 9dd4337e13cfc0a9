"""On-disk output formats, each format's reader and writer side by side: GGUF and INT4 `quantization_config`."""
