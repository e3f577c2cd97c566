"""The work of one Dask task: read a batch of tiles, run the model, vectorise each tile.

The client imports this module too (to submit ``run_batch``); torch is only imported on workers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from shapely import GeometryType

from kernels.tiling import Tile, plan_tiles
from kernels.vectorise import PixelLine, PixelObject, vectorise_tile, winning_class
from models.allocator import release_freed_memory
from models.interface import ALL_CLASSES, OBJECT_CLASSES, SEMANTIC_CLASSES
from models.spec import CompileFor, ModelCalls, ModelSpec
from service.model_plugin import get_model
from service.pieces import Pieces
from service.rasters import SceneInfo, shared_reader

INVALID_LABEL = 255


@dataclass(frozen=True)
class TaskOptions:
    model: ModelSpec
    device: str
    classes: tuple[str, ...]
    want_labels: bool = False
    precision: str = "auto"
    tta: int = 1
    batch: int | None = None  # tiles per model call; None: a task's tiles in one call
    compiled: CompileFor | None = None  # run the model compiled for this batch and precision (models.compiled)


@dataclass
class TileResult:
    tile: Tile
    valid_px: int
    labels: np.ndarray | None = None  # core class labels (uint8, 255 = no data), when asked for


@dataclass
class BatchResult:
    tiles: list[TileResult] = field(default_factory=list)
    objects: Pieces = field(default_factory=lambda: Pieces.empty(GeometryType.POLYGON))  # of every tile
    lines: Pieces = field(default_factory=lambda: Pieces.empty(GeometryType.LINESTRING))
    read_s: float = 0.0
    model_s: float = 0.0
    vectorise_s: float = 0.0
    precision: str = ""  # what the worker ran the model in: "bf16" or "fp32" ("" if no tile needed it)


def grid_pixel_size_m(info: SceneInfo) -> float:
    """Ground size of one model-grid pixel (the mean of both axes)."""
    return float(np.mean([info.pixel_size_m[i] / info.grid_scale[i] for i in (0, 1)]))


def run_batch(info: SceneInfo, tiles: list[Tile], opts: TaskOptions) -> BatchResult:
    """Read ``tiles``, run the model on those with valid pixels in calls of up to ``opts.batch``, and
    vectorise each tile as its call's output comes."""
    # Imported here: the client pickles this function by reference and must not load torch for it.
    from models.inference import infer
    from models.loading import autocast_bf16

    module, meta, device = get_model(opts.model, opts.device, opts.compiled)
    result = BatchResult()
    t0 = time.perf_counter()
    reader = shared_reader(info)
    reads = [reader.read(t.col, t.row, t.size, t.size) for t in tiles]
    t1 = time.perf_counter()
    core_valid = [int(valid[t.core_slices()].sum()) for t, (_, valid) in zip(tiles, reads, strict=True)]
    active = [i for i, n in enumerate(core_valid) if n > 0]  # tiles wholly in no-data skip the model
    px = grid_pixel_size_m(info)
    width_trim_m = float(meta.extra.get("railcar_width_trim_m", 0.0))
    objects: list[PixelObject] = []
    lines: list[PixelLine] = []
    done: dict[int, TileResult] = {}
    bf16 = autocast_bf16(device, opts.precision)
    for chunk in model_calls(active, opts.batch):
        t_model = time.perf_counter()
        probs, cores = infer(module, meta, device, np.stack([reads[i][0] for i in chunk]), bf16=bf16,
                             views=opts.tta)
        t_vector = time.perf_counter()
        for k, i in enumerate(chunk):
            valid = reads[i][1]
            tile_objects, tile_lines = tile_vectors(probs[k], cores[k], valid, tiles[i], reads[i][0],
                                                    classes=opts.classes, pixel_size_m=px,
                                                    railcar_width_trim_m=width_trim_m)
            objects += tile_objects
            lines += tile_lines
            labels = (_labels(np.where(valid, winning_class(probs[k]), INVALID_LABEL), tiles[i])
                      if opts.want_labels else None)
            done[i] = TileResult(tiles[i], core_valid[i], labels)
        del probs, cores  # not held while the next call makes its own
        result.model_s += t_vector - t_model
        result.vectorise_s += time.perf_counter() - t_vector
    if active:
        result.precision = "bf16" if bf16 else "fp32"
    t_pieces = time.perf_counter()
    for i, tile in enumerate(tiles):
        result.tiles.append(done.get(i) or TileResult(tile, 0, _labels(None, tile) if opts.want_labels else None))
    result.objects, result.lines = Pieces.from_objects(objects), Pieces.from_lines(lines)
    result.read_s = t1 - t0
    result.vectorise_s += time.perf_counter() - t_pieces
    _trim_now_and_then(len(tiles))
    return result


