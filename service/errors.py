"""Domain errors. Each carries a stable ``code``; the API maps codes to HTTP statuses in one table
and the CLI turns any of them into exit code 2 with one line."""

from __future__ import annotations


class RailsightError(Exception):
    """Base for every error a user can cause. ``code`` is stable and machine-readable."""

    code = "railsight_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class SceneError(RailsightError):
    """A scene that cannot be used (missing, unreadable, wrong shape, too big...)."""

    code = "unusable_scene"


class SceneNotFound(SceneError):
    code = "scene_not_found"


class NotARaster(SceneError):
    code = "not_a_raster"


class TooFewBands(SceneError):
    code = "too_few_bands"


class NoGeoreference(SceneError):
    code = "no_georeference"


class NeedsWarping(SceneError):
    """A scene georeferenced in a way no affine transform follows (RPCs, or ground control points
    that no affine transform fits): it must be warped to a map first."""

    code = "needs_warping"


class PixelSizeConflict(SceneError):
    """A pixel size given for a scene whose georeferencing already says it."""

    code = "pixel_size_conflict"


class AllNoData(SceneError):
    code = "all_nodata"


class SceneTooLarge(SceneError):
    code = "scene_too_large"


class BadOption(RailsightError):
    """An option value that makes no sense (bad band list, tile size, device...)."""

    code = "bad_option"


class Cancelled(RailsightError):
    """The run was cancelled by its caller."""

    code = "cancelled"
