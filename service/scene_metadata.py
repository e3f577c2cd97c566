"""The JSON metadata a vendor or catalogue delivers beside a scene: the view and the bands it records.

GDAL reads a Maxar ``.IMD`` or an Airbus DIMAP file with the scene itself (``service.rasters``).
A STAC item, and Planet's ``*_metadata.json``, it does not: they are found here, by name. Such a
file is named after the scene's id, which the image's own name starts with: Maxar's open data
puts ``10300100A5431800.json`` beside ``10300100A5431800-visual.tif``, Planet puts
``20200801_101010_ssc1d1_0001_metadata.json`` beside ``20200801_101010_ssc1d1_0001_basic_analytic.tif``,
and a scene called ``yard.tif`` may have ``yard.json``. So the names tried are the image's name and
each part of it up to a ``_``, ``-`` or ``.``, longest first, as ``NAME.json`` and
``NAME_metadata.json``: a few look-ups, never a listing of the folder, which may hold thousands.
A STAC item whose asset is the scene's file may also name its bands (``eo:bands``), which says
which are red, green and blue in a multispectral image that does not say so itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

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
    that records one, and that file; None where none does."""
    for path, item in _items_beside(Path(scene)):
        view = view_from_item(item)
        if view is not None:
            return view, path
    return None


def band_names_beside(scene: str | Path) -> tuple[str, ...]:
    """Each band's common name (``red``, ``nir``, ...; "" where none is given) from the first STAC
    item beside a local ``scene`` with an asset that is this very file (the last part of its
    ``href`` is the scene's file name), from the asset's ``eo:bands`` (STAC 1.0) or ``bands``
    (STAC 1.1); () where there is none."""
    scene = Path(scene)
    for _, item in _items_beside(scene):
        names = _band_names_in(item, scene.name)
        if names:
            return names
    return ()


def metadata_beside(scene: str | Path) -> list[Path]:
    """The JSON files beside a local ``scene`` that say something it is read with: its view or its
    bands (for ``railsight batch``, which redoes a scene whose files change)."""
    scene = Path(scene)
    return [path for path, item in _items_beside(scene)
            if view_from_item(item) is not None or _band_names_in(item, scene.name)]


def _band_names_in(item: dict, file_name: str) -> tuple[str, ...]:
    """The common names of the bands of ``item``'s asset whose ``href`` (a path or URL, its query
    aside) ends in ``file_name``; () where none has any."""
    assets = item.get("assets")
    for asset in assets.values() if isinstance(assets, dict) else ():
        if not isinstance(asset, dict) or PurePosixPath(urlsplit(str(asset.get("href", ""))).path).name != file_name:
            continue
        bands = asset.get("eo:bands") or asset.get("bands")
        names = tuple(_common_name(band) for band in bands) if isinstance(bands, list) else ()
        if any(names):
            return names
    return ()


def _common_name(band: object) -> str:
    if not isinstance(band, dict):
        return ""
    name = band.get("common_name", band.get("eo:common_name"))
    return name.strip().lower() if isinstance(name, str) else ""


def _items_beside(scene: Path) -> Iterator[tuple[Path, dict]]:
    """The JSON objects in the files named ``candidate_names(scene)`` beside it, in that order. A file
    that cannot be read or parsed is passed over: most scenes have none, and a stray file must not
    stop a run."""
    for name in candidate_names(scene):
        path = scene.with_name(name)
        try:
            if not path.is_file() or path.stat().st_size > MAX_BYTES:
                continue
            item = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):  # RecursionError: nested past what json parses
            continue
        if isinstance(item, dict):
            yield path, item
