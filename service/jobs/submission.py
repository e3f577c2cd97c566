"""Accepting a job: check where the scene comes from, check the raster itself (so a scene that
cannot be used is refused now, with the reason, rather than failing later), and queue it.

No HTTP here: the API calls these functions from its thread pool and maps their errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from models.spec import WeightsError
from service.errors import SceneError
from service.jobs.errors import IdempotencyConflict, ModelUnavailable, QueueFull, TooLarge
from service.jobs.sources import SceneRef, check_tiff, parse_scene
from service.jobs.store import Job, JobStore, NewJob
from service.rasters import inspect_scene
from service.service_settings import ServiceSettings

COPY_CHUNK = 1 << 20
# The early "is the queue full?" look reuses a count this young; the authoritative check is made
# again inside the transaction that adds the job.
QUEUE_COUNT_TTL_S = 0.5


@dataclass(frozen=True)
class Submission:
    """A validated request (the API's pydantic models become this)."""

    scene: str
    site_id: str | None = None
    acquired_at: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, extra: str = "") -> str:
        """What makes two requests "the same" for an Idempotency-Key."""
        canonical = json.dumps(
            {"scene": self.scene, "site_id": self.site_id, "acquired_at": self.acquired_at, "options": self.options,
             "extra": extra},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class Submitter:
    """Turns submissions into queued jobs. ``pixel_size`` gives the model's pixel size in metres
    (raising ModelUnavailable if the model cannot be described)."""

    def __init__(self, settings: ServiceSettings, store: JobStore, pixel_size: Callable[[], float]) -> None:
        self.settings = settings
        self.store = store
        self.pixel_size = pixel_size
        self._queued: tuple[float, int] = (-1e9, 0)

    def _early(self, owner: str, key: str | None, request_hash: str) -> Job | None:
        """Cheap checks before the raster is opened: a replayed Idempotency-Key, a full queue."""
        if key:
            existing = self.store.find_by_idempotency_key(owner, key, request_hash)
            if existing is not None:
                return existing
        s = self.settings
        if self._queued_recently() >= s.queue_limit:
            raise QueueFull("the queue is full; retry later", retry_after=s.retry_after_seconds)
        return None

    def _queued_recently(self) -> int:
        at, count = self._queued
        now = time.monotonic()
        if now - at > QUEUE_COUNT_TTL_S:
            count = self.store.queued_count()
            self._queued = (now, count)
        return count

    def _inspect(self, path: str, options: dict[str, Any]) -> None:
        try:
            pixel_size = self.pixel_size()
        except WeightsError as exc:
            raise ModelUnavailable(f"the model cannot be loaded: {exc}") from exc
        inspect_scene(
            path,
            model_pixel_size_m=pixel_size,
            bands=tuple(options["bands"]) if options.get("bands") else None,
            allow_pixel_coords=bool(options.get("allow_pixel_coords")),
            pixel_size_m=options.get("pixel_size_m"),
            max_pixels=self.settings.max_scene_pixels,
        )

    def _queue(self, new: NewJob) -> tuple[Job, bool]:
        s = self.settings
        return self.store.submit(new, queue_limit=s.queue_limit, retry_after=s.retry_after_seconds)

    def submit(self, owner: str, sub: Submission, *, idempotency_key: str | None = None) -> tuple[Job, bool]:
        """A scene named by path or URL. Returns (job, created)."""
        request_hash = sub.fingerprint()
        existing = self._early(owner, idempotency_key, request_hash)
        if existing is not None:
            return existing, False
        ref: SceneRef = parse_scene(sub.scene, self.settings)
        if ref.kind == "path":
            self._inspect(ref.location, sub.options)
        return self._queue(
            NewJob(owner, ref.location, ref.kind, ref.name, sub.options, sub.site_id, sub.acquired_at,
                   idempotency_key, request_hash)
        )

    def submit_upload(self, owner: str, sub: Submission, stream: IO[bytes], *,
                      idempotency_key: str | None = None) -> tuple[Job, bool]:
        """An uploaded file (``sub.scene`` is its client-side name). The file is copied under
        STATE_DIR/uploads, checked, and deleted again if the job is not created."""
        path, digest = self.save_upload(stream)
        try:
            request_hash = sub.fingerprint(extra=digest)
            existing = self._early(owner, idempotency_key, request_hash)
            if existing is not None:
                path.unlink(missing_ok=True)
                return existing, False
            check_tiff(path, f"upload {sub.scene!r}")
            try:
                self._inspect(str(path), sub.options)
            except SceneError as exc:  # named as the client named it, not by where this service keeps it
                raise type(exc)(str(exc).replace(str(path), f"upload {sub.scene!r}"), code=exc.code) from exc
            job, created = self._queue(
                NewJob(owner, str(path), "upload", sub.scene, sub.options, sub.site_id, sub.acquired_at,
                       idempotency_key, request_hash)
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if not created:
            path.unlink(missing_ok=True)
        return job, created

    def save_upload(self, stream: IO[bytes]) -> tuple[Path, str]:
        limit = self.settings.max_upload_bytes
        folder = self.settings.uploads_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.tif"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "wb") as out:
                while chunk := stream.read(COPY_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"upload is over the limit of {limit:,} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, digest.hexdigest()


__all__ = ["IdempotencyConflict", "Submission", "Submitter"]
