"""Training samples: whole scenes on the model grid, then random augmented crops from them.

Two sources of scenes, one format (``GridSample``):

- **Synthetic** scenes from the data engine (``models.synth``), rendered from a seed, read on the
  model grid the way the pipeline reads a file (``service.rasters.resample_to_model_grid``:
  bilinear), with labels rasterised by the engine directly on that grid.
- **A user's own** scenes and labels (fine-tuning): read through ``inspect_scene``/``open_scene``
  like any scene, labels drawn by ``models.labels``.

Seeds. The engine's scene seeds (``models.synth.scene_seed``, what ``railsight synth --seed S``
renders) are below 2**63. Training scene seeds are at or above ``TRAIN_SEED_MIN`` = 2**63 (a
hash of the run's seed and the scene index, with the top bit set), so no held-out scene rendered by
``railsight synth``, with any seed, can ever be a training scene.

``CropStream`` is an ``IterableDataset``: it keeps a small pool of scenes, yields
``crops_per_scene`` crops from each before replacing it, and is deterministic for a given seed and
DataLoader worker count (worker ``w`` of ``n`` renders scene indices ``w, w + n, ...``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from models.interface import DEFAULT_PIXEL_SIZE_M, OBJECT_CLASSES, SEMANTIC_CLASSES
from models.labels import IGNORE, known_vector, rasterize_targets, read_labels, to_grid_pixels
from models.photometric import wide_shift

if TYPE_CHECKING:
    from service.colour_balance import BalanceBox

TRAIN_SEED_MIN = 1 << 63
SYNTH_SCENE_PX = 768
# The share of training scenes whose band balance the pipeline leaves alone: a scene outside this
# range of them per band is brought to its edge (service.colour_balance). MODEL.md, session 24.
BALANCE_QUANTILES = (25.0, 75.0)
# The share of training scenes at least as flat as the flattest scene left as it is: a scene with a
# smaller brightness spread (service.colour_balance.brightness_spread) is given this one. MODEL.md,
# session 25.
SPREAD_QUANTILE = 10.0


@dataclass
class GridSample:
    """One scene on the model grid with its targets."""

    image: np.ndarray  # (3, H, W) uint8
    valid: np.ndarray  # (H, W) bool
    semantic: np.ndarray  # (H, W) uint8, IGNORE where not valid
    cores: np.ndarray  # (2, H, W) bool
    known: np.ndarray  # (4,) bool: which semantic classes the labels cover
    name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape  # type: ignore[return-value]


def train_scene_seed(run_seed: int, index: int) -> int:
    """The engine seed of the ``index``-th training scene of a run; always >= TRAIN_SEED_MIN, where
    ``railsight synth`` never goes."""
    state = np.random.SeedSequence([0x7261696C, int(run_seed), int(index)]).generate_state(1, np.uint64)[0]
    return TRAIN_SEED_MIN | int(state)


def is_training_seed(seed: int) -> bool:
    return seed >= TRAIN_SEED_MIN


def synthetic_sample(seed: int, *, size_px: int = SYNTH_SCENE_PX,
                     model_pixel_size_m: float = DEFAULT_PIXEL_SIZE_M, **overrides) -> GridSample:
    """Render one engine scene and put it on the model grid."""
    from models.synth import rasterize_labels, render_scene
    from service.rasters import resample_to_model_grid

    scene = render_scene(seed, size_px=size_px, **overrides)
    rgb, valid, grid_transform = resample_to_model_grid(
        scene.image, scene.valid, transform=scene.transform, crs=scene.crs, model_pixel_size_m=model_pixel_size_m
    )
    semantic, cores, _ = rasterize_labels(scene, grid_transform, valid.shape)
    semantic = np.where(valid, semantic, IGNORE).astype(np.uint8)
    return GridSample(rgb, valid, semantic, np.asarray(cores, dtype=bool),
                      np.ones(len(SEMANTIC_CLASSES), dtype=bool), name=f"synth-{seed}")


def user_sample(scene_path: str, labels_path: str, *, model_pixel_size_m: float = DEFAULT_PIXEL_SIZE_M,
                labels_crs: str | None = None, max_pixels: int = 100_000_000,
                colour_balance: BalanceBox | None = None,
                min_spread: float | None = None) -> GridSample:
    """A user's scene and labels on the model grid (the whole scene is held in memory), read with the
    model's ``colour_balance`` and ``min_spread`` as the pipeline reads it."""
    from service.rasters import inspect_scene, open_scene
    from service.tile_tasks import grid_pixel_size_m

    info = inspect_scene(scene_path, model_pixel_size_m=model_pixel_size_m, colour_balance=colour_balance,
                         min_spread=min_spread)
    if info.grid_width * info.grid_height > max_pixels:
        from service.errors import SceneTooLarge

        raise SceneTooLarge(f"scene is {info.grid_width} x {info.grid_height} model pixels; fine-tuning reads "
                            f"scenes whole and takes at most {max_pixels:,}: {scene_path}")
    labels = read_labels(labels_path, crs=labels_crs)
    with open_scene(info) as reader:
        rgb, valid = reader.read(0, 0, info.grid_width, info.grid_height)
    pixel_geoms = to_grid_pixels(labels, info.crs_wkt, info.grid_transform)
    semantic, cores = rasterize_targets(pixel_geoms, valid.shape, grid_pixel_size_m(info))
    semantic = np.where(valid, semantic, IGNORE).astype(np.uint8)
    return GridSample(rgb, valid, semantic, cores, known_vector(labels.known), name=str(scene_path))