def warm_up(spec: ModelSpec, device: str, compiled: CompileFor | None = None, calls: ModelCalls | None = None) -> None:
    """A task's whole path run once on made-up tiles, so a worker's first real task does not pay
    for it: importing what vectorising needs (scikit-image, shapely, GDAL's polygoniser: 0.4 s on
    this project's 2-core CPU), the model's first call and the first tile's vectorising (0.15 s
    more). The model call is one of ``calls`` (a ``compiled`` model's own, which compiles it) where
    given: a call of a new shape sets up oneDNN's kernels or runs cuDNN's algorithm search for it
    and maps its feature maps' memory (on this project's CPU a worker's first call of 8 tiles took
    0.4-0.6 s, the next ones 0.1 s), else one of one tile. The model plugin calls this when a worker starts."""
    from models.inference import infer
    from models.loading import autocast_bf16

    module, meta, device_ = get_model(spec, device, compiled)
    shape = compiled or calls
    side = shape.window_px - 2 * meta.halo_px if shape else meta.tile_px
    tile = plan_tiles(side, side, side, meta.halo_px)[0]
    batch = shape.batch if shape else 1
    rgb = np.random.default_rng(0).integers(0, 256, (batch, 3, tile.size, tile.size), dtype=np.uint8)
    precision = shape.precision if shape else "auto"
    probs, cores = infer(module, meta, device_, rgb, bf16=autocast_bf16(device_, precision))
    tile_vectors(probs[0], cores[0], np.ones((tile.size, tile.size), dtype=bool), tile, rgb[0],
                 pixel_size_m=meta.pixel_size_m)


def tile_vectors(probs: np.ndarray, cores: np.ndarray, valid: np.ndarray, tile: Tile, rgb: np.ndarray, *,
                 pixel_size_m: float, classes: tuple[str, ...] = ALL_CLASSES,
                 railcar_width_trim_m: float = 0.0) -> tuple[list[PixelObject], list[PixelLine]]:
    """One tile's objects and track lines from its model output (``vectorise_tile`` with the
    model interface's classes), as a worker makes them."""
    return vectorise_tile(probs, cores, valid, tile, classes=classes, semantic_classes=SEMANTIC_CLASSES,
                          object_classes=OBJECT_CLASSES, pixel_size_m=pixel_size_m,
                          railcar_width_trim_m=railcar_width_trim_m, rgb=rgb)


def model_calls(items: list[int], batch: int | None) -> list[list[int]]:
    """``items`` cut into as few model calls as ``batch`` allows (one for None), of about equal size:
    9 tiles at 6 a call are calls of 5 and 4, not 6 and 3."""
    if not items:
        return []
    calls = -(-len(items) // batch) if batch else 1
    step = -(-len(items) // calls)
    return [items[i : i + step] for i in range(0, len(items), step)]


# Tiles a worker runs between malloc trims (see models.allocator.release_freed_memory): 50 model
# calls of 8, counted in tiles so that a task's size does not change how often.
TRIM_EVERY_TILES = 400
_untrimmed_tiles = 0
_trim_lock = threading.Lock()


def _trim_now_and_then(tiles: int) -> None:
    global _untrimmed_tiles
    with _trim_lock:
        _untrimmed_tiles += tiles
        due = _untrimmed_tiles >= TRIM_EVERY_TILES
        if due:
            _untrimmed_tiles = 0
    if due:
        release_freed_memory()


def _labels(full: np.ndarray | None, tile: Tile) -> np.ndarray:
    if full is None:
        return np.full((tile.core_height, tile.core_width), INVALID_LABEL, dtype=np.uint8)
    return full[tile.core_slices()].astype(np.uint8)
