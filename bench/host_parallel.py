"""How a worker's host work scales: vectorising tiles on threads of one process against processes.

``python -m bench.host_parallel [--workers N]`` prints one JSON line. It runs the shipped model once
on the tiles of a bench scene (CPU), then times ``service.tile_tasks.tile_vectors`` over those
tiles' outputs three ways: one thread; ``N`` threads of this process; ``N`` processes (default
``N``: the cores Dask sees). Nothing else runs, so the speedups are the host side's own ceiling.

Why it matters: a CUDA worker reads, calls the model and vectorises on the host, and the model's
share there is small. Vectorising a tile is many small numpy, scipy and shapely calls that hold
Python's GIL for most of their time, so threads of one process add little to it while processes
add a core each. ``service.cluster.local_layout`` lays out a GPU host's workers by this.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import dask.system
import numpy as np

from bench.monitor import emit, machine
from bench.scene import RENDERERS, ensure_scene
from service.tile_tasks import tile_vectors

_tiles: list[tuple] = []  # a process pool worker's copy of the tiles (see _load)
_px = 0.5


def model_outputs(scene: Path, count: int) -> tuple[list[tuple], float]:
    """The first ``count`` tiles of ``scene`` with valid pixels, as (probs, cores, valid, tile, rgb)
    from the shipped model on this CPU in the pipeline's model calls, and the grid's pixel size."""
    from kernels.tiling import plan_tiles
    from models.inference import infer
    from models.loading import autocast_bf16
    from models.spec import ModelSpec
    from service.model_plugin import get_model
    from service.pipeline import DetectOptions, batch_size, prepare_scene
    from service.rasters import shared_reader
    from service.tile_tasks import grid_pixel_size_m

    spec = ModelSpec()
    prepared = prepare_scene(scene, DetectOptions(device="cpu"), spec)
    info, meta = prepared.info, prepared.meta
    tiles = plan_tiles(info.grid_width, info.grid_height, meta.own_tile_px or meta.tile_px, meta.halo_px)[:count]
    module, meta, device = get_model(spec, "cpu")
    reader = shared_reader(info)
    reads = [reader.read(t.col, t.row, t.size, t.size) for t in tiles]
    step = batch_size(DetectOptions(device="cpu"), meta, "cpu")
    out = []
    for i in range(0, len(tiles), step):
        rgb = np.stack([r[0] for r in reads[i : i + step]])
        probs, cores = infer(module, meta, device, rgb, bf16=autocast_bf16(device, "auto"))
        out += [(probs[k], cores[k], reads[i + k][1], tiles[i + k], rgb[k]) for k in range(len(rgb))]
    return out, grid_pixel_size_m(info)


def _vectorise(index: int) -> tuple[int, int, float]:
    """Tile ``index`` vectorised: its objects, its lines and their summed area, to compare the ways."""
    probs, cores, valid, tile, rgb = _tiles[index]
    objects, lines = tile_vectors(probs, cores, valid, tile, rgb, pixel_size_m=_px)
    return len(objects), len(lines), round(sum(o.polygon.area for o in objects), 3)


def _load(path: str) -> None:
    global _tiles, _px
    with open(path, "rb") as f:
        _tiles, _px = pickle.load(f)


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(tiles: list[tuple], px: float, workers: int, reps: int) -> dict[str, Any]:
    """Median seconds per tile of vectorising ``tiles`` serially, on ``workers`` threads and on
    ``workers`` processes, the three taking turns pass by pass (so a load that comes and goes on a
    shared machine falls on each alike), and the speedups over serial. ``gil_share`` is the serial
    share Amdahl's law gives for the threads' speedup when the processes' speedup is taken as what
    the cores allow (so overheads both ways share are not put on the GIL), and ``threads_ceiling``
    the speedup that no number of threads would pass at that share."""
    global _tiles, _px
    _tiles, _px = tiles, px
    indices = list(range(len(tiles)))
    chunk = max(1, len(indices) // (4 * workers))
    with tempfile.NamedTemporaryFile(suffix=".pkl") as f:
        pickle.dump((tiles, px), f)
        f.flush()
        with ThreadPoolExecutor(workers) as threads, ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_load, initargs=(f.name,)) as processes:
            ways = {"serial": lambda: [_vectorise(i) for i in indices],
                    "threads": lambda: list(threads.map(_vectorise, indices)),
                    "processes": lambda: list(processes.map(_vectorise, indices, chunksize=chunk))}
            # Warm (imports, first calls, the pools' workers started), and each way's features.
            features = [run() for run in ways.values()]
            times: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(reps):
                for way, run in ways.items():
                    times[way].append(_timed(run))
    s = {way: statistics.median(t) for way, t in times.items()}
    threads_speedup, processes_speedup = s["serial"] / s["threads"], s["serial"] / s["processes"]
    gil = (min(1.0, max(0.0, (processes_speedup / threads_speedup - 1) / (processes_speedup - 1)))
           if processes_speedup > 1.05 else None)  # too few cores to tell otherwise
    return {**{f"{way}_ms_per_tile": round(1e3 * t / len(tiles), 3) for way, t in s.items()},
            "same_features": all(f == features[0] for f in features),
            "threads_speedup": round(threads_speedup, 3), "processes_speedup": round(processes_speedup, 3),
            "gil_share": round(gil, 3) if gil is not None else None,
            "threads_ceiling": round(1 / gil, 2) if gil and gil > 0 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.host_parallel", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=None, help="threads and processes (default: the cores Dask sees)")
    p.add_argument("--tiles", type=int, default=96, help="tiles vectorised per pass")
    p.add_argument("--reps", type=int, default=5, help="timed passes per way (the median is reported)")
    p.add_argument("--size", type=int, default=4096, help="side of the bench scene the tiles come from")
    p.add_argument("--renderer", choices=RENDERERS, default="synth", help="how the bench scene is drawn (bench.scene)")
    p.add_argument("--cache-dir", type=Path, default=Path("var/bench"))
    p.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    workers = args.workers or dask.system.CPU_COUNT
    scene, scene_info = ensure_scene(args.cache_dir, args.size, renderer=args.renderer)
    print(f"[host_parallel] model outputs for {args.tiles} tiles of {scene.name}", file=sys.stderr)
    tiles, px = model_outputs(scene, args.tiles)
    line = {"bench": "host-parallel", "machine": machine("cpu"), "scene": scene_info, "tiles": len(tiles),
            "workers": workers, "reps": args.reps, **measure(tiles, px, workers, args.reps)}
    emit(line, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
