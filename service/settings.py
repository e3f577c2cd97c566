"""Settings read from the environment (prefix ``RAILSIGHT_``). No module reads os.environ itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.interface import TTA_VIEWS

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "bf16", "fp32"]


class PipelineSettings(BaseSettings):
    """What the scene pipeline needs; shared by `detect`, `batch`, the job runner and workers."""

    model_config = SettingsConfigDict(env_prefix="RAILSIGHT_", extra="ignore")

    device: Device = "auto"
    precision: Precision = Field(
        default="auto", description="model arithmetic: auto = bf16 autocast on CUDA and on CPUs with native bf16"
    )
    dask_scheduler: str | None = Field(
        default=None, description="tcp://host:8786 to use an existing Dask cluster instead of a LocalCluster"
    )
    workers: int | None = Field(default=None, ge=1, description="LocalCluster worker processes")
    tile: int | None = Field(default=None, ge=64, le=4096,
                             description="the square of a scene one Dask task covers, in model pixels; "
                                         "default: a square of tiles filling two model calls on a CPU, one on CUDA "
                                         "(changes no feature)")
    model_tile: int | None = Field(default=None, ge=64, le=4096,
                                   description="tile core the model runs at; default: the weights' own")
    batch_size: int | None = Field(default=None, ge=1, description="tiles per model call; auto by device")
    weights: Path | None = Field(default=None, description="weights file; the shipped one when unset")
    model_factory: str | None = Field(
        default=None, description="'module:callable' building a model instead of loading weights (tests)"
    )
    max_scene_pixels: int = Field(default=2_500_000_000, ge=1, description="refuse larger scenes")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    tta: int = Field(
        default=1, description="test-time augmentation: average the model over this many flipped views of each tile"
    )
    merge_threads: int | None = Field(
        default=None, ge=1, description="threads that merge a scene's tiles into its features (kernels/row_threads.py); "
                                        "default: every core this process may use (changes no feature)"
    )
    compile: bool = Field(
        default=False, description="run the model under torch.compile: each worker compiles it before its first "
                                   "scene (tens of seconds); on a CPU it costs memory and seldom pays (models/compiled.py)"
    )

    @field_validator("tta")
    @classmethod
    def _known_views(cls, value: int) -> int:
        if value not in TTA_VIEWS:
            raise ValueError(f"takes {', '.join(map(str, TTA_VIEWS))} views")
        return value

    @field_validator("dask_scheduler", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


def bad_setting_line(exc: ValidationError) -> str:
    """One line naming the environment variable that did not parse, for the CLI's error message."""
    first = exc.errors()[0]
    name = "_".join(str(part) for part in first["loc"]).upper()
    prefix = "RAILSIGHT_" if exc.title.endswith("Settings") else ""  # JobEnv reads Kubernetes' own names
    return f"bad setting {prefix}{name}={first.get('input')!r}: {first['msg']}"
