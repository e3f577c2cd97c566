"""Instance extraction, CPU reference: class mask + core mask -> one integer label per object.

Seeds are the connected components of the core mask inside the class mask; every class pixel then
joins its nearest seed (a Euclidean distance-transform lookup, which is what a watershed on the
distance would give for these convex shapes). Class blobs with no seed at all keep their own label,
so an object whose core the model missed is not lost.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)


def label_instances(class_mask: np.ndarray, core_mask: np.ndarray, min_seed_px: int = 4) -> tuple[np.ndarray, int]:
    """``class_mask`` and ``core_mask`` are (H, W) bool. Returns (labels int32 (H, W), count), labels
    numbered 1..count, 0 outside objects."""
    seeds, n_seeds = ndimage.label(core_mask & class_mask, structure=EIGHT)
    if n_seeds:
        sizes = np.bincount(seeds.ravel(), minlength=n_seeds + 1)
        small = sizes < min_seed_px
        small[0] = False
        if small.any():
            seeds[small[seeds]] = 0
            seeds, n_seeds = ndimage.label(seeds > 0, structure=EIGHT)
    labels = np.zeros(class_mask.shape, dtype=np.int32)
    if n_seeds:
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        labels = np.where(class_mask, seeds[iy, ix], 0).astype(np.int32)
    # Blobs of the class mask that hold no seed: keep them as objects of their own.
    blobs, n_blobs = ndimage.label(class_mask, structure=EIGHT)
    if n_blobs:
        seeded = np.zeros(n_blobs + 1, dtype=bool)
        seeded[np.unique(blobs[seeds > 0])] = True
        orphan = ~seeded[blobs] & class_mask
        if orphan.any():
            extra, n_extra = ndimage.label(orphan, structure=EIGHT)
            labels[orphan] = extra[orphan] + n_seeds
            n_seeds += n_extra
    return labels, int(n_seeds)


def instance_stats(labels: np.ndarray, count: int, score: np.ndarray) -> dict[str, np.ndarray]:
    """Per-instance pixel count, centroid (x, y in pixel-centre coordinates) and mean score."""
    index = np.arange(1, count + 1)
    if count == 0:
        empty = np.zeros(0)
        return {"area_px": empty, "cx": empty, "cy": empty, "score": empty}
    area = ndimage.sum_labels(np.ones_like(labels, dtype=np.float32), labels, index)
    centres = np.array(ndimage.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, index))
    mean_score = ndimage.mean(score, labels, index)
    return {
        "area_px": np.asarray(area),
        "cx": centres[:, 1] + 0.5,
        "cy": centres[:, 0] + 0.5,
        "score": np.asarray(mean_score),
    }
