"""Settings of the job service (`railsight serve` and `railsight worker`), read from the environment
with the prefix ``RAILSIGHT_``, on top of what the scene pipeline needs.

Unsafe defaults are refused outside development mode: the API will not start with no keys unless
``RAILSIGHT_DEV_MODE`` is set, and then it makes one local key (``STATE_DIR/dev-api-key``) rather
than running open.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from service.errors import RailsightError
from service.settings import PipelineSettings

DEV_KEY_FILE = "dev-api-key"
MIN_KEY_LENGTH = 16


class ConfigError(RailsightError):
    """Settings that cannot work (no API keys outside development mode, a bad database URL...)."""

    code = "config_error"


def _split(value: object) -> object:
    """``a,b , c`` -> ["a", "b", "c"]; lists pass through; empty -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]
CommaPaths = Annotated[list[Path], NoDecode]


class ServiceSettings(PipelineSettings):
    """Everything the job service reads. Pipeline settings (device, dask_scheduler, tile...) included."""

    # --- security ---------------------------------------------------------------------------------
    api_keys: CommaList = Field(default_factory=list, description="comma-separated API keys (Bearer tokens)")
    api_keys_file: Path | None = Field(
        default=None, description="file with one API key per line (# comments), e.g. a mounted secret"
    )
    dev_mode: bool = Field(default=False, description="allow running with no configured keys (a local key is made)")
    data_roots: CommaPaths = Field(default_factory=list, description="folders that local scene paths must lie in")
    allow_remote: bool = Field(default=False, description="accept http(s):// and s3:// scenes (see remote_allow_list)")
    remote_allow_list: CommaList = Field(
        default_factory=list,
        description="hosts (example.com, *.example.com), s3 buckets, or URL prefixes (https://host/path/) allowed",
    )
    remote_allow_private: bool = Field(
        default=False, description="let remote hosts resolve to private (RFC 1918/ULA) addresses, e.g. in-cluster MinIO"
    )

    # --- storage ----------------------------------------------------------------------------------
    state_dir: Path = Field(default=Path("var"), description="the SQLite store, uploads and results when local")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///STATE_DIR/railsight.db")
    results_dir: Path | None = Field(default=None, description="results folder; default STATE_DIR/results")

    # --- limits -----------------------------------------------------------------------------------
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1, description="largest multipart upload")
    max_remote_bytes: int = Field(default=2 * 1024**3, ge=1, description="largest remote scene download")
    max_json_bytes: int = Field(default=64 * 1024, ge=1024, description="largest JSON request body")
    queue_limit: int = Field(default=1000, ge=1, description="queued jobs beyond which submissions get 429")
    retry_after_seconds: int = Field(default=30, ge=1, description="Retry-After sent with 429")
    page_limit: int = Field(default=100, ge=1, le=1000, description="largest page of GET /v1/jobs")

    # --- runner -----------------------------------------------------------------------------------
    embedded_runner: bool = Field(default=True, description="`serve` runs jobs itself (else only `worker`s do)")
    max_concurrent_scenes: int = Field(default=2, ge=1, description="scenes one runner process works on at once")
    lease_seconds: float = Field(default=30.0, gt=0, description="a job is claimed again this long after its last heartbeat")
    heartbeat_seconds: float | None = Field(default=None, gt=0, description="default min(lease/3, 2 s)")
    max_attempts: int = Field(default=3, ge=1, description="claims of one job before it fails for good")
    poll_seconds: float = Field(
        default=0.5, gt=0, description="how often an idle runner looks for work (PostgreSQL also wakes it at once)"
    )
    metrics_port: int | None = Field(default=None, description="`worker`: serve Prometheus metrics on this port")
    sample_scene: bool = Field(default=True, description="`serve`: make a sample scene and print a curl for it")

    @field_validator("api_keys", "data_roots", "remote_allow_list", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("database_url", "api_keys_file", "results_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> ServiceSettings:
        if self.heartbeat_seconds is not None and self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self

    # --- derived values -----------------------------------------------------------------------------
    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or min(self.lease_seconds / 3.0, 2.0)

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.state_dir / 'railsight.db').resolve()}"

    @property
    def results_path(self) -> Path:
        return (self.results_dir or self.state_dir / "results").resolve()

    @property
    def uploads_path(self) -> Path:
        return (self.state_dir / "uploads").resolve()

    @property
    def downloads_path(self) -> Path:
        return (self.state_dir / "downloads").resolve()

    @property
    def samples_path(self) -> Path:
        """Where `serve` writes its sample scene; always an allowed data root (it holds nothing else)."""
        return (self.state_dir / "samples").resolve()

    def allowed_roots(self) -> list[Path]:
        roots = [Path(r).expanduser().resolve() for r in self.data_roots]
        return [*roots, self.samples_path]

    def configured_keys(self) -> list[str]:
        """Keys from RAILSIGHT_API_KEYS and RAILSIGHT_API_KEYS_FILE."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            try:
                text = Path(self.api_keys_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read RAILSIGHT_API_KEYS_FILE {self.api_keys_file}: {exc}") from exc
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return list(dict.fromkeys(keys))

    def resolve_api_keys(self) -> tuple[list[str], bool]:
        """The keys the API accepts, and whether a development key was made for this state dir.
        Refuses (ConfigError) to run with no keys outside development mode, and short keys."""
        keys = self.configured_keys()
        if keys:
            short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
            if short and not self.dev_mode:
                raise ConfigError(f"API keys must be at least {MIN_KEY_LENGTH} characters ({len(short)} too short)")
            return keys, False
        if not self.dev_mode:
            raise ConfigError(
                "no API keys: set RAILSIGHT_API_KEYS or RAILSIGHT_API_KEYS_FILE, "
                "or RAILSIGHT_DEV_MODE=1 for a local development key"
            )
        return [dev_key(self.state_dir)], True


def dev_key(state_dir: Path) -> str:
    """The development key of a state dir, made on first use (readable by its owner only)."""
    path = Path(state_dir) / DEV_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "dev-" + secrets.token_urlsafe(24)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    os.replace(tmp, path)
    return key


def key_owner(key: str) -> str:
    """What the store keeps instead of a key: its SHA-256, hex. Keys are long random tokens, so a
    plain hash is enough (no salt needed to stop dictionary attacks on them)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
