"""dshub: fetch, validate, convert and serve DeepSeek-family MoE checkpoints."""
__version__ = "0.1.0"
