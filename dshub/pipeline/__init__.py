"""Declarative pipelines (`dshub run PIPELINE.yaml`): a source and download / verify / convert / recipe steps, run in
dependency order with one run report; a rerun skips what is unchanged and verified."""
from __future__ import annotations

from typing import Any

from dshub.pipeline.model import Pipeline
from dshub.pipeline.k8s import render as render_k8s
from dshub.pipeline.runner import emit_k8s, run_pipeline


def pipeline_schema() -> dict[str, Any]:
    """The pipeline file's JSON Schema (`dshub run --schema`)."""
    return Pipeline.model_json_schema()


__all__ = ["Pipeline", "emit_k8s", "pipeline_schema", "render_k8s", "run_pipeline"]
