"""Settings read from the environment (prefix ``RAILSIGHT_``). No module reads os.environ itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    tile: int = Field(default=512, ge=64, le=4096, description="tile core size in model pixels")
    batch_size: int | None = Field(default=None, ge=1, description="tiles per model call; auto by device")
    weights: Path | None = Field(default=None, description="weights file; the shipped one when unset")
    model_factory: str | None = Field(
        default=None, description="'module:callable' building a model instead of loading weights (tests)"
    )
    max_scene_pixels: int = Field(default=2_500_000_000, ge=1, description="refuse larger scenes")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("dask_scheduler", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value
