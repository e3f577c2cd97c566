"""The one module that opens rasters. Everything else gets arrays, windows and transforms.

Scenes are read in a *model grid*: the scene's own grid rescaled so one pixel is the model's pixel
size in metres. When the scene is already close to that size the grid is the scene's own and
windows are whole pixels; otherwise each window is resampled on read (bilinear), and the model-grid
transform maps results straight back to the scene CRS.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from service.colour_balance import BalanceBox, Contrast, apply_tone, balance_gains, contrast_step
from service.errors import (
    AllNoData,
    BadOption,
    NeedsWarping,
    NoGeoreference,
    NotARaster,
    PixelSizeConflict,
    SceneError,
    SceneNotFound,
    SceneTooLarge,
    TooFewBands,
)
from service.georeference import scene_georeference
from service.scene_metadata import band_names_beside, metadata_beside, view_beside
from service.view_geometry import View, view_from_imd

# GDAL's block cache defaults to 5 % of RAM per process; tiles are read in row order and neighbours
# share only their halo, so a small cache keeps the hits and keeps every worker's memory flat.
# Set before GDAL first sizes its cache; an operator's own GDAL_CACHEMAX wins.
os.environ.setdefault("GDAL_CACHEMAX", "128")

# Within this ratio of the model's pixel size a scene is used on its own grid, unresampled.
RESAMPLE_TOLERANCE = 0.1
# Scenes above this many pixels with no overviews are sampled on a sparse grid of windows.
SPARSE_ABOVE_PX = 4096 * 4096
SPARSE_GRID = 24
CHECK_GRID = 6
SPARSE_WINDOW_PX = 64
# Longest side of the decimated read used for statistics (stretch and the no-data check).
STATS_SIDE = 1024
# What chose a scene's red, green and blue bands (SceneInfo.bands_from, summary.scene.bands_from).
BANDS_FROM_OPTION, BANDS_FROM_COLOUR, BANDS_FROM_NAMES, BANDS_FROM_ORDER = (
    "option", "colour interpretation", "band names", "band order")
RGB_NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class SceneInfo:
    """What the pipeline needs to know about a scene, small enough to ship to every Dask task."""

    path: str
    width: int
    height: int
    band_count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...]
    rgb_bands: tuple[int, int, int]
    pixel_size_m: tuple[float, float]
    model_pixel_size_m: float
    grid_scale: tuple[float, float]
    stretch: tuple[tuple[float, float], ...] | None
    nodata: float | None
    gains: tuple[float, float, float] | None = None  # per-band colour balance (service.colour_balance)
    contrast: Contrast | None = None  # contrast scale about the band means, after the gains (the same)
    georeferencing: dict[str, object] | None = field(default=None, compare=False)  # service.georeference, as summarised
    view: View | None = None  # the view its metadata records (service.view_geometry)
    bands_from: str = BANDS_FROM_COLOUR  # what chose rgb_bands (pick_rgb_bands)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    @property
    def grid_width(self) -> int:
        return max(1, round(self.width * self.grid_scale[0]))

    @property
    def grid_height(self) -> int:
        return max(1, round(self.height * self.grid_scale[1]))

    @property
    def grid_transform(self) -> Affine:
        """Model-grid pixel (col, row) -> scene CRS."""
        return self.affine @ Affine.scale(self.width / self.grid_width, self.height / self.grid_height)

    def grid_ground_steps(self) -> np.ndarray:
        """``ground_steps`` of one model-grid pixel; a scene without a CRS is taken as north up."""
        if self.crs_wkt is None:
            px = [self.pixel_size_m[i] / self.grid_scale[i] for i in (0, 1)]
            return np.array([[px[0], 0.0], [0.0, -px[1]]])
        return ground_steps(CRS.from_wkt(self.crs_wkt), self.grid_transform, self.grid_width, self.grid_height)

    @property
    def resampled(self) -> bool:
        return (self.grid_width, self.grid_height) != (self.width, self.height)


# The coarsest pixel a user may give a picture without georeferencing: past it a railcar is a pixel or two.
MAX_PIXEL_SIZE_M = 10.0


def is_remote(path: str) -> bool:
    """A URL or a GDAL virtual path: GDAL's to open, not a file here."""
    return "://" in path or path.startswith("/vsi")


