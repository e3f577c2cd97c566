"""One scene, end to end: check it, plan tiles, run batches on Dask, merge, return GeoJSON.

The same function runs behind `railsight detect`, `railsight batch` and the job service.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from distributed import Client
from shapely import GeometryType
from shapely.geometry import box

from kernels.row_threads import threads_for_merge
from kernels.tiling import SIZE_MULTIPLE, Tile, batches, plan_tiles, squares
from models.allocator import release_freed_memory
from models.cpu_bf16 import cpu_has_fast_bf16
from models.interface import ALL_CLASSES, TTA_VIEWS, ModelMeta
from models.spec import PRECISIONS, SHIPPED_WEIGHTS, CompileFor, ModelCalls, ModelSpec, read_meta
from service.errors import BadOption, Cancelled
from service.feature_table import FeatureTable
from service.geojson import GeometryMapper, feature_collection
from service.model_plugin import register_model, workers_device_kind
from service.pieces import Pieces
from service.rasters import MAX_PIXEL_SIZE_M, ClassRasterWriter, SceneInfo, crs_name, inspect_scene
from service.scene_features import TrackLines, object_features, track_features
from service.settings import PipelineSettings
from service.tile_tasks import BatchResult, TaskOptions, grid_pixel_size_m, run_batch
from service.view_geometry import View, lean_in_grid, requested_view

# Pixels per model call by device: CPU throughput peaks near 0.8 Mpx a call (2-core AMD EPYC, bf16,
# 10,000 px bench scene: 320 px windows 3.6 / 4.0 / 4.4 / 3.6 Mpx/s at 2 / 4 / 8 / 16 a call; 576 px
# windows the same at 2 and 4). A CPU running fp32 holds feature maps twice bf16's size, so it takes
# 0.6 Mpx (2-core Intel Xeon, 20,000 px bench scene, fp32: peak RSS 3.10 GB at 8 windows of 320 px a
# call, over the 3 GB budget, against 2.80 GB at 6; 3.77 against 3.70 Mpx/s). CUDA: 32 windows of
# 576 px, not measured here (no GPU was lent).
BATCH_PIXELS = {"cuda": 32 * 576 * 576, "cpu": 8 * 320 * 320, "cpu-fp32": 6 * 320 * 320}
Progress = Callable[[int, int], None]
# A Dask task's tiles are a square of the scene, not a row: the read windows of a square share the
# file's blocks, which the task's reader decodes once. On a CPU two model calls a task (a 4 x 4
# square of 256 px tiles at 8 a call): on the 10,000 px bench scene (2-core Intel Xeon, bf16,
# alternating runs) 16.2 / 16.2 s against 17.0 / 16.7 s for rows of one call's 8 tiles, reading
# 1.97 against 2.25 s; 8 x 8 squares read in 1.4 s but gained only 1.5 % more. On CUDA one call a
# task (10 x 10 tiles of 256 px), not measured: a call there is a hundred tiles, and fewer, larger
# tasks would leave its 16 threads waiting on the last ones.
CALLS_PER_TASK = {"cpu": 2, "cuda": 1}


@dataclass(frozen=True)
class DetectOptions:
    tile: int | None = None  # the square one Dask task covers (see task_tiles); None: by CALLS_PER_TASK
    model_tile: int | None = None  # None: the weights' own (see model_tile)
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on CUDA and on CPUs with native bf16 (AMX), else fp32
    min_confidence: float = 0.0
    classes: tuple[str, ...] = ALL_CLASSES
    bands: tuple[int, ...] | None = None
    allow_pixel_coords: bool = False
    pixel_size_m: float | None = None  # ground size of a pixel of a scene with no georeferencing (implies the above)
    max_pixels: int | None = None
    class_raster: str | None = None  # path of a class COG to stream, if wanted
    tta: int = 1  # model views averaged per tile (models.interface.TTA_VIEWS)
    own_floors: bool = True  # False: the weights' own confidence floors are not applied (`railsight floors`)
    compile: bool = False  # run the model under torch.compile (models.compiled): workers compile it first
    merge_threads: int | None = None  # threads of this process that merge the tiles' pieces; None: every core
    off_nadir_deg: float | None = None  # the view the scene was taken from, both or neither (service.view_geometry)
    satellite_azimuth_deg: float | None = None
    view_metadata: bool = True  # False: the view the scene's metadata records is not used

    @property
    def view(self) -> View | None:
        return requested_view(self.off_nadir_deg, self.satellite_azimuth_deg)

    def check(self) -> None:
        for name, size in (("tile", self.tile), ("model tile", self.model_tile)):
            if size is not None and (size % SIZE_MULTIPLE or size < 64):
                raise BadOption(f"{name} size must be a multiple of {SIZE_MULTIPLE} and at least 64, got {size}")
        unknown = [c for c in self.classes if c not in ALL_CLASSES]
        if unknown or not self.classes:
            raise BadOption(f"unknown class {unknown[0] if unknown else '(none)'}: use {', '.join(ALL_CLASSES)}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise BadOption(f"minimum confidence must be between 0 and 1, got {self.min_confidence}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BadOption(f"unknown device {self.device!r}: use auto, cpu or cuda")
        if self.precision not in PRECISIONS:
            raise BadOption(f"unknown precision {self.precision!r}: use {', '.join(PRECISIONS)}")
        if self.pixel_size_m is not None and not 0.0 < self.pixel_size_m <= MAX_PIXEL_SIZE_M:
            raise BadOption(f"pixel size must be over 0 and at most {MAX_PIXEL_SIZE_M:g} m, got {self.pixel_size_m:g}")
        if self.tta not in TTA_VIEWS:
            raise BadOption(f"test-time augmentation takes {', '.join(map(str, TTA_VIEWS))} views, got {self.tta}")
        requested_view(self.off_nadir_deg, self.satellite_azimuth_deg)  # half a view, or an angle out of range, raises


def default_batch(device: str, window_px: int, precision: str = "auto") -> int:
    """Tiles per model call on ``device`` ("cpu" or "cuda") for read windows of ``window_px``; fewer
    on a CPU running fp32 (``precision``, or ``auto`` where the CPU has no native bf16: this host's
    CPU is taken for the workers')."""
    fp32 = precision == "fp32" or (precision == "auto" and not cpu_has_fast_bf16())
    return max(1, round(BATCH_PIXELS["cpu-fp32" if device == "cpu" and fp32 else device] / window_px**2))


def model_tile(options: DetectOptions, meta: ModelMeta) -> int:
    """The tile core the model runs at: ``options.model_tile`` when a caller asks for one, else the
    weights' own, so that ``options.tile`` (how the scene is split into Dask tasks) never changes a
    feature; weights that name none run at ``options.tile`` (else ``DEFAULT_TILE_PX``)."""
    return options.model_tile or meta.own_tile_px or options.tile or meta.tile_px


def read_window(options: DetectOptions, meta: ModelMeta) -> int:
    """Side of the window the model sees for each tile: its core and a halo on every side."""
    return model_tile(options, meta) + 2 * meta.halo_px


def batch_size(options: DetectOptions, meta: ModelMeta, device: str) -> int:
    """Tiles per model call on ``device``: the caller's, else ``default_batch`` for the read window."""
    return options.batch_size or default_batch(device, read_window(options, meta), options.precision)


def call_shape(options: DetectOptions, meta: ModelMeta, batch: int) -> ModelCalls:
    """The shape of the scene's model calls, ``batch`` tiles of one read window each at the options'
    precision: what the workers warm up for before its first task."""
    return ModelCalls(batch, read_window(options, meta), options.precision)


def compile_for(options: DetectOptions, meta: ModelMeta, batch: int) -> CompileFor | None:
    """What the workers compile the model for when ``options.compile`` asks (None otherwise): the
    scene's model calls (``call_shape``)."""
    if not options.compile:
        return None
    calls = call_shape(options, meta, batch)
    return CompileFor(calls.batch, calls.window_px, calls.precision)


def task_side(options: DetectOptions, tile: int, batch: int, device: str) -> int:
    """The side, in model pixels, of the square of the scene one Dask task covers: ``options.tile``, by
    default the largest square of model tiles of side ``tile`` that ``CALLS_PER_TASK`` model calls of
    ``batch`` tiles on ``device`` hold."""
    return options.tile or tile * math.isqrt(CALLS_PER_TASK[device] * batch)


def task_tiles(tiles: list[Tile], options: DetectOptions, tile: int, batch: int, device: str) -> list[list[Tile]]:
    """The model tiles of each Dask task: those of one square of ``task_side``, or runs of one model
    call's worth where that square is no larger than one model tile."""
    side = task_side(options, tile, batch, device)
    return squares(tiles, side) if side > tile else batches(tiles, batch)


def options_from_settings(settings: PipelineSettings, **overrides: Any) -> DetectOptions:
    base: dict[str, Any] = {
        "tile": settings.tile,
        "model_tile": settings.model_tile,
        "batch_size": settings.batch_size,
        "device": settings.device,
        "precision": settings.precision,
        "min_confidence": settings.min_confidence,
        "max_pixels": settings.max_scene_pixels,
        "tta": settings.tta,
        "compile": settings.compile,
        "merge_threads": settings.merge_threads,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    return DetectOptions(**base)


def model_spec_from_settings(settings: PipelineSettings) -> ModelSpec:
    return ModelSpec(weights=str(settings.weights) if settings.weights else None, factory=settings.model_factory)


@lru_cache(maxsize=8)
def model_meta(spec: ModelSpec) -> ModelMeta:
    """The model's metadata on the client side (pixel size, halo, name), without torch for a
    weights file (a factory, used by tests, has to build its model to say)."""
    if spec.factory:
        from models.loading import load_model

        return load_model(spec, "cpu")[1]
    return read_meta(spec.weights or SHIPPED_WEIGHTS)


@dataclass(frozen=True)
class PreparedScene:
    """A scene checked and described, with the model metadata it will be run with."""

    info: SceneInfo
    meta: ModelMeta


def prepare_scene(scene: str | Path, options: DetectOptions, model: ModelSpec) -> PreparedScene:
    """Every check that needs no cluster: options, weights, and the scene itself. Callers run this
    first so a bad input fails in a second, before any worker starts."""
    options.check()
    meta = model_meta(model)
    info = inspect_scene(
        scene,
        model_pixel_size_m=meta.pixel_size_m,
        bands=options.bands,
        allow_pixel_coords=options.allow_pixel_coords,
        pixel_size_m=options.pixel_size_m,
        max_pixels=options.max_pixels,
        colour_balance=meta.colour_balance,
        min_spread=meta.min_spread,
    )
    # The check read decodes a few dozen of the file's blocks. GDAL frees them when the scene closes,
    # but they stay in this process's heap, about 75 MB held under the whole run; handed back, the
    # client's share of a 20,000 px run's peak falls by that much (bench/, peak_rss_ratio_20k_10k).
    release_freed_memory()
    return PreparedScene(info, meta)


def ready_workers(client: Client, options: DetectOptions, model: ModelSpec,
                  meta: ModelMeta) -> tuple[str, int, CompileFor | None]:
    """Load ``model`` on every worker and warm it up at the model calls a scene run with ``options``
    makes (compiled first where the options ask); returns once every worker is warm, with the
    workers' device kind, the tiles per call and what the model is compiled for. ``detect_scene``
    calls it for each scene; a long-running service calls it at start, so its first job finds the
    workers warm (registering again is then cheap)."""
    kind = workers_device_kind(client, options.device)
    batch = batch_size(options, meta, kind)
    compiled = compile_for(options, meta, batch)
    register_model(client, model, options.device, compiled=compiled, calls=call_shape(options, meta, batch))
    return kind, batch, compiled


def detect_scene(
    scene: str | Path | PreparedScene,
    options: DetectOptions,
    model: ModelSpec,
    client: Client,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on one scene; returns the GeoJSON FeatureCollection (with ``summary``).
    Raises a RailsightError for a scene or option a user got wrong, Cancelled when ``cancel`` is set."""
    started = time.perf_counter()
    prepared = scene if isinstance(scene, PreparedScene) else prepare_scene(scene, options, model)
    info, meta = prepared.info, prepared.meta
    inspected = time.perf_counter()
    tile = model_tile(options, meta)
    tiles = plan_tiles(info.grid_width, info.grid_height, tile, meta.halo_px)
    kind, batch, compiled = ready_workers(client, options, model, meta)
    groups = task_tiles(tiles, options, tile, batch, kind)
    task = TaskOptions(model, options.device, tuple(options.classes), want_labels=bool(options.class_raster),
                       precision=options.precision, tta=options.tta, batch=batch, compiled=compiled)
    writer = ClassRasterWriter(options.class_raster, info) if options.class_raster else None
    merged = _Accumulator()
    if progress:
        progress(0, len(tiles))
    try:
        for result in _run_batches(client, info, groups, task, cancel, in_flight=_in_flight(client)):
            merged.add(result)
            if writer:
                for tr in result.tiles:
                    if tr.labels is not None:  # always set when a class raster is asked for
                        writer.write(tr.tile.core_col, tr.tile.core_row, tr.labels)
            if progress:
                progress(merged.tiles_done, len(tiles))
        if writer:
            writer.close()
            writer = None
    except BaseException:
        if writer:
            writer.abort()
        raise
    # The workers' kept heap (freed feature maps, see models.allocator) goes back to the system before
    # this process merges the scene's pieces, rather than sitting idle under the merge and after it.
    client.run(release_freed_memory)
    return _assemble(info, meta, options, merged, tiles_total=len(tiles), device=kind,
                     task_tile=task_side(options, tile, batch, kind), started=started, inspected=inspected)


def _in_flight(client: Client) -> int:
    """Batches submitted ahead: enough to keep every Dask thread busy with one queued behind it,
    few enough that the client and scheduler hold a bounded amount whatever the scene size."""
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info(n_workers=-1).get("workers", {}).values())
    return max(2, 2 * threads)


def _run_batches(client: Client, info: SceneInfo, groups, task: TaskOptions, cancel: threading.Event | None,
                 *, in_flight: int) -> Iterator[BatchResult]:
    """Results of every batch, in the order they finish, with at most ``in_flight`` submitted and
    not yet collected. Finished futures arrive through done-callbacks on a queue, which lets the
    loop look at ``cancel`` every half second without creating waiter tasks per pending future."""
    done: queue.Queue = queue.Queue()
    pending: set = set()
    upcoming = iter(groups)

    def submit_more() -> None:
        while len(pending) < in_flight:
            group = next(upcoming, None)
            if group is None:
                return
            fut = client.submit(run_batch, info, group, task, pure=False)
            pending.add(fut)
            fut.add_done_callback(done.put)

    try:
        submit_more()
        while pending:
            if cancel is not None and cancel.is_set():
                raise Cancelled("job was cancelled")
            try:
                fut = done.get(timeout=0.5)
            except queue.Empty:
                continue
            pending.discard(fut)
            result = fut.result()  # re-raises a task's error (a SceneError for a truncated file...)
            fut.release()
            submit_more()
            yield result
    finally:
        if pending:
            client.cancel(list(pending))


class _Accumulator:
    """Small per-tile results gathered on the client as batches finish."""

    def __init__(self) -> None:
        self.objects: list[Pieces] = []
        self.lines: list[Pieces] = []
        self.valid_px = 0
        self.tiles_done = 0
        self.read_s = self.model_s = self.vectorise_s = 0.0
        self.precisions: set[str] = set()

    def add(self, result: BatchResult) -> None:
        self.objects.append(result.objects)
        self.lines.append(result.lines)
        for tr in result.tiles:
            self.valid_px += tr.valid_px
            self.tiles_done += 1
        self.read_s += result.read_s
        self.model_s += result.model_s
        self.vectorise_s += result.vectorise_s
        if result.precision:
            self.precisions.add(result.precision)

    def take_objects(self) -> Pieces:
        objects, self.objects = self.objects, []
        return Pieces.concat(objects, GeometryType.POLYGON)

    def take_lines(self) -> Pieces:
        lines, self.lines = self.lines, []
        return Pieces.concat(lines, GeometryType.LINESTRING)


def _assemble(
    info: SceneInfo, meta: ModelMeta, options: DetectOptions, acc: _Accumulator, *, tiles_total: int,
    device: str, task_tile: int, started: float, inspected: float,
) -> dict[str, Any]:
    merge_start = time.perf_counter()
    mapper = GeometryMapper(info.grid_transform, info.crs_wkt)
    px = grid_pixel_size_m(info)
    counts = dict.fromkeys(options.classes, 0)
    floors = confidence_floors(meta, options.min_confidence, options.tta, options.own_floors)
    view = options.view or (info.view if options.view_metadata else None)
    lean = lean_in_grid(view, info.grid_ground_steps()) if view else None
    # Each list of pieces is handed over and let go of as soon as it is used: a large scene's pieces
    # are most of what the client holds. Tracks first: the join's arrays then find the room the objects'
    # geometries take later (the other way round, the client's peak at 20,000 px was 30 MB higher).
    tracks, track_lines = FeatureTable.empty(), TrackLines.empty()
    with threads_for_merge(options.merge_threads):
        if "track" in options.classes:
            tracks, track_lines = track_features(acc.take_lines(), floors["track"], mapper, px, counts)
        objects = object_features(acc.take_objects(), floors, mapper, px, counts,
                                  box(0, 0, info.grid_width, info.grid_height), track_lines, lean)
    features = FeatureTable.concat([objects, tracks])
    finished = time.perf_counter()
    summary = {
        "counts": counts,
        "crs": crs_name(info.crs_wkt) if info.crs_wkt else None,
        "georeferencing": info.georeferencing,
        "view": view.summary() if view else None,
        "pixel_size_m": [round(v, 4) for v in info.pixel_size_m],
        "model_pixel_size_m": meta.pixel_size_m,
        "resampled": info.resampled,
        "valid_fraction": round(acc.valid_px / float(info.grid_width * info.grid_height), 6),
        "model": {"name": meta.name, "version": meta.version},
        "scene": {"name": Path(info.path).name, "width": info.width, "height": info.height,
                  "bands": list(info.rgb_bands), "bands_from": info.bands_from, "band_count": info.band_count,
                  "dtype": info.dtype},
        "colour_gains": [round(g, 4) for g in info.gains] if info.gains else None,
        "contrast_scale": round(info.contrast[0], 4) if info.contrast else None,
        "tiles": tiles_total,
        "tile_size": model_tile(options, meta),
        "task_tile": task_tile,
        "halo": meta.halo_px,
        "device": device,
        "precision": "+".join(sorted(acc.precisions)) or None,
        "tta_views": options.tta,
        "compiled": options.compile,
        "confidence_floors": {c: floors[c] for c in options.classes},
        "timings": {
            "inspect_s": round(inspected - started, 3),
            "read_s": round(acc.read_s, 3),
            "model_s": round(acc.model_s, 3),
            "vectorise_s": round(acc.vectorise_s, 3),
            "merge_s": round(finished - merge_start, 3),
            "total_s": round(finished - started, 3),
        },
    }
    if info.crs_wkt is None:
        summary["coordinates"] = "scene pixels (no georeferencing; --allow-pixel-coords)"
    return feature_collection(features, summary)


def confidence_floors(meta: ModelMeta, min_confidence: float, views: int = 1, own: bool = True) -> dict[str, float]:
    """The lowest confidence kept, per class: the user's ``min_confidence``, or the model's own floor
    for that class where it is higher. A floor belongs to one set of weights run one way (chosen on
    validation scenes), so it travels in their metadata (``ModelMeta.own_floors``)."""
    floors = meta.own_floors(views) if own else {}
    return {c: max(min_confidence, floors.get(c, 0.0)) for c in ALL_CLASSES}
