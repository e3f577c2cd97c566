"""The network: contract shape, size, bf16-safe ops, and weights that round-trip with metadata."""

from __future__ import annotations

import pytest
import torch

from models.interface import OUTPUT_CHANNELS, ModelMeta, split_output
from models.loading import load_model, read_weights, save_weights
from models.spec import ModelSpec
from models.unet import build_unet, count_parameters


def test_output_contract_and_size():
    model = build_unet().eval()
    assert 1_000_000 <= count_parameters(model) <= 2_000_000
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 96, 160))
    assert out.shape == (2, OUTPUT_CHANNELS, 96, 160)
    probs, cores = split_output(out)
    assert torch.allclose(probs.sum(dim=1), torch.ones(2, 96, 160), atol=1e-5)
    assert cores.shape == (2, 2, 96, 160)


def test_split_output_of_a_channels_last_bf16_output_is_contiguous_float32():
    # The vectorising reads the planes class by class: they must come out contiguous, in float32,
    # with the same values as from an ordinary (contiguous) float tensor.
    logits = torch.randn(2, OUTPUT_CHANNELS, 40, 56).to(torch.bfloat16)
    probs, cores = split_output(logits.contiguous(memory_format=torch.channels_last))
    ref_probs, ref_cores = split_output(logits.float())
    assert probs.is_contiguous() and cores.is_contiguous()
    assert probs.dtype == cores.dtype == torch.float32
    assert torch.allclose(probs, ref_probs, atol=1e-6) and torch.allclose(cores, ref_cores, atol=1e-6)


def test_channels_last_and_bf16_autocast_give_the_same_answer():
    torch.manual_seed(0)
    model = build_unet().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = model(x)
    assert torch.allclose(ref, cl, atol=1e-4)
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf).all()
    assert (bf.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.1


def test_bad_arch_args():
    with pytest.raises(ValueError):
        build_unet(widths=(16, 32), blocks=(0,))


def test_weights_round_trip_with_metadata(tmp_path):
    model = build_unet(widths=(8, 8, 16, 16, 32, 32)).eval()
    meta = ModelMeta(version="9.9.9", arch_args={"widths": [8, 8, 16, 16, 32, 32], "blocks": [0, 1, 1, 1, 1]},
                     extra={"engine": {"seed": 3, "version": "x"}, "hardware": "CPU", "steps": 5})
    path = save_weights(tmp_path / "w.pt", model, meta)
    loaded, meta2 = load_model(ModelSpec(weights=str(path)))
    assert meta2 == meta
    assert read_weights(path)[0].extra["engine"]["seed"] == 3
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
