"""The CUDA path gives the same features as the CPU path. Skipped where no GPU is present (CI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels.normalise import normalise
from service.pipeline import DetectOptions, detect_scene
from tests import scenes

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_normalise_on_cuda_matches_cpu():
    batch = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    cpu = normalise(batch, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    gpu = normalise(batch.cuda(), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-6)


@pytest.fixture()
def scene(tmp_path):
    """A train of 20 cars and a track across, 900 x 700 px."""
    img = scenes.blank(900, 700)
    scenes.train_of_cars(img, 30, 300, 20)
    scenes.paint(img, "track", 0, 500, 900, 3)
    return scenes.write(tmp_path / "scene.tif", img)


def test_cuda_pipeline_matches_cpu(scene, dask_client, oracle_spec):
    cpu = detect_scene(scene, DetectOptions(device="cpu"), oracle_spec, dask_client)
    gpu = detect_scene(scene, DetectOptions(device="cuda"), oracle_spec, dask_client)
    assert gpu["summary"]["device"] == "cuda"
    assert gpu["summary"]["counts"] == cpu["summary"]["counts"]
    a = np.array([f["geometry"]["coordinates"][0][0] for f in cpu["features"] if f["properties"]["class"] == "railcar"])
    b = np.array([f["geometry"]["coordinates"][0][0] for f in gpu["features"] if f["properties"]["class"] == "railcar"])
    assert np.allclose(a, b, atol=1e-7)


def test_compiled_cuda_pipeline_matches_eager(scene, dask_client, oracle_spec):
    """`--compile` on CUDA (Triton kernels) gives the eager CUDA run's features."""
    eager = detect_scene(scene, DetectOptions(device="cuda"), oracle_spec, dask_client)
    compiled = detect_scene(scene, DetectOptions(device="cuda", compile=True), oracle_spec, dask_client)
    assert compiled["summary"]["compiled"] is True and compiled["summary"]["device"] == "cuda"
    assert compiled["summary"]["counts"] == eager["summary"]["counts"]
    assert [f["geometry"] for f in compiled["features"]] == [f["geometry"] for f in eager["features"]]
