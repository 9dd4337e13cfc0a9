"""Safetensors checkpoints: header validation, the lazy reader, the streaming writer, synthetic checkpoints."""