def _open(path: str):
    if not os.path.exists(path) and not is_remote(path):
        raise SceneNotFound(f"scene not found: {path}")
    try:
        with warnings.catch_warnings():
            # A plain picture makes GDAL warn of its missing geotransform as it opens; inspect_scene
            # refuses it in one line of its own (or, with --allow-pixel-coords, the user asked for it).
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise NotARaster(f"not a readable raster: {path} ({_first_line(exc)})") from exc
    except RasterioError as exc:
        raise NotARaster(f"not a readable raster: {path} ({_first_line(exc)})") from exc


def scene_inputs(path: str) -> list[list[Any]] | None:
    """The files a local scene is read from: the image, the metadata beside it that GDAL takes in
    (a Maxar ``.IMD`` or ``.XML``, an Airbus ``DIM_*.XML``, a ``.aux.xml``), and a STAC or Planet
    JSON that gives its view or names its bands (``service.scene_metadata``), each with its
    ``_file_identity``. None for a remote scene, or one that cannot be opened."""
    if is_remote(path):
        return None
    try:
        with _open(path) as src:
            files = [os.path.normpath(f) for f in src.files]
    except SceneError:
        return None
    files += [os.path.normpath(f) for f in metadata_beside(path)]
    stamped: list[list[Any]] = []
    for f in files:
        identity = _file_identity(f)
        if identity is None:
            return None
        stamped.append([f, *identity])
    return sorted(stamped)


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or of the GDAL error behind it where rasterio only says
    "Read failed. See previous exception for details." (an exception the user never sees)."""
    while "previous exception" in str(exc) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def pick_rgb_bands(colorinterp: tuple[ColorInterp, ...], count: int, bands: tuple[int, ...] | None,
                   names: Callable[[], tuple[str, ...]] = tuple) -> tuple[tuple[int, int, int], str]:
    """1-based red, green, blue band indexes, and what chose them: ``bands`` if given, else by
    colour interpretation, else by ``names()`` (each band's name in lower case, where the scene's
    metadata gives one; only looked up when needed), else the first three."""
    if bands is not None:
        if len(bands) != 3:
            raise BadOption(f"--bands needs exactly three band numbers, got {len(bands)}")
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise BadOption(f"--bands {bad[0]} is out of range: the scene has bands 1..{count}")
        return (bands[0], bands[1], bands[2]), BANDS_FROM_OPTION
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in colorinterp for c in wanted):
        return tuple(colorinterp.index(c) + 1 for c in wanted), BANDS_FROM_COLOUR  # type: ignore[return-value]
    named = names()
    if len(named) == count and all(n in named for n in RGB_NAMES):
        return tuple(named.index(n) + 1 for n in RGB_NAMES), BANDS_FROM_NAMES  # type: ignore[return-value]
    return (1, 2, 3), BANDS_FROM_ORDER


def band_names(descriptions: tuple[str | None, ...], path: str) -> tuple[str, ...]:
    """Each band's name, lower case: GDAL's band descriptions where they name red, green and blue
    (some products write "Red", "Green", ...), else the common names of a STAC item beside a local
    scene (``service.scene_metadata.band_names_beside``); () where neither does."""
    described = tuple((d or "").strip().lower() for d in descriptions)
    if all(n in described for n in RGB_NAMES):
        return described
    return () if is_remote(path) else band_names_beside(path)


def ground_pixel_size(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground size in metres of one pixel step along columns and rows, measured geodesically at the
    scene centre, so it is right for UTM, EPSG:4326 and Web Mercator alike."""
    dx, dy = np.hypot(*ground_steps(crs, transform, width, height))
    return float(dx), float(dy)


def ground_steps(crs: CRS, transform: Affine, width: int, height: int) -> np.ndarray:
    """2 x 2: the ground metres (east, north) of one pixel step along columns (first column) and along
    rows of a ``width`` x ``height`` raster, measured geodesically at its centre."""
    cx, cy = width / 2.0, height / 2.0
    to_lonlat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    pts = [transform @ (cx, cy), transform @ (cx + 1, cy), transform @ (cx, cy + 1)]
    lon, lat = (np.asarray(v) for v in to_lonlat.transform([p[0] for p in pts], [p[1] for p in pts]))
    bearing, _, metres = Geod(ellps="WGS84").inv(np.full(2, lon[0]), np.full(2, lat[0]), lon[1:], lat[1:])
    bearing = np.radians(bearing)
    return np.array([np.sin(bearing), np.cos(bearing)]) * np.asarray(metres)


