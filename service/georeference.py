"""Where a scene's pixels lie on the ground: its geotransform, or one fitted to its ground control points.

GDAL reads three kinds of georeferencing. A geotransform (with a CRS) is used as it is, rotated or
not. Ground control points (GCPs) are what a scene georeferenced by hand, or delivered before
orthorectification, often carries instead: where an affine transform fits them to within
``GCP_FIT_TOLERANCE_PX`` at every point, the scene is a plain affine picture of the ground and that
transform is used. Otherwise, and for a scene with rational polynomial coefficients (RPCs) alone,
the image is not a map yet: detecting on it would put every feature in the wrong place, so it is
refused with the command that warps it, unless the user asks for features in image pixels
(``inspect_scene``'s ``allow_pixel_coords`` or ``pixel_size_m``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS

from service.errors import NeedsWarping

# The farthest, in pixels, a ground control point may lie from the affine transform fitted to all of
# them: at the model's 0.5 m, a sixth of a railcar's 3 m width.
GCP_FIT_TOLERANCE_PX = 1.0
WARP_HINT = ("warp it to a map first, for example: gdalwarp {options}-r bilinear {path} warped.tif "
             "(or pass --allow-pixel-coords for features in image pixels)")


@dataclass(frozen=True)
class Georeference:
    """A scene's CRS and pixel-to-CRS transform, and what they came from: ``"geotransform"`` or
    ``"ground control points"`` (then ``points`` and ``worst_fit_px``, the farthest a point lies from
    the fitted transform, in pixels)."""

    crs: CRS
    transform: Affine
    source: str
    points: int = 0
    worst_fit_px: float = 0.0

    def summary(self) -> dict[str, object]:
        """The output summary's ``georeferencing`` member."""
        if self.source == "geotransform":
            return {"from": self.source}
        return {"from": self.source, "points": self.points, "worst_fit_px": round(self.worst_fit_px, 3)}


def scene_georeference(src, path: str) -> Georeference | None:
    """The georeferencing of an open rasterio dataset ``src``, or None where it has none. Raises
    NeedsWarping for GCPs no affine transform fits and for RPCs alone."""
    if src.crs is not None and not src.transform.is_identity:
        return Georeference(CRS.from_user_input(src.crs), src.transform, "geotransform")
    points, crs = src.gcps
    if points and crs is not None:
        return fitted_to_gcps(points, CRS.from_user_input(crs), path)
    if src.rpcs is not None:
        raise NeedsWarping(f"scene is georeferenced by RPCs alone (not orthorectified); "
                           f"{WARP_HINT.format(options='-rpc ', path=path)}")
    return None


def fitted_to_gcps(points, crs: CRS, path: str) -> Georeference:
    """The affine transform that fits ground control ``points`` (rasterio GroundControlPoints in
    ``crs``) by least squares, if every point lies within ``GCP_FIT_TOLERANCE_PX`` of it."""
    if len(points) < 3:
        raise NeedsWarping(f"scene has {len(points)} ground control point(s); an affine fit needs 3 or more: {path}")
    xy = np.array([(p.x, p.y) for p in points], dtype=np.float64)
    pixels = np.array([(p.col, p.row) for p in points], dtype=np.float64)
    # Fitted here rather than by GDAL (rasterio's from_gcps): for points in a line GDAL's fit fails
    # without saying so, and the transform it hands back is whatever its memory held.
    design = np.column_stack([pixels, np.ones(len(points))])
    coef, _, rank, _ = np.linalg.lstsq(design, xy, rcond=None)
    if rank < 3:
        raise NeedsWarping(f"no affine transform follows from the scene's {len(points)} ground control points "
                           f"(they lie in a line): {path}")
    transform = Affine(*coef[:, 0], *coef[:, 1])
    cols, rows = ~transform @ (xy[:, 0], xy[:, 1])
    worst = float(np.hypot(cols - pixels[:, 0], rows - pixels[:, 1]).max())
    if worst > GCP_FIT_TOLERANCE_PX:
        raise NeedsWarping(f"the scene's {len(points)} ground control points fit no affine transform "
                           f"(one lies {worst:.1f} px off, over {GCP_FIT_TOLERANCE_PX:g}); "
                           f"{WARP_HINT.format(options='', path=path)}")
    return Georeference(crs, transform, "ground control points", len(points), worst)