# ---------------------------------------------------------------------------- crops


def random_crop(sample: GridSample, rng: np.random.Generator, size: int, object_bias: float = 0.7) -> dict:
    """A ``size`` x ``size`` crop (padded as no-data where the scene is smaller). With probability
    ``object_bias`` it is centred near a random labelled (non-background) pixel, else anywhere;
    crops with under a quarter valid pixels are redrawn a few times."""
    h, w = sample.shape
    fg = None
    best = None
    for _ in range(6):
        if rng.random() < object_bias:
            if fg is None:
                fg = np.flatnonzero((sample.semantic > 0) & (sample.semantic != IGNORE))
            if fg.size:
                y, x = divmod(int(fg[rng.integers(fg.size)]), w)
                r0 = y - size // 2 + int(rng.integers(-size // 4, size // 4 + 1))
                c0 = x - size // 2 + int(rng.integers(-size // 4, size // 4 + 1))
                r0 = int(np.clip(r0, min(0, h - size), max(0, h - size)))
                c0 = int(np.clip(c0, min(0, w - size), max(0, w - size)))
            else:
                r0, c0 = _uniform_corner(rng, h, w, size)
        else:
            r0, c0 = _uniform_corner(rng, h, w, size)
        crop = _cut(sample, r0, c0, size)
        share = crop["valid"].mean()
        if best is None or share > best[0]:
            best = (share, crop)
        if share >= 0.25:
            break
    return best[1]  # type: ignore[index]


def _uniform_corner(rng: np.random.Generator, h: int, w: int, size: int) -> tuple[int, int]:
    r0 = int(rng.integers(0, h - size + 1)) if h > size else (h - size) // 2
    c0 = int(rng.integers(0, w - size + 1)) if w > size else (w - size) // 2
    return r0, c0


def _cut(sample: GridSample, r0: int, c0: int, size: int) -> dict:
    h, w = sample.shape
    image = np.zeros((3, size, size), dtype=np.uint8)
    valid = np.zeros((size, size), dtype=bool)
    semantic = np.full((size, size), IGNORE, dtype=np.uint8)
    cores = np.zeros((len(OBJECT_CLASSES), size, size), dtype=bool)
    ys, xs = slice(max(r0, 0), min(r0 + size, h)), slice(max(c0, 0), min(c0 + size, w))
    dy = slice(ys.start - r0, ys.stop - r0)
    dx = slice(xs.start - c0, xs.stop - c0)
    image[:, dy, dx] = sample.image[:, ys, xs]
    valid[dy, dx] = sample.valid[ys, xs]
    semantic[dy, dx] = sample.semantic[ys, xs]
    cores[:, dy, dx] = sample.cores[:, ys, xs]
    return {"image": image, "valid": valid, "semantic": semantic, "cores": cores, "known": sample.known}


