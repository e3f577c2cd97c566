"""Request and response bodies of the HTTP API (pydantic; unknown fields are refused)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.rasters import MAX_PIXEL_SIZE_M
from service.view_geometry import MAX_OFF_NADIR_DEG

ClassName = Literal["railcar", "tarped_cargo", "track"]
OutputName = Literal["geojson", "class_cog"]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
SITE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[ClassName] | None = Field(
        default=None, min_length=1, description="classes to report (default: all three)"
    )
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0, description="drop features below this")
    tta: Literal[1, 2, 4, 8] | None = Field(
        default=None, description="average the model over this many flipped views of each tile (slower, steadier)"
    )
    outputs: list[OutputName] = Field(
        default_factory=lambda: list[OutputName](["geojson"]),
        description="GeoJSON always; add class_cog for a class raster (COG)",
    )
    bands: list[int] | None = Field(
        default=None, min_length=3, max_length=3, description="1-based red, green, blue band numbers"
    )
    allow_pixel_coords: bool = Field(default=False, description="run on scenes with no georeferencing")
    pixel_size_m: float | None = Field(
        default=None, gt=0.0, le=MAX_PIXEL_SIZE_M,
        description="ground size of one pixel in metres, for a scene with no georeferencing (implies allow_pixel_coords)",
    )
    off_nadir_deg: float | None = Field(
        default=None, ge=0.0, le=MAX_OFF_NADIR_DEG,
        description="the view's angle from straight down, with satellite_azimuth_deg: railcars are then drawn as wide "
                    "as they show, roof and wall (default: what the scene's metadata records, a Maxar .IMD beside it)",
    )
    satellite_azimuth_deg: float | None = Field(
        default=None, ge=0.0, le=360.0,
        description="the bearing from the scene to the satellite, clockwise from north (Maxar meanSatAz, Planet "
                    "satellite_azimuth)",
    )

    @field_validator("classes", "outputs")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None

    @field_validator("outputs")
    @classmethod
    def _geojson_always(cls, value: list[str]) -> list[str]:
        return value if "geojson" in value else ["geojson", *value]

    @model_validator(mode="after")
    def _whole_view(self) -> JobOptions:
        if (self.off_nadir_deg is None) != (self.satellite_azimuth_deg is None):
            raise ValueError("give the view as both off_nadir_deg and satellite_azimuth_deg, or neither")
        return self

    @field_validator("bands")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(b < 1 for b in value):
            raise ValueError("band numbers start at 1")
        return value


class JobRequest(BaseModel):
    """``scene`` is a path under an allowed data root, or an http(s):// or s3:// URL when the
    operator allows remote sources."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "scene": "/data/scenes/tumangang-2023-10-05.tif",
                    "site_id": "tumangang",
                    "acquired_at": "2023-10-05T02:14:00Z",
                    "options": {"classes": ["railcar", "tarped_cargo", "track"], "min_confidence": 0.5},
                }
            ]
        },
    )

    scene: str = Field(min_length=1, max_length=4096)
    site_id: str | None = Field(default=None, pattern=SITE_ID, description="your name for the site, e.g. tumangang")
    acquired_at: datetime | None = Field(default=None, description="when the scene was taken (ISO 8601)")
    options: JobOptions = Field(default_factory=JobOptions)


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Progress(BaseModel):
    tiles_done: int
    tiles_total: int | None
    fraction: float | None


class Timings(BaseModel):
    queued_s: float | None = Field(description="submission to first start")
    run_s: float | None = Field(description="start to finish (or to now, while running)")
    total_s: float | None = Field(description="submission to finish")
    pipeline: dict[str, float] | None = Field(default=None, description="the pipeline's own timings")


class Links(BaseModel):
    self: str
    result: str | None = None
    classes: str | None = None


class JobOut(BaseModel):
    id: str
    url: str
    status: Status
    scene: str = Field(description="the scene as submitted (an upload: its file name)")
    source: Literal["path", "upload", "url"]
    site_id: str | None
    acquired_at: str | None
    options: dict[str, Any]
    progress: Progress
    attempts: int
    cancel_requested: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    timings: Timings
    counts: dict[str, int] | None = Field(default=None, description="features per class, once succeeded")
    feature_count: int | None = None
    summary: dict[str, Any] | None = Field(default=None, description="the result's summary member")
    error: ErrorDetail | None = None
    links: Links


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
    next: str | None = Field(description="URL of the next page")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any]
