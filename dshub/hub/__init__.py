"""Getting checkpoints: sources (HF Hub, mirrors, ModelScope), download plans, resumable transfers, digests."""