def augment(crop: dict, rng: np.random.Generator, colour: bool = True, shift_share: float = 0.0) -> dict:
    """Random flips and quarter turns (image and targets together), and a mild colour jitter:
    per-band gain, brightness, contrast, gamma, and now and then a desaturation. A ``shift_share``
    of the crops gets ``models.photometric.wide_shift`` instead of the mild jitter. The image stays
    uint8, as the pipeline feeds the model."""
    k = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)

    def geo(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)

    out = {key: geo(crop[key]) for key in ("image", "valid", "semantic", "cores")}
    out["known"] = crop["known"]
    if colour and shift_share > 0 and rng.random() < shift_share:
        out["image"] = np.where(out["valid"][None], wide_shift(out["image"], rng), 0).astype(np.uint8)
    elif colour:
        img = out["image"].astype(np.float32) / 255.0
        img = img * rng.uniform(0.9, 1.1, size=(3, 1, 1)).astype(np.float32)
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.06, 0.06)
        if rng.random() < 0.15:
            grey = img.mean(axis=0, keepdims=True)
            img = grey + (img - grey) * rng.uniform(0.0, 0.6)
        img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.85, 1.15)
        image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        out["image"] = np.where(out["valid"][None], image, 0).astype(np.uint8)
    return out


def to_tensors(crop: dict) -> dict[str, torch.Tensor]:
    return {
        "image": torch.from_numpy(crop["image"]),
        "semantic": torch.from_numpy(crop["semantic"].astype(np.int64)),
        "cores": torch.from_numpy(crop["cores"].astype(np.uint8)),
        "known": torch.from_numpy(np.asarray(crop["known"], dtype=bool)),
    }


# ---------------------------------------------------------------------------- the stream


class CropStream(IterableDataset):
    """Endless batches of augmented crops from a pool of scenes.

    ``scene_at(index)`` makes the ``index``-th scene (synthetic: render it; user scenes: cycle
    through a fixed list). ``pool`` scenes are held at once; each crop comes from a random scene of
    the pool, and a scene that has given ``crops_per_scene`` crops is replaced by the next index.
    ``first_index`` lets a resumed run continue with fresh scenes.

    ``schedule`` is ((crop px, crops), ...): batch b holds ``crops`` crops of the side
    ``schedule[b % len(schedule)]`` names, so one run can train on several window sizes, each at its
    own batch (a model's output depends on how much of its receptive field the window fills, and
    the pipeline runs it on windows larger than 256 px). Batch b comes from DataLoader worker
    b % workers, which is the order a DataLoader with ``batch_size=None`` hands them out in."""

    def __init__(
        self,
        scene_at: Callable[[int], GridSample],
        *,
        seed: int,
        schedule: Sequence[tuple[int, int]] = ((256, 8),),
        crops_per_scene: int = 24,
        pool: int = 3,
        first_index: int = 0,
        colour_jitter: bool = True,
        object_bias: float = 0.7,
        shift_share: float = 0.0,
    ) -> None:
        super().__init__()
        for crop, count in schedule:
            if crop % 32 or count < 1:
                raise ValueError(f"crop size must be a multiple of 32 and a batch at least 1, got {crop} x {count}")
        if not schedule:
            raise ValueError("the crop schedule is empty")
        self.scene_at = scene_at
        self.seed = seed
        self.schedule = tuple(schedule)
        self.crops_per_scene = crops_per_scene
        self.pool = pool
        self.first_index = first_index
        self.colour_jitter = colour_jitter
        self.object_bias = object_bias
        self.shift_share = shift_share

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.first_index, wid, 7])
        index = self.first_index + wid
        pool: list[list] = []  # [sample, crops left]

        def next_crop(size: int) -> dict[str, torch.Tensor]:
            nonlocal index
            while len(pool) < self.pool:
                pool.append([self.scene_at(index), self.crops_per_scene])
                index += nworkers
            slot = int(rng.integers(len(pool)))
            crop = random_crop(pool[slot][0], rng, size, self.object_bias)
            pool[slot][1] -= 1
            if pool[slot][1] <= 0:
                pool.pop(slot)
            return to_tensors(augment(crop, rng, colour=self.colour_jitter, shift_share=self.shift_share))

        batch = wid
        while True:
            size, count = self.schedule[batch % len(self.schedule)]
            crops = [next_crop(size) for _ in range(count)]
            yield {k: torch.stack([c[k] for c in crops]) for k in crops[0]}
            batch += nworkers


