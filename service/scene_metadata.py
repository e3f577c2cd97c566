"""The JSON metadata a vendor or catalogue delivers beside a scene, and the view it records.

GDAL reads a Maxar ``.IMD`` or an Airbus DIMAP file with the scene itself (``service.rasters``).
A STAC item, and Planet's ``*_metadata.json``, it does not: they are found here, by name. Such a
file is named after the scene's id, which the image's own name starts with: Maxar's open data
puts ``10300100A5431800.json`` beside ``10300100A5431800-visual.tif``, Planet puts
``20200801_101010_ssc1d1_0001_metadata.json`` beside ``20200801_101010_ssc1d1_0001_basic_analytic.tif``,
and a scene called ``yard.tif`` may have ``yard.json``. So the names tried are the image's name and
each part of it up to a ``_``, ``-`` or ``.``, longest first, as ``NAME.json`` and
``NAME_metadata.json``: a few look-ups, never a listing of the folder, which may hold thousands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from service.view_geometry import View, view_from_item

# A STAC item or a Planet item is a few kB; anything far larger beside a scene is something else.
MAX_BYTES = 1 << 20
_SEPARATOR = re.compile(r"[-_.]")
_DIMAP_IMAGE = re.compile(r"IMG_(.+?)(?:_R\d+C\d+)?\.(?:tif|tiff|jp2)", re.IGNORECASE)


def candidate_names(scene: Path) -> list[str]:
    """The JSON file names that may describe ``scene``, the most specific first."""
    stem = scene.stem
    ids = [stem] + [stem[: m.start()] for m in reversed(list(_SEPARATOR.finditer(stem))) if m.start() > 0]
    return [f"{name}{suffix}" for name in dict.fromkeys(ids) for suffix in (".json", "_metadata.json")]


def dimap_name(image: str) -> str | None:
    """The Airbus DIMAP file beside an image of its product: ``DIM_X.XML`` for ``IMG_X_R1C1.TIF``
    (or ``IMG_X.JP2``); None for an image not named that way."""
    match = _DIMAP_IMAGE.fullmatch(image)
    return f"DIM_{match.group(1)}.XML" if match else None


def view_beside(scene: str | Path) -> tuple[View, Path] | None:
    """The view recorded by the first JSON file beside a local ``scene`` (see ``candidate_names``)
    that records one, and that file; None where none does. A file that cannot be read or parsed is
    passed over: most scenes have none, and a stray file must not stop a run."""
    scene = Path(scene)
    for name in candidate_names(scene):
        path = scene.with_name(name)
        try:
            if not path.is_file() or path.stat().st_size > MAX_BYTES:
                continue
            item = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):  # RecursionError: nested past what json parses
            continue
        view = view_from_item(item)
        if view is not None:
            return view, path
    return None
