"""The view a scene was taken from, and how far it leans what stands up in the scene's grid.

A satellite looking down at an angle shows a standing object's top beyond its foot, away from the
satellite: ``h * tan(off_nadir)`` metres for a point ``h`` metres up. A car then shows as its roof
and the wall facing the sensor, wider than the car (``kernels.car_fit.view_widening``).

Vendors record the view with the image. A Maxar (DigitalGlobe) product's ``.IMD`` file, beside the
GeoTIFF, gives ``meanOffNadirViewAngle`` and ``meanSatAz`` (the bearing from the scene to the
satellite, clockwise from north); GDAL reads it into the raster's ``IMD`` metadata domain, and
reads the same two from the product's ``.XML`` where there is no ``.IMD``. ``railsight synth``
writes an ``.IMD`` beside each of its scenes. An Airbus product (Pleiades, Pleiades
Neo, SPOT 6/7) in DIMAP v2 gives, in the ``DIM_*.XML`` beside its ``IMG_*_R1C1.TIF``, the
``INCIDENCE_ANGLE`` and ``AZIMUTH_ANGLE`` of the line of sight at each of a few places of the scene;
GDAL reads those into the same domain, and the scene centre's (``LOCATION_TYPE`` Center) is taken.
Which way along its azimuth the satellite lies does not matter here: a car shows its wall on
whichever side the satellite is, and ``kernels.car_fit.view_widening`` widens it the same.
A STAC item (JSON) gives the same two as ``view:off_nadir`` and ``view:azimuth`` in its properties
(the STAC view extension, which Maxar's open data and many other catalogues write), and Planet's
items and order ``*_metadata.json`` as ``view_angle`` and ``satellite_azimuth``:
``service.scene_metadata`` finds such a file beside a scene. Where the metadata comes without its
scene beside it (an upload's, or fetched beside an http(s) scene), ``view_from_metadata_text``
reads any of these the way GDAL does. A user may also pass the two angles with the job.

The lean is the angle at the ground: a satellite's off-nadir angle is a little smaller (about 3
degrees at 30 from 600 km up, for a lean an eighth shorter), within what car heights spread.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from xml.etree import ElementTree

import numpy as np

from service.errors import BadOption

# Past this the ground is seen so slantwise that no sensor railsight is meant for images it.
MAX_OFF_NADIR_DEG = 60.0
IMD_OFF_NADIR = "IMAGE_1.meanOffNadirViewAngle"
IMD_SATELLITE_AZIMUTH = "IMAGE_1.meanSatAz"
# The same two as GDAL keys them from a Maxar product's .XML (its <IMD> element).
MAXAR_XML_ANGLES = ("IMAGE.MEANOFFNADIRVIEWANGLE", "IMAGE.MEANSATAZ")
# DIMAP v2 as GDAL keys it: "..._Values_2.LOCATION_TYPE" where there are several places, no number
# where there is one.
DIMAP_PLACE = "Geometric_Data.Use_Area.Located_Geometric_Values"
DIMAP_CENTRE = "Center"
DIMAP_INCIDENCE = "Acquisition_Angles.INCIDENCE_ANGLE"
DIMAP_AZIMUTH = "Acquisition_Angles.AZIMUTH_ANGLE"
# A STAC item's view extension (its properties), and Planet's own names for the same angles. Planet's
# view_angle may carry a sign for east or west of the track; its size is the angle.
STAC_ANGLES = ("view:off_nadir", "view:azimuth")
STAC_INCIDENCE = "view:incidence_angle"
PLANET_ANGLES = ("view_angle", "satellite_azimuth")


@dataclass(frozen=True)
class View:
    """``off_nadir_deg`` from straight down; ``satellite_azimuth_deg`` the bearing from the scene to the
    satellite, clockwise from north; ``source`` where they came from ("request" or "scene metadata")."""

    off_nadir_deg: float
    satellite_azimuth_deg: float
    source: str = "request"

    def check(self) -> None:
        if not 0.0 <= self.off_nadir_deg <= MAX_OFF_NADIR_DEG:
            raise BadOption(f"off-nadir angle must be between 0 and {MAX_OFF_NADIR_DEG:g} degrees, "
                            f"got {self.off_nadir_deg:g}")
        if not 0.0 <= self.satellite_azimuth_deg <= 360.0:
            raise BadOption(f"satellite azimuth must be between 0 and 360 degrees, got {self.satellite_azimuth_deg:g}")

    def summary(self) -> dict[str, object]:
        return {"off_nadir_deg": self.off_nadir_deg, "satellite_azimuth_deg": self.satellite_azimuth_deg,
                "source": self.source}


def requested_view(off_nadir_deg: float | None, satellite_azimuth_deg: float | None) -> View | None:
    """The view a user gave (both angles, or neither), checked."""
    if off_nadir_deg is None and satellite_azimuth_deg is None:
        return None
    if off_nadir_deg is None or satellite_azimuth_deg is None:
        raise BadOption("give the view as both the off-nadir angle and the satellite azimuth, or neither")
    view = View(float(off_nadir_deg), float(satellite_azimuth_deg))
    view.check()
    return view


def view_from_imd(tags: dict[str, str]) -> View | None:
    """The view in a raster's ``IMD`` metadata domain (Maxar's ``.IMD`` or ``.XML``, or Airbus
    DIMAP); None where it gives none, or none that holds."""
    off_nadir, azimuth = tags.get(IMD_OFF_NADIR), tags.get(IMD_SATELLITE_AZIMUTH)
    if off_nadir is None and azimuth is None:
        off_nadir, azimuth = (tags.get(key) for key in MAXAR_XML_ANGLES)
    if off_nadir is None and azimuth is None:
        off_nadir, azimuth = _dimap_centre_angles(tags)
    return _metadata_view(off_nadir, azimuth)


def _metadata_view(off_nadir: object, azimuth: object, *, either_side: bool = False) -> View | None:
    """The view of two angles as metadata gives them (text or numbers); None where either is
    missing, not a number, or out of range. ``either_side``: the off-nadir angle may carry a sign
    for the side of the track, and its size is the angle."""
    if off_nadir is None or azimuth is None:
        return None
    try:
        off = float(off_nadir)  # type: ignore[arg-type]  # anything else raises, and is no view
        view = View(abs(off) if either_side else off, float(azimuth) % 360.0, "scene metadata")  # type: ignore[arg-type]
        view.check()
    except (TypeError, ValueError, BadOption):
        return None
    return view


def view_from_item(item: object) -> View | None:
    """The view a STAC item or a Planet item (parsed JSON) records in its ``properties``: the
    off-nadir angle (else the incidence angle, the same angle seen from the ground) and the azimuth;
    None where it records none, or none that holds."""
    props = item.get("properties") if isinstance(item, dict) else None
    if not isinstance(props, dict):
        return None
    for off_key, azimuth_key in (STAC_ANGLES, (STAC_INCIDENCE, STAC_ANGLES[1]), PLANET_ANGLES):
        off_nadir, azimuth = props.get(off_key), props.get(azimuth_key)
        if off_nadir is not None and azimuth is not None:
            return _metadata_view(off_nadir, azimuth, either_side=True)
    return None


def _dimap_centre_angles(tags: dict[str, str]) -> tuple[str | None, str | None]:
    """The incidence and azimuth angles of the line of sight at a DIMAP scene's centre."""
    for key, value in tags.items():
        place = key.removesuffix(".LOCATION_TYPE")
        if place != key and place.startswith(DIMAP_PLACE) and value.strip() == DIMAP_CENTRE:
            return tags.get(f"{place}.{DIMAP_INCIDENCE}"), tags.get(f"{place}.{DIMAP_AZIMUTH}")
    return None, None