def tone_ranges(scenes: Iterable[GridSample]) -> dict[str, Any]:
    """What the pipeline brings scenes read for these weights into, from a run's first training
    scenes, in one pass that keeps only two numbers per scene: ``colour_balance``, the
    ``BALANCE_QUANTILES`` of band balance per band (``service.colour_balance.band_balance``), and
    ``min_brightness_spread``, the ``SPREAD_QUANTILE`` of brightness spread (``brightness_spread``).
    Empty if no scene has a valid pixel: a made-up range would recolour every scene."""
    from service.colour_balance import band_balance, brightness_spread

    balances, spreads = [], []
    for s in scenes:
        if s.valid.any():
            balances.append(band_balance(s.image, s.valid))
            spreads.append(brightness_spread(s.image, s.valid))
    if not balances:
        return {}
    low, high = np.percentile(balances, BALANCE_QUANTILES, axis=0)
    return {"colour_balance": {"low": [round(float(v), 4) for v in low], "high": [round(float(v), 4) for v in high]},
            "min_brightness_spread": round(float(np.percentile(spreads, SPREAD_QUANTILE)), 2)}


def synthetic_scenes(run_seed: int, size_px: int = SYNTH_SCENE_PX, **overrides) -> Callable[[int], GridSample]:
    """``scene_at`` for ``CropStream``: the index-th training scene of a run."""

    def scene_at(index: int) -> GridSample:
        return synthetic_sample(train_scene_seed(run_seed, index), size_px=size_px, **overrides)

    return scene_at


# Stride of the low-discrepancy sequence that spreads pixel sizes over the indices (unrelated to the
# strides that pick which indices are mixed in, so the two do not line up).
_PIXEL_SIZE_STRIDE = 0.7548776662466927


def pixel_size_scenes(run_seed: int, low_m: float, high_m: float, size_px: int = SYNTH_SCENE_PX,
                      **overrides) -> Callable[[int], GridSample]:
    """``scene_at`` rendering the index-th training scene at a pixel size between ``low_m`` and
    ``high_m``, spread evenly over the indices (a low-discrepancy sequence, so deterministic)."""

    def scene_at(index: int) -> GridSample:
        pixel_size_m = low_m + (high_m - low_m) * ((index * _PIXEL_SIZE_STRIDE) % 1.0)
        return synthetic_sample(train_scene_seed(run_seed, index), size_px=size_px,
                                pixel_size_m=pixel_size_m, **overrides)

    return scene_at


def fixed_scenes(samples: Sequence[GridSample]) -> Callable[[int], GridSample]:
    """``scene_at`` cycling through samples already in memory (fine-tuning on a user's scenes)."""
    samples = list(samples)

    def scene_at(index: int) -> GridSample:
        return samples[index % len(samples)]

    return scene_at


# Strides of the low-discrepancy sequences that pick scene indices; a second mixing in one run uses
# the second stride, so its picks are independent of the first's.
_MIX_STRIDES = (0.6180339887498949, 0.41421356237309515)


def mixed_scenes(first: Callable[[int], GridSample], second: Callable[[int], GridSample],
                 second_share: float, *, sequence: int = 0) -> Callable[[int], GridSample]:
    """Every scene index goes to ``second`` with probability ``second_share`` (a fixed function of
    the index and ``sequence``, so the stream stays deterministic)."""
    return shared_scenes(first, [(second, second_share)], sequence=sequence)


def shared_scenes(rest: Callable[[int], GridSample], shares: Sequence[tuple[Callable[[int], GridSample], float]],
                  *, sequence: int = 0) -> Callable[[int], GridSample]:
    """Scene index i goes to the k-th ``(scene_at, share)`` of ``shares`` with probability share_k
    (consecutive slices of one low-discrepancy sequence, picked by ``sequence``), else to ``rest``."""
    shares = [(scene_at, share) for scene_at, share in shares if share > 0]
    if not shares:
        return rest
    stride = _MIX_STRIDES[sequence]
    bounds = np.cumsum([share for _, share in shares])

    def scene_at(index: int) -> GridSample:
        k = int(np.searchsorted(bounds, (index * stride) % 1.0, side="right"))
        return shares[k][0](index) if k < len(shares) else rest(index)

    return scene_at


def scenes_needed(steps: int, batch: int, crops_per_scene: int) -> int:
    return math.ceil(steps * batch / crops_per_scene)
