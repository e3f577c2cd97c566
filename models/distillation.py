"""Training a model towards its own test-time-augmented answers (``railsight train --distil-views N``).

Averaged over 4 flipped views, the shipped weights score railcar F1 0.843 on held-out scenes
against 0.817 for one view (MODEL.md, session 25), at 4 model passes a tile. Their mean over views
is steadier at car ends, gaps and tarp edges than any one look. A run trained on from those weights
with the frozen weights' N-view mean as a second target (beside the labels) is taught that steadier
answer for one pass (self-distillation). The teacher is the ``--init`` weights as they were at
the start, run inference-optimised on each training batch, under the run's autocast.

The extra term is a KL divergence, so it is 0 where the student already gives the teacher's answer:
over the four classes on the class channels, and per pixel between two Bernoulli distributions on
the core channels; both averaged over the valid (not no-data) pixels.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from models.inference import optimise_for_inference, views_mean
from models.interface import SEMANTIC_CLASSES

# The KL term's weight beside the label loss: on run 17's crops the 4-view KL is 0.04-0.08, the
# label loss near 0.67.
DISTIL_WEIGHT = 2.0


class ViewsTeacher:
    """A frozen, inference-optimised copy of ``module`` that answers with its mean over ``views`` views."""

    def __init__(self, module: torch.nn.Module, device: torch.device, views: int, bf16: bool) -> None:
        self.module = optimise_for_inference(copy.deepcopy(module).eval(), device)
        self.views, self.bf16 = views, bf16

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised tiles (B, 3, H, W) -> class (B, 4, H, W) and core (B, 2, H, W) probabilities."""
        with torch.inference_mode():
            probs, cores = views_mean(self.module, x, views=self.views, bf16=self.bf16)
        return probs.clone(), cores.clone()  # out of inference mode, so autograd may read them


def distillation_loss(logits: torch.Tensor, probs: torch.Tensor, cores: torch.Tensor,
                      valid: torch.Tensor) -> torch.Tensor:
    """Student ``logits`` (B, 6, H, W) against the teacher's ``probs`` (B, 4, H, W) and ``cores``
    (B, 2, H, W); ``valid`` (B, H, W) bool. Class KL plus core KL, each averaged over valid pixels."""
    n = len(SEMANTIC_CLASSES)
    m = valid.float()
    count = m.sum().clamp_min(1.0)
    logits = logits.float()
    t = probs.float()
    class_kl = (torch.xlogy(t, t) - t * F.log_softmax(logits[:, :n], dim=1)).sum(dim=1)
    c = cores.float().clamp(0.0, 1.0)
    entropy = -(torch.xlogy(c, c) + torch.xlogy(1 - c, 1 - c))
    core_kl = (F.binary_cross_entropy_with_logits(logits[:, n:], c, reduction="none") - entropy).sum(dim=1)
    return ((class_kl + core_kl) * m).sum() / count
