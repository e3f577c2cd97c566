"""The benchmark scene: a large GeoTIFF that looks like a real one, written window by window.

A scene of ``size x size`` px is a mosaic of ``chunk x chunk`` rail-yard renders from the synthetic
engine (``models.synth.render_scene``, 0.5 m, no no-data). Rendering a 2048 px yard takes seconds,
so only ``pool`` distinct yards are rendered and the mosaic reuses them turned and flipped
(eight variants each): a 20,000 px scene needs 100 chunks but renders 8. The file is a tiled,
deflate-compressed GeoTIFF (UTM 52N), as the pipeline meets in practice, written through
``service.rasters.geotiff_writer`` so the scene is never whole in memory.

Scenes are cached under ``cache_dir`` keyed by size, seed, chunk, pool, renderer and the renderer's
source (``renderer_key``), so re-runs do not re-render and a changed engine does. ``render`` runs in
a child process (``python -m bench.scene``): the renderer's peak memory then never counts against
the process that measures peak RSS.

``renderer="simple"`` paints a cheap stand-in (ballast bands, rails, rows of railcars, tarps) with
numpy only, for smoke tests where rendering time matters more than realism.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from affine import Affine

PIXEL_SIZE_M = 0.5
CRS = "EPSG:32652"  # UTM 52N
ORIGIN = (640000.0, 4698000.0)
RENDERERS = ("synth", "simple")
_ROOT = Path(__file__).resolve().parent.parent


def renderer_key(renderer: str) -> str:
    """Eight hex digits of a hash over the source that draws ``renderer``'s yards (the data engine's
    modules, or this file for the stand-in), so a scene cached before the engine changed is not
    measured as if it were today's. Read from the files, not imported: importing the engine would add
    about 70 MB to the process whose peak memory the benchmark reports."""
    files = sorted((_ROOT / "models" / "synth").glob("*.py")) if renderer == "synth" else [Path(__file__)]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:8]


def scene_path(cache_dir: Path, size: int, seed: int, chunk: int, pool: int, renderer: str) -> Path:
    key = renderer_key(renderer)
    return Path(cache_dir) / f"scene-{size}px-seed{seed}-chunk{chunk}-pool{pool}-{renderer}-{key}.tif"


def ensure_scene(
    cache_dir: Path, size: int, *, seed: int = 0, chunk: int = 2048, pool: int = 8, renderer: str = "synth"
) -> tuple[Path, dict]:
    """The cached scene file for these arguments, rendered (in a child process) when missing.
    Returns the path and a small description for the JSON line."""
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}: use {', '.join(RENDERERS)}")
    chunk = min(chunk, size)
    path = scene_path(cache_dir, size, seed, chunk, pool, renderer)
    info = {"file": str(path), "renderer": renderer, "chunk_px": chunk, "distinct_chunks": pool, "seed": seed,
            "pixel_size_m": PIXEL_SIZE_M, "crs": CRS, "compress": "deflate", "block_px": 512, "cached": True,
            "render_s": 0.0}
    if not path.exists():
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "bench.scene", "--size", str(size), "--seed", str(seed), "--chunk", str(chunk),
               "--pool", str(pool), "--renderer", renderer, "--out", str(path),
               "--yard-cache", str(Path(cache_dir) / "yards")]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        info.update(cached=False, render_s=round(time.perf_counter() - started, 2))
    info["file_mb"] = round(path.stat().st_size / 1e6, 1)
    return path, info


def render(
    path: Path, size: int, *, seed: int, chunk: int, pool: int, renderer: str, yard_cache: Path | None = None
) -> Path:
    """Write the mosaic to ``path`` chunk by chunk (in this process). Rendered yards are kept in
    ``yard_cache`` (``.npy``, 12 MB for a 2048 px yard) so other sizes reuse them."""
    from service.rasters import geotiff_writer

    n = math.ceil(size / chunk)
    yards: dict[int, np.ndarray] = {}
    transform = Affine(PIXEL_SIZE_M, 0, ORIGIN[0], 0, -PIXEL_SIZE_M, ORIGIN[1])
    with geotiff_writer(path, width=size, height=size, count=3, dtype="uint8", transform=transform, crs=CRS) as write:
        for i in range(n):
            for j in range(n):
                k = (i * n + j) % pool
                if k not in yards:
                    yards[k] = _cached_chunk(yard_cache, seed * 1000 + k, chunk, renderer)
                    print(f"bench.scene: rendered yard {len(yards)}/{min(pool, n * n)}", file=sys.stderr, flush=True)
                variant = (i * 7 + j * 3 + i * j) % 8
                img = _variant(yards[k], variant)
                h, w = min(chunk, size - i * chunk), min(chunk, size - j * chunk)
                write(np.ascontiguousarray(img[:, :h, :w]), j * chunk, i * chunk)
    return path


def _variant(img: np.ndarray, v: int) -> np.ndarray:
    """One of the eight rotations and flips of a square (3, S, S) image."""
    out = np.rot90(img, k=v % 4, axes=(1, 2))
    return out[:, :, ::-1] if v >= 4 else out


def _cached_chunk(cache: Path | None, seed: int, size: int, renderer: str) -> np.ndarray:
    if cache is None:
        return _render_chunk(seed, size, renderer)
    path = Path(cache) / f"yard-{renderer}-{renderer_key(renderer)}-seed{seed}-{size}px.npy"
    if path.exists():
        return np.load(path)
    img = _render_chunk(seed, size, renderer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, img)
    os.replace(tmp, path)
    return img


def _render_chunk(seed: int, size: int, renderer: str) -> np.ndarray:
    if renderer == "synth":
        from models.synth import render_scene

        scene = render_scene(seed, size_px=size, pixel_size_m=PIXEL_SIZE_M, nodata=False)
        return np.asarray(scene.image, dtype=np.uint8)
    return _simple_yard(seed, size)


def _simple_yard(seed: int, size: int) -> np.ndarray:
    """Ground with low-frequency texture, a band of parallel tracks, trains of railcars and tarps."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 12, (3, size // 64 + 2, size // 64 + 2))
    ys = np.linspace(0, coarse.shape[1] - 1.001, size)
    yi = ys.astype(int)
    yf = (ys - yi)[None, :]
    rows = coarse[:, yi] * (1 - yf[..., None]) + coarse[:, yi + 1] * yf[..., None]
    field = rows[:, :, yi] * (1 - yf[:, None, :]) + rows[:, :, yi + 1] * yf[:, None, :]
    base = np.array([118, 112, 96], dtype=np.float32)[:, None, None]
    img = base + field.astype(np.float32) + rng.normal(0, 4, (3, size, size)).astype(np.float32)
    n_tracks = int(rng.integers(4, 12))
    top = int(rng.integers(size // 8, size // 2))
    for t in range(n_tracks):
        y = top + t * 10
        if y + 8 >= size:
            break
        img[:, y : y + 7] = np.array([92, 88, 84], dtype=np.float32)[:, None, None]  # ballast
        img[:, y + 2] = img[:, y + 5] = 150.0  # rails
        x = int(rng.integers(0, size // 4))
        while x + 30 < size and rng.random() < 0.97:
            colour = rng.integers(40, 200, 3).astype(np.float32)
            img[:, y : y + 6, x : x + 28] = colour[:, None, None]
            x += 30
    for _ in range(int(rng.integers(5, 30))):
        cx, cy = rng.integers(0, size - 20, 2)
        img[:, cy : cy + int(rng.integers(4, 16)), cx : cx + int(rng.integers(4, 16))] = np.array(
            [40, 70, 150], dtype=np.float32)[:, None, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the benchmark scene (used by python -m bench).")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--renderer", choices=RENDERERS, default="synth")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--yard-cache", type=Path, default=None, help="keep rendered yards here (.npy)")
    args = parser.parse_args(argv)
    render(args.out, args.size, seed=args.seed, chunk=args.chunk, pool=args.pool, renderer=args.renderer,
           yard_cache=args.yard_cache)
    print(json.dumps({"scene": str(args.out)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
