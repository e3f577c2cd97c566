"""The training loss for the six-channel model output (see ``models.interface``).

    semantic  class-weighted cross-entropy over the 4 classes, pixels marked IGNORE (no-data) left
              out. Partial labels: a pixel labelled background in a scene whose labels do not know
              class k (``known[k]`` False) counts as "background or k", i.e. its loss is
              -log(p_background + p_k), so an unlabelled car is not taught to be background.
              Plus a soft Dice over the three foreground classes (pooled over the batch), which
              keeps thin tracks and small tarps from being drowned by the background.
    cores     binary cross-entropy (positives up-weighted, they are small) + soft Dice, per core
              channel, on valid pixels of scenes where that class is known. With a gap weight, the
              pixels of an object's footprint outside its core (the rim that parts two coupled cars)
              count 1 + gap weight times in the cross-entropy.

total = semantic + SEMANTIC_DICE_WEIGHT * semantic_dice + core_bce + CORE_DICE_WEIGHT * core_dice
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from models.interface import OBJECT_CLASSES, SEMANTIC_CLASSES

IGNORE = 255
# background, railcar, tarped_cargo, track: the rare classes count more
CLASS_WEIGHTS = (1.0, 2.0, 2.5, 1.5)
CORE_POS_WEIGHT = 2.0
CORE_DICE_WEIGHT = 0.5
SEMANTIC_DICE_WEIGHT = 0.5


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor,
                  class_weights: tuple[float, ...] = CLASS_WEIGHTS) -> torch.Tensor:
    """``logits`` (B, 4, H, W); ``target`` (B, H, W) long, IGNORE = left out; ``known`` (B, 4) bool."""
    n = logits.shape[1]
    logp = F.log_softmax(logits.float(), dim=1)
    valid = target != IGNORE
    safe = torch.where(valid, target, torch.zeros_like(target))
    allowed = F.one_hot(safe, n).permute(0, 3, 1, 2).bool()  # (B, n, H, W)
    unknown = (~known.bool()).view(-1, n, 1, 1)
    allowed = allowed | (unknown & (safe == 0).unsqueeze(1))
    nll = -torch.logsumexp(logp.masked_fill(~allowed, float("-inf")), dim=1)
    weights = torch.tensor(class_weights, device=logits.device, dtype=logp.dtype)[safe] * valid
    return (nll * weights).sum() / weights.sum().clamp_min(1.0)


def soft_dice(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Dice per channel, pooled over the whole batch (sparse targets: most crops hold no object
    of a class, and a per-crop Dice would be all smoothing). ``prob``, ``target``, ``mask``
    (B, K, H, W); channels with no counted pixel are left out. Returns the mean over channels."""
    m = mask.float()
    inter = (prob * target * m).sum(dim=(0, 2, 3))
    denom = (prob * m).sum(dim=(0, 2, 3)) + (target * m).sum(dim=(0, 2, 3))
    counted = m.sum(dim=(0, 2, 3)) > 0
    dice = 1.0 - (2 * inter + 1.0) / (denom + 1.0)
    return (dice * counted).sum() / counted.sum().clamp_min(1)


def core_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` and ``target`` (B, K, H, W); ``mask`` (B, K, H, W) bool: which pixels count;
    ``weight`` (B, K, H, W): how much each pixel's cross-entropy counts (default 1).
    Returns (BCE, soft Dice loss)."""
    logits = logits.float()
    target = target.float()
    m = mask.float() if weight is None else mask.float() * weight
    pos_weight = torch.tensor(CORE_POS_WEIGHT, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    bce = (bce * m).sum() / m.sum().clamp_min(1.0)
    return bce, soft_dice(torch.sigmoid(logits), target, mask)


def railsight_loss(logits: torch.Tensor, semantic: torch.Tensor, cores: torch.Tensor,
                   known: torch.Tensor, gap_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """``semantic`` (B, H, W) long with IGNORE; ``cores`` (B, 2, H, W) {0, 1}; ``known`` (B, 4) bool;
    ``gap_weight``: extra weight of footprint pixels outside the cores (module docstring).
    Returns the total and its parts (floats, for logging)."""
    n = len(SEMANTIC_CLASSES)
    sem = semantic_loss(logits[:, :n], semantic, known)
    valid = (semantic != IGNORE).unsqueeze(1)
    # Dice on the foreground classes, where the labels know them: thin tracks and small tarps are a
    # sliver of the pixels, and cross-entropy alone learns them last.
    probs = torch.softmax(logits[:, :n].float(), dim=1)[:, 1:]
    onehot = torch.stack([semantic == k for k in range(1, n)], dim=1).float()
    sem_dice = soft_dice(probs, onehot, valid & known[:, 1:n].bool().view(-1, n - 1, 1, 1))
    object_known = known[:, [SEMANTIC_CLASSES.index(c) for c in OBJECT_CLASSES]].bool()
    mask = valid & object_known.view(-1, len(OBJECT_CLASSES), 1, 1)
    weight = None
    if gap_weight:
        footprint = torch.stack([semantic == SEMANTIC_CLASSES.index(c) for c in OBJECT_CLASSES], dim=1)
        weight = 1.0 + gap_weight * (footprint & (cores == 0)).float()
    bce, dice = core_loss(logits[:, n:], cores, mask, weight)
    total = sem + SEMANTIC_DICE_WEIGHT * sem_dice + bce + CORE_DICE_WEIGHT * dice
    return total, {"semantic": float(sem.detach()), "semantic_dice": float(sem_dice.detach()),
                   "core_bce": float(bce.detach()), "core_dice": float(dice.detach())}