def view_from_metadata_text(text: str) -> View | None:
    """The view in the text of a metadata file read without its scene beside it (an upload's field, a
    download): XML is a Maxar ``.XML`` or an Airbus DIMAP, JSON a STAC or Planet item, anything else
    a Maxar ``.IMD``."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as Windows editors save UTF-8
    if text.lstrip().startswith("<"):
        try:
            return view_from_imd(xml_tags(text))
        except (ElementTree.ParseError, RecursionError):  # RecursionError: nested past what we walk
            return None
    try:
        item = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past what json parses
        return view_from_imd(imd_tags(text))
    return view_from_item(item)


def xml_tags(text: str) -> dict[str, str]:
    """The leaves of a Maxar ``.XML`` (below its ``IMD`` element) or an Airbus DIMAP ``DIM_*.XML``
    (below its root), keyed by their paths as GDAL keys its ``IMD`` domain (``IMAGE.MEANSATAZ``),
    an element that repeats numbered (``Located_Geometric_Values_2``): for one that comes without
    its scene beside it, as an upload's."""
    root = ElementTree.fromstring(text)
    top = root.find("IMD") if root.tag == "isd" else root
    tags: dict[str, str] = {}

    def walk(element: ElementTree.Element, path: str) -> None:
        children = list(element)
        if not children:
            tags[path] = (element.text or "").strip()
            return
        repeats = Counter(child.tag for child in children)
        seen: Counter[str] = Counter()
        for child in children:
            seen[child.tag] += 1
            name = child.tag if repeats[child.tag] == 1 else f"{child.tag}_{seen[child.tag]}"
            walk(child, f"{path}.{name}" if path else name)

    if top is not None:
        walk(top, "")
    return tags


def imd_tags(text: str) -> dict[str, str]:
    """The ``key = value;`` pairs of a Maxar ``.IMD`` file's text, keyed as GDAL keys its ``IMD``
    domain (``IMAGE_1.meanSatAz``): for one that comes without its scene beside it, as an upload's."""
    tags: dict[str, str] = {}
    group = ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip().removesuffix(";").strip()
        if key == "BEGIN_GROUP":
            group = f"{value}."
        elif key == "END_GROUP":
            group = ""
        else:
            tags[group + key] = value
    return tags


def imd_text(view: View) -> str:
    """A minimal ``.IMD`` file (Maxar's layout) that records ``view``, for GDAL to read back."""
    group, azimuth = IMD_SATELLITE_AZIMUTH.split(".")
    off_nadir = IMD_OFF_NADIR.split(".")[1]
    return (f"BEGIN_GROUP = {group}\n\t{azimuth} = {view.satellite_azimuth_deg:.4f};\n"
            f"\t{off_nadir} = {view.off_nadir_deg:.4f};\nEND_GROUP = {group}\nEND;\n")


def lean_in_grid(view: View, metres_per_pixel: np.ndarray) -> np.ndarray:
    """The grid pixels (columns, rows) by which a point 1 m up shows beyond its foot, on a grid whose
    pixel steps along columns and rows cover ``metres_per_pixel`` (2 x 2, columns: the ground metres
    east and north of each step; ``SceneInfo.grid_ground_steps``)."""
    reach = math.tan(math.radians(view.off_nadir_deg))
    away = math.radians(view.satellite_azimuth_deg + 180.0)  # tops lean away from the satellite
    return np.linalg.solve(metres_per_pixel, reach * np.array([math.sin(away), math.cos(away)]))