def inspect_scene(
    path: str | Path,
    *,
    model_pixel_size_m: float,
    bands: tuple[int, ...] | None = None,
    allow_pixel_coords: bool = False,
    pixel_size_m: float | None = None,
    max_pixels: int | None = None,
    colour_balance: BalanceBox | None = None,
    min_spread: float | None = None,
) -> SceneInfo:
    """Open a scene once, check it can be used, and describe it. Raises a SceneError naming what is
    wrong: missing, not a raster, too few bands, no georeferencing, too large, all no-data.
    ``pixel_size_m`` is the ground size of a pixel of a scene with no georeferencing (a plain
    picture), which it lets run (as ``allow_pixel_coords`` does, where the model's own pixel size is
    assumed); a georeferenced scene's pixel size comes from its georeferencing alone. With a
    ``colour_balance`` and a ``min_spread`` (the model's: ``ModelMeta.colour_balance`` and
    ``min_spread``), reads give the scene that balance and at least that brightness spread."""
    path = str(path)
    with _open(path) as src:
        if src.count < 3:
            raise TooFewBands(f"scene has {src.count} band(s); railsight needs at least 3 (RGB): {path}")
        if max_pixels is not None and src.width * src.height > max_pixels:
            raise SceneTooLarge(
                f"scene is {src.width} x {src.height} px, over the limit of {max_pixels:,} pixels: {path}"
            )
        rgb, bands_from = pick_rgb_bands(tuple(src.colorinterp), src.count, bands,
                                         lambda: band_names(tuple(src.descriptions), path))
        try:
            georef = scene_georeference(src, path)
        except NeedsWarping:
            if not allow_pixel_coords and pixel_size_m is None:
                raise
            georef = None  # asked for image pixels: the image runs as a picture without georeferencing
        if georef and pixel_size_m is not None:
            raise PixelSizeConflict(
                f"scene is georeferenced ({crs_name(georef.crs)}), so its pixel size comes from that; "
                f"a pixel size is only for a picture without georeferencing: {path}"
            )
        if georef:
            pixel_size = ground_pixel_size(georef.crs, georef.transform, src.width, src.height)
            crs_wkt: str | None = georef.crs.to_wkt()
            transform = georef.transform
        elif allow_pixel_coords or pixel_size_m is not None:
            pixel_size = (pixel_size_m or model_pixel_size_m,) * 2
            crs_wkt = None
            transform = src.transform
        else:
            raise NoGeoreference(
                f"scene has no georeferencing (CRS and transform): {path}; pass --allow-pixel-coords to run anyway, "
                "or --pixel-size M to give its ground pixel size"
            )
        scale = tuple(_grid_scale(p, model_pixel_size_m) for p in pixel_size)
        sample, valid = _statistics_sample(src, rgb, path)
        if not valid.any():
            raise AllNoData(f"scene has no valid pixels (all no-data): {path}")
        stretch = None if src.dtypes[rgb[0] - 1] == "uint8" else _stretch_from(sample, valid)
        scaled = _to_uint8(sample, stretch)
        gains = balance_gains(scaled, valid, colour_balance) if colour_balance else None
        contrast = None
        if min_spread:
            contrast = contrast_step(apply_tone(scaled.copy(), gains) if gains else scaled, valid, min_spread)
        return SceneInfo(
            path=path,
            width=src.width,
            height=src.height,
            band_count=src.count,
            dtype=src.dtypes[rgb[0] - 1],
            crs_wkt=crs_wkt,
            transform=tuple(transform)[:6],
            rgb_bands=rgb,
            bands_from=bands_from,
            pixel_size_m=(float(pixel_size[0]), float(pixel_size[1])),
            model_pixel_size_m=model_pixel_size_m,
            grid_scale=(scale[0], scale[1]),
            stretch=stretch,
            nodata=src.nodata,
            gains=gains,
            contrast=contrast,
            georeferencing=georef.summary() if georef else None,
            view=view_from_imd(src.tags(ns="IMD")) or _json_view(path),
        )


