"""The pipeline file as pydantic models (`extra="forbid"`, so a typo fails loudly): a source, and steps that each do one
thing — `download`, `verify`, `convert` (the converters' own typed options, plus `input`) or `recipe`.

    source: {repo: deepseek-ai/DeepSeek-V3, revision: main, token: ${HF_TOKEN}}
    steps:
      - name: fetch
        download: {}
      - name: bf16
        convert: {input: fetch, to: bf16}

`dshub run --schema` prints `Pipeline.model_json_schema()`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from dshub.converters.options import OPTIONS, TargetOptions

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SOURCE = "source"  # the name a step uses as `input` to read a local source directly


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(Strict):
    """A hub repository at a revision; a `download` step fetches it."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
    revision: Optional[str] = None
    hub: Literal["hf", "modelscope"] = "hf"
    token: Optional[str] = Field(None, description="A reference such as ${HF_TOKEN}; never the token itself "
                                                    "(the loader refuses a literal one).")


class LocalSource(Strict):
    """A checkpoint directory already on disk; steps read it as `input: source`."""

    path: Path


class StepBody(Strict):
    """What every step's body may say: the steps it waits for (besides its input)."""

    after: tuple[str, ...] = ()
    out: Optional[Path] = Field(None, description="Output directory (default: WORKDIR/STEP_NAME).")


class DownloadStep(StepBody):
    """Fetch the hub source into `out`, each file verified by its digest (`dshub download`)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    workers: int = Field(8, ge=1)


class VerifyStep(StepBody):
    """Structural checks of a step's output (`dshub verify`); a failed check stops the pipeline."""

    input: str
    deep: bool = False


def _convert_model(cls: type[TargetOptions]) -> type[BaseModel]:
    """The converter's own typed options, with `to` naming the target, `input` the step read, `out` optional and
    `dry_run` left to `dshub run --dry-run`."""
    return create_model(
        f"Convert{cls.target.capitalize()}", __base__=cls, __module__=__name__,
        to=(Literal[cls.target], ...), input=(str, ...), after=(tuple[str, ...], ()),
        out=(Optional[Path], Field(None, description="Output directory (default: WORKDIR/STEP_NAME).")),
        dry_run=(Literal[False], Field(False, description="Use `dshub run --dry-run`.")),
    )


CONVERT_MODELS = {target: _convert_model(cls) for target, cls in OPTIONS.items()}
ConvertStep = Annotated[Union[tuple(CONVERT_MODELS.values())], Field(discriminator="to")]  # type: ignore[valid-type]


class RecipeStep(StepBody):
    """A serving recipe for a step's output (`dshub recipe`), sized by the memory planner."""

    input: str
    engine: str = "vllm"
    gpu: str = "h200"
    gpus_per_node: Optional[int] = Field(None, ge=1)
    nodes: int = Field(1, ge=1)
    goal: str = "latency"
    context: Optional[int] = Field(None, ge=1)
    mtp: Optional[bool] = None
    kv_dtype: Optional[str] = None
    format: str = "sh"
    model_path: Optional[str] = Field(None, description="Where the weights are on the serving nodes (default: the input's directory).")


KINDS = ("download", "verify", "convert", "recipe")


class Step(Strict):
    """One step: a name and exactly one of download / verify / convert / recipe."""

    name: str = Field(pattern=NAME)
    download: Optional[DownloadStep] = None
    verify: Optional[VerifyStep] = None
    convert: Optional[ConvertStep] = None
    recipe: Optional[RecipeStep] = None

    @model_validator(mode="after")
    def _one(self) -> "Step":
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step does exactly one of {', '.join(KINDS)}; step {self.name!r} has "
                             + (" and ".join(given) if given else "none"))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def body(self) -> BaseModel:
        return getattr(self, self.kind)

    @property
    def needs(self) -> tuple[str, ...]:
        """The steps this one reads or waits for, in the order written."""
        src = getattr(self.body, "input", None)
        return tuple(dict.fromkeys(((src,) if src else ()) + tuple(self.body.after)))  # type: ignore[attr-defined]


class Pipeline(Strict):
    """A pipeline file: where the checkpoint comes from, where outputs go, and the steps."""

    version: Literal[1] = 1
    source: Union[HubSource, LocalSource]
    workdir: Path = Field(Path("dshub-work"), description="Outputs and the run report, relative to the pipeline file.")
    steps: list[Step] = Field(min_length=1)
