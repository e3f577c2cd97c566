"""Errors of the job service's domain (no HTTP here: the API maps each class to a status)."""

from __future__ import annotations

from service.errors import RailsightError


class JobNotFound(RailsightError):
    """No such job, or not one the caller's key may see (the two are not told apart)."""

    code = "job_not_found"


class JobConflict(RailsightError):
    """The job is not in a state that allows this (cancel a finished job, result of a running one)."""

    code = "job_conflict"


class IdempotencyConflict(RailsightError):
    """An Idempotency-Key reused with a different request."""

    code = "idempotency_conflict"


class QueueFull(RailsightError):
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadScenePath(RailsightError):
    """A scene reference that is malformed (``..``, NUL, GDAL virtual paths, unknown URL scheme)."""

    code = "bad_scene_path"


class SceneNotAllowed(RailsightError):
    """A well-formed scene reference the operator does not allow (outside the data roots, a remote
    source while remote sources are off, a host not on the allow-list or a blocked address)."""

    code = "scene_not_allowed"


class TooLarge(RailsightError):
    """An upload or download over its size limit."""

    code = "too_large"


class ModelUnavailable(RailsightError):
    """The model cannot be loaded (a deployment problem, not the caller's)."""

    code = "model_unavailable"
