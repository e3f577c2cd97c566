"""Turning a trained model into a fast inference model, with the same outputs (to float rounding).

Batch norm is folded into the convolutions before it (torch.fx's conv/bn fusion): in eval mode a BN
layer is a per-channel affine map, so it can live in the conv's weights and bias, and the separate
pass over every feature map, which dominates a narrow network on a CPU, disappears (about 1.8x
on the shipped UNet on this project's 2-core CPU). Channels-last memory suits both oneDNN and
cuDNN. ``infer`` is the model step of every pipeline task: uint8 tiles in, probabilities out.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch.fx.experimental.optimization import fuse

from kernels.normalise import normalise
from models.interface import ModelMeta, split_output

log = logging.getLogger(__name__)


def optimise_for_inference(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """An eval-mode copy with BN folded and channels-last weights; the module itself when it
    cannot be traced (a model with data-dependent control flow keeps working, just unfused)."""
    module = module.eval()
    try:
        fused = fuse(copy.deepcopy(module).cpu())
    except Exception as exc:  # noqa: BLE001 - any tracing failure just means "no fusion"
        log.info("model not fused for inference (%s); running it as is", exc)
        fused = module
    return fused.to(device).to(memory_format=torch.channels_last)


def infer(module: torch.nn.Module, meta: ModelMeta, device: torch.device, rgb: np.ndarray,
          *, bf16: bool) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, S, S) uint8 -> class probabilities (B, 4, S, S) and core probabilities (B, 2, S, S),
    float32 on the host. Channels-last; under bf16 autocast when ``bf16`` (what
    ``models.loading.autocast_bf16`` decides: CUDA, and CPUs with native bf16), else fp32."""
    batch = torch.from_numpy(rgb)
    cuda = device.type == "cuda"
    with torch.inference_mode():
        if cuda:
            batch = batch.pin_memory().to(device, non_blocking=True)
        x = normalise(batch, meta.mean, meta.std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = module(x)
        probs, cores = split_output(logits)
        return probs.cpu().numpy(), cores.cpu().numpy()
