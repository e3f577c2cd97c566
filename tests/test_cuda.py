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


def test_threads_run_the_model_on_their_own_streams_with_the_same_answers():
    """A GPU worker's task threads each get a CUDA stream (models.inference.thread_stream); run side
    by side, they give what one thread gives alone."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from models.inference import infer, optimise_for_inference, thread_stream
    from models.interface import ModelMeta
    from models.unet import build_unet

    device = torch.device("cuda")
    torch.manual_seed(0)
    module = optimise_for_inference(build_unet(), device)
    meta = ModelMeta(name="t", version="0")
    rgbs = [np.random.default_rng(i).integers(0, 256, (4, 3, 128, 128), dtype=np.uint8) for i in range(2)]
    alone = [infer(module, meta, device, rgb, bf16=False) for rgb in rgbs]
    both_started = threading.Barrier(2, timeout=30)  # so the two calls run on two threads at once

    def run(rgb):
        both_started.wait()
        return infer(module, meta, device, rgb, bf16=False), thread_stream(device)

    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, rgbs))
    for (probs, cores), ((p, c), _) in zip(alone, together, strict=True):
        assert np.allclose(probs, p, atol=1e-5) and np.allclose(cores, c, atol=1e-5)
    streams = {s.cuda_stream for _, s in together}
    assert len(streams) == 2 and torch.cuda.default_stream(device).cuda_stream not in streams
