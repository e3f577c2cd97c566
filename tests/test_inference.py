"""The inference-optimised model gives the trained model's outputs."""

from __future__ import annotations

import torch

from models.inference import optimise_for_inference
from models.unet import build_unet


def test_folded_batch_norm_keeps_the_outputs():
    torch.manual_seed(0)
    model = build_unet()
    # Non-trivial running statistics, so folding has something to fold.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64))
    model.eval()
    fast = optimise_for_inference(model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        want = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(want, got, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original is left as it was"
