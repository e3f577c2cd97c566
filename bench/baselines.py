"""What railsight is measured against, run in the benchmark process on the same file and model.

- ``model_only``: the model on tensors already on the device, the pipeline's read window and batch;
  the ceiling the model sets.
- ``read_ceiling``: parallel windowed decoding of the file with a thread pool, nothing else; the
  ceiling reading sets.
- ``naive``: what a user writes first: a rasterio window loop, batch 1, fp32, no overlap, the class
  argmax stitched into a whole-scene mask, then ``rasterio.features.shapes`` on that mask.
- ``torchgeo``: a ``RasterDataset`` + ``GridGeoSampler`` + ``DataLoader`` with the same model, the
  predictions stitched into a whole-scene mask, then ``shapes``.

The baselines open the file with rasterio themselves (they stand for user code, not the product)
and write a GeoJSON of class polygons in the scene CRS, so they too go file in, GeoJSON out.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernels.normalise import model_input
from models.inference import input_dtype
from models.interface import SEMANTIC_CLASSES, ModelMeta, split_output
from models.loading import autocast_bf16, load_model, resolve_device
from models.spec import CompileFor, ModelSpec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(
    spec: ModelSpec, device: str, *, window: int, batch: int, tiles: int, budget_s: float, precision: str = "auto",
    compiled: CompileFor | None = None,
) -> dict[str, Any]:
    """Seconds per tile for the pipeline's model step (normalise, model, split_output, as
    ``models.inference.infer`` does them) on uint8 batches already on the device. Times whole
    batches until every tile of the scene is covered or ``budget_s`` is spent (at least one batch
    after a warm-up)."""
    from service.model_plugin import get_model

    module, meta, dev = get_model(spec, device, compiled)  # the very module setup the workers use
    bf16 = autocast_bf16(dev, precision)  # what the pipeline's workers run with the same setting
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, window, window), dtype=torch.uint8, generator=gen).to(dev)

    def step() -> None:
        with torch.inference_mode():
            y = model_input(x, meta.mean, meta.std, input_dtype(dev, bf16))
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                split_output(module(y))

    for _ in range(3 if dev.type == "cuda" else 1):
        step()
    _sync(dev)
    done = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while True:
        step()
        done += batch
        if dev.type == "cuda":
            _sync(dev)
        if done >= tiles or time.perf_counter() - started >= budget_s:
            break
    _sync(dev)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"s_per_tile": elapsed / done, "cpu_s_per_tile": cpu / done, "tiles_timed": done, "window_px": window,
            "batch": batch, "precision": "bf16" if bf16 else "fp32",
            "torch_threads": torch.get_num_threads(),
            "gpu_peak_bytes": int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else 0}


def read_ceiling(path: Path, *, tile: int, threads: int) -> dict[str, Any]:
    """Decode every pixel of the file once, in ``tile`` windows, on ``threads`` threads (one dataset
    handle per thread), and nothing else."""
    import rasterio
    from rasterio.windows import Window

    local = threading.local()
    handles = []
    with rasterio.open(path) as src:
        width, height = src.width, src.height
    windows = [Window(c, r, min(tile, width - c), min(tile, height - r))
               for r in range(0, height, tile) for c in range(0, width, tile)]

    def read(w: Window) -> int:
        src = getattr(local, "src", None)
        if src is None:
            src = local.src = rasterio.open(path)
            handles.append(src)
        return int(src.read((1, 2, 3), window=w).shape[-1])

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(read, windows):
                pass
        elapsed = time.perf_counter() - started
    finally:
        for src in handles:
            src.close()
    return {"s": elapsed, "mpx_s": width * height / elapsed / 1e6, "threads": threads, "window_px": tile}


def _prepare(batch: torch.Tensor, meta: ModelMeta) -> torch.Tensor:
    mean = torch.tensor(meta.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(meta.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def _write_shapes(mask: np.ndarray, transform, crs, out: Path) -> int:
    """Polygons of every non-background class region of the whole-scene mask, as GeoJSON."""
    from rasterio.features import shapes

    features = [
        {"type": "Feature", "geometry": geom, "properties": {"class": SEMANTIC_CLASSES[int(value)]}}
        for geom, value in shapes(mask, mask=mask > 0, connectivity=8, transform=transform)
    ]
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"type": "FeatureCollection", "crs_wkt": str(crs), "features": features}, fh)
    return len(features)


def naive(path: Path, spec: ModelSpec, device: str, *, tile: int, out: Path) -> dict[str, Any]:
    """A rasterio window loop, batch 1, fp32, no overlap; whole-scene mask; ``shapes``."""
    import rasterio
    from rasterio.windows import Window

    started = time.perf_counter()
    dev = resolve_device(device)
    module, meta = load_model(spec, dev)
    first = None
    read_s = model_s = 0.0
    with rasterio.open(path) as src:
        mask = np.zeros((src.height, src.width), dtype=np.uint8)
        for row in range(0, src.height, tile):
            for col in range(0, src.width, tile):
                w, h = min(tile, src.width - col), min(tile, src.height - row)
                t0 = time.perf_counter()
                data = src.read((1, 2, 3), window=Window(col, row, w, h))
                # the model wants sides that are multiples of 32: pad edge windows with zeros
                padded = np.zeros((3, _up32(h), _up32(w)), dtype=np.uint8)
                padded[:, :h, :w] = data
                t1 = time.perf_counter()
                with torch.no_grad():
                    logits = module(_prepare(torch.from_numpy(padded)[None].to(dev), meta))
                    classes = logits[0, : len(SEMANTIC_CLASSES)].argmax(0).to(torch.uint8).cpu().numpy()
                mask[row : row + h, col : col + w] = classes[:h, :w]
                t2 = time.perf_counter()
                read_s += t1 - t0
                model_s += t2 - t1
                if first is None:
                    first = t2 - started
        t3 = time.perf_counter()
        n = _write_shapes(mask, src.transform, src.crs, out)
        vector_s = time.perf_counter() - t3
        px = src.width * src.height
    elapsed = time.perf_counter() - started
    return {"s": elapsed, "mpx_s": px / elapsed / 1e6, "first_result_s": first, "read_s": read_s,
            "model_s": model_s, "shapes_s": vector_s, "features": n, "batch": 1, "dtype": "float32",
            "window_px": tile}


def _up32(n: int) -> int:
    return int(math.ceil(n / 32) * 32)


def torchgeo_available() -> str | None:
    """None when torchgeo imports, else why not."""
    try:
        import torchgeo  # noqa: F401
        from torchgeo.datasets import RasterDataset  # noqa: F401
        from torchgeo.samplers import GridGeoSampler  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"torchgeo is not installed ({type(exc).__name__}: {exc}); pip install -e '.[bench]'"
    return None


def torchgeo_style(
    path: Path, spec: ModelSpec, device: str, *, tile: int, batch: int, workers: int, out: Path
) -> dict[str, Any]:
    """``GridGeoSampler`` (tile-sized chips, no overlap) over a ``RasterDataset`` of the file, a
    ``DataLoader`` with ``stack_samples``, the same model in fp32, predictions stitched into a
    whole-scene mask by each chip's bounds, then ``shapes``."""
    import rasterio
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    started = time.perf_counter()
    dev = resolve_device(device)
    module, meta = load_model(spec, dev)
    with rasterio.open(path) as src:
        transform, crs, width, height = src.transform, src.crs, src.width, src.height

    class Scene(RasterDataset):
        filename_glob = Path(path).name
        is_image = True

    dataset = Scene(paths=str(path))
    sampler = GridGeoSampler(dataset, size=tile, stride=tile)
    loader = DataLoader(dataset, sampler=sampler, batch_size=batch, num_workers=workers,
                        collate_fn=stack_samples)
    mask = np.zeros((height, width), dtype=np.uint8)
    inverse = ~transform
    first = None
    chips = 0
    model_s = 0.0
    for sample in loader:
        t0 = time.perf_counter()
        images = sample["image"][:, :3].to(dev)  # float32, 0..255
        with torch.no_grad():
            logits = module(_prepare(images, meta))
            classes = logits[:, : len(SEMANTIC_CLASSES)].argmax(1).to(torch.uint8).cpu().numpy()
        model_s += time.perf_counter() - t0
        for k, bounds in enumerate(sample["bounds"]):
            xs, ys = bounds[0], bounds[1]
            col, row = (round(v) for v in inverse * (xs.start, ys.stop))  # chip's top-left pixel
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + tile, height), min(col + tile, width)
            if r1 > r0 and c1 > c0:
                mask[r0:r1, c0:c1] = classes[k, r0 - row : r1 - row, c0 - col : c1 - col]
            chips += 1
        if first is None:
            first = time.perf_counter() - started
    t3 = time.perf_counter()
    n = _write_shapes(mask, transform, crs, out)
    vector_s = time.perf_counter() - t3
    elapsed = time.perf_counter() - started
    return {"s": elapsed, "mpx_s": width * height / elapsed / 1e6, "first_result_s": first, "model_s": model_s,
            "shapes_s": vector_s, "features": n, "chips": chips, "batch": batch, "loader_workers": workers,
            "dtype": "float32", "window_px": tile}


def default_loader_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1) // 2))