def _json_view(path: str) -> View | None:
    """The view a STAC or Planet JSON beside a local scene records (``service.scene_metadata``)."""
    found = None if is_remote(path) else view_beside(path)
    return found[0] if found else None


def crs_name(crs) -> str:
    """``EPSG:32652`` where the CRS has an authority code, else its name (any CRS rasterio takes, or WKT)."""
    crs = CRS.from_user_input(crs)
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.name


def _grid_scale(pixel_size_m: float, model_pixel_size_m: float) -> float:
    ratio = pixel_size_m / model_pixel_size_m
    return 1.0 if abs(ratio - 1.0) <= RESAMPLE_TOLERANCE else ratio


def _statistics_sample(src, rgb: tuple[int, int, int], path: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels for the stretch statistics and the no-data check, read cheaply. Small scenes and
    scenes with overviews: a decimated read of the whole. Large scenes without overviews: a decimated
    read would decode every block, so read a sparse grid of windows instead, and fall back to the
    whole only when the sample holds no valid pixel (so a scene is never refused as all no-data on a
    sample's word)."""
    if src.overviews(rgb[0]) or src.width * src.height <= SPARSE_ABOVE_PX:
        return _decimated_read(src, rgb, path)
    # Each window decodes a whole block: 24 x 24 of them were a third of a 20,000 px scene. A uint8
    # scene without no-data needs no statistics and cannot be all no-data, so a few windows (the
    # last block among them) only check that the file reads.
    plain = src.dtypes[rgb[0] - 1] == "uint8" and all_valid(src)
    data, valid = _window_sample(src, rgb, path, CHECK_GRID if plain else SPARSE_GRID)
    return (data, valid) if valid.any() else _decimated_read(src, rgb, path)


def all_valid(src) -> bool:
    """Whether GDAL says every pixel of every band is valid (no no-data value, mask or alpha)."""
    return all(flags == [MaskFlags.all_valid] for flags in src.mask_flag_enums)


def _window_sample(src, rgb: tuple[int, int, int], path: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    side = SPARSE_WINDOW_PX
    cols = np.linspace(0, src.width - side, n).astype(int)
    rows = np.linspace(0, src.height - side, n).astype(int)
    data = np.zeros((3, n * side, n * side), dtype=src.dtypes[rgb[0] - 1])
    valid = np.zeros((n * side, n * side), dtype=bool)
    try:
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                window = Window(int(c), int(r), side, side)
                cell = (slice(i * side, (i + 1) * side), slice(j * side, (j + 1) * side))
                data[(slice(None), *cell)] = src.read(list(rgb), window=window)
                valid[cell] = src.dataset_mask(window=window) > 0
    except RasterioError as exc:
        raise SceneError(f"scene could not be read (truncated or corrupt?): {path} ({_first_line(exc)})") from exc
    return data, valid


def _decimated_read(src, rgb: tuple[int, int, int], path: str) -> tuple[np.ndarray, np.ndarray]:
    """A small read of the whole scene (GDAL uses overviews when present): statistics and the
    no-data check without holding the scene in memory. Also the first place a truncated file shows."""
    factor = max(1, math.ceil(max(src.width, src.height) / STATS_SIDE))
    shape = (max(1, src.height // factor), max(1, src.width // factor))
    try:
        data = src.read(list(rgb), out_shape=(3, *shape), resampling=Resampling.nearest)
        mask = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest)
    except RasterioError as exc:
        raise SceneError(f"scene could not be read (truncated or corrupt?): {path} ({_first_line(exc)})") from exc
    return data, mask > 0


def _stretch_from(sample: np.ndarray, valid: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Per-band 2nd..98th percentile, the linear stretch that maps non-8-bit data to 0..255."""
    out = []
    for band in sample:
        values = band[valid].astype(np.float64)
        lo, hi = np.percentile(values, [2.0, 98.0]) if values.size else (0.0, 1.0)
        out.append((float(lo), float(hi if hi > lo else lo + 1.0)))
    return tuple(out)


class SceneReader:
    """Reads model-grid windows of one scene as uint8 RGB plus a validity mask."""

    def __init__(self, info: SceneInfo, src) -> None:
        self.info = info
        self._src = src
        # No nodata value, mask band or alpha: every pixel is valid and the mask need not be read
        # (the usual scene; reading GDAL's all-valid mask cost a fifth of a tile's read time).
        self._all_valid = all_valid(src)

    def read(self, col: int, row: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Window in model-grid pixels, may reach past the scene (padded as invalid).
        Returns ``rgb`` (3, height, width) uint8 and ``valid`` (height, width) bool."""
        info = self.info
        rgb = np.zeros((3, height, width), dtype=np.uint8)
        valid = np.zeros((height, width), dtype=bool)
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + width, info.grid_width), min(row + height, info.grid_height)
        if c1 <= c0 or r1 <= r0:
            return rgb, valid
        out_shape = (r1 - r0, c1 - c0)
        fx = info.width / info.grid_width
        fy = info.height / info.grid_height
        window = Window(c0 * fx, r0 * fy, (c1 - c0) * fx, (r1 - r0) * fy)
        if not info.resampled:
            window = Window(c0, r0, c1 - c0, r1 - r0)
        dst = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        whole = out_shape == (height, width)
        direct = whole and info.stretch is None and info.dtype == "uint8"  # decoded straight into rgb
        try:
            size = {"out": rgb} if direct else {"out_shape": (3, *out_shape)}
            data = self._src.read(list(info.rgb_bands), window=window, resampling=Resampling.bilinear, **size)
            mask = None
            if not self._all_valid:
                mask = self._src.dataset_mask(window=window, out_shape=out_shape, resampling=Resampling.nearest)
        except RasterioError as exc:
            raise SceneError(
                f"scene could not be read (truncated or corrupt?): {info.path} ({_first_line(exc)})"
            ) from exc
        if not direct:
            rgb[:, dst[0], dst[1]] = _to_uint8(data, info.stretch)
        if info.gains or info.contrast:
            apply_tone(rgb, info.gains, info.contrast)  # padding stays black: 0 maps to 0 or below
        valid[dst] = True if mask is None else mask > 0
        if mask is not None:
            rgb *= valid  # no-data pixels read as black (the padding past the scene's edge already is)
        return rgb, valid

    def close(self) -> None:
        self._src.close()


def _to_uint8(data: np.ndarray, stretch: tuple[tuple[float, float], ...] | None) -> np.ndarray:
    if stretch is None:
        return data.astype(np.uint8, copy=False)
    out = np.empty(data.shape, dtype=np.uint8)
    for i, (lo, hi) in enumerate(stretch):
        scaled = (data[i].astype(np.float32) - lo) * (255.0 / (hi - lo))
        out[i] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


@contextmanager
def open_scene(info: SceneInfo) -> Iterator[SceneReader]:
    """Open a described scene for window reads (one per Dask task or per worker thread)."""
    with _open(info.path) as src:
        yield SceneReader(info, src)


# Scenes a worker keeps open between tasks (see shared_reader), over all its threads.
KEEP_OPEN = 4
_kept_open: OrderedDict[tuple, SceneReader] = OrderedDict()
_kept_open_lock = threading.Lock()


def shared_reader(info: SceneInfo) -> SceneReader:
    """This thread's reader of a described scene, kept open from one task to the next. A tile's
    window with its halo spans up to 3 x 3 of the file's blocks, most of them shared with the
    neighbouring tiles; a dataset opened afresh for every task decoded them all again (GDAL drops a
    dataset's cached blocks when it closes), three times the decoding. Keyed by thread (a GDAL
    dataset is not thread-safe) and by the file's identity, so a scene rewritten in place is
    opened anew; the least recently used beyond ``KEEP_OPEN`` are closed."""
    key = (info, threading.get_ident(), _file_identity(info.path))
    with _kept_open_lock:
        reader = _kept_open.get(key)
        if reader is not None:
            _kept_open.move_to_end(key)
            return reader
    reader = SceneReader(info, _open(info.path))
    with _kept_open_lock:
        _kept_open[key] = reader
        while len(_kept_open) > KEEP_OPEN:
            _, old = _kept_open.popitem(last=False)
            old.close()
    return reader


def _file_identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # a URL or /vsi path: GDAL's own
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def write_geotiff(
    path: str | Path,
    data: np.ndarray,
    *,
    transform: Affine | None,
    crs: str | CRS | None,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    tiled: bool = True,
    compress: str | None = "deflate",
    photometric_rgb: bool = True,
) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF, atomically (temporary name, then rename).
    ``mask`` (rows, cols, bool, True = valid) becomes an internal dataset mask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, height, width = data.shape
    profile: dict = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform if transform is not None else Affine.identity(),
        "nodata": nodata,
    }
    if tiled and width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile["compress"] = compress
    if photometric_rgb and bands == 3 and data.dtype == np.uint8:
        profile["photometric"] = "RGB"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    os.replace(tmp, path)
    return path


class ClassRasterWriter:
    """Streams per-tile class labels into a tiled GeoTIFF, then converts it to a COG on close, so the
    whole-scene mask is never held in memory."""

    def __init__(self, path: str | Path, info: SceneInfo) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.stripes-{os.getpid()}.tif")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dst = rasterio.open(
            self._tmp,
            "w",
            driver="GTiff",
            width=info.grid_width,
            height=info.grid_height,
            count=1,
            dtype="uint8",
            crs=info.crs_wkt,
            transform=info.grid_transform,
            nodata=255,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
        )

    def write(self, col: int, row: int, labels: np.ndarray) -> None:
        self._dst.write(labels[np.newaxis], window=Window(col, row, labels.shape[1], labels.shape[0]))

    def close(self) -> Path:
        self._dst.close()
        final_tmp = self.path.with_name(f".{self.path.name}.cog-{os.getpid()}")
        rasterio.shutil.copy(self._tmp, final_tmp, driver="COG", compress="deflate")
        os.replace(final_tmp, self.path)
        os.remove(self._tmp)
        return self.path

    def abort(self) -> None:
        self._dst.close()
        for p in (self._tmp,):
            if p.exists():
                p.unlink()


def resample_to_model_grid(
    image: np.ndarray,
    valid: np.ndarray,
    *,
    transform: Affine,
    crs: str | CRS,
    model_pixel_size_m: float,
) -> tuple[np.ndarray, np.ndarray, Affine]:
    """An in-memory scene (uint8 (3, H, W) and valid (H, W)) read on the model grid exactly as the
    pipeline reads a file: written to GDAL's memory file system, described by ``inspect_scene`` and
    read whole by ``SceneReader`` (bilinear). For training on rendered scenes.
    Returns (rgb (3, h, w) uint8, valid (h, w) bool, grid transform)."""
    from rasterio.io import MemoryFile

    bands, height, width = image.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": "uint8",
               "crs": crs, "transform": transform, "photometric": "RGB"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(image.astype(np.uint8, copy=False))
            dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
        info = inspect_scene(mem.name, model_pixel_size_m=model_pixel_size_m)
        with open_scene(info) as reader:
            rgb, ok = reader.read(0, 0, info.grid_width, info.grid_height)
    return rgb, ok, info.grid_transform


@contextmanager
def geotiff_writer(
    path: str | Path,
    *,
    width: int,
    height: int,
    count: int,
    dtype: str,
    transform: Affine,
    crs: str | CRS | None,
    compress: str | None = "deflate",
    block: int = 512,
) -> Iterator[Callable[[np.ndarray, int, int], None]]:
    """A tiled GeoTIFF written window by window (scenes larger than memory); yields
    ``write(array (bands, h, w), col, row)``. Renamed into place only when the block exits cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs,
                   transform=transform, tiled=True, blockxsize=block, blockysize=block, BIGTIFF="IF_SAFER")
    if compress:
        profile["compress"] = compress
    if count == 3 and dtype == "uint8":
        profile["photometric"] = "RGB"
    try:
        with rasterio.open(tmp, "w", **profile) as dst:

            def write(array: np.ndarray, col: int, row: int) -> None:
                dst.write(array, window=Window(col, row, array.shape[2], array.shape[1]))

            yield write
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
