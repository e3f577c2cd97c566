"""The model under torch.compile (``--compile``): one compiled shape whatever a call holds, the same
features as the eager model, and workers that compile before the first tile."""

from __future__ import annotations

import json

import dask.system
import pytest
import torch
from torch import nn

from models.compiled import StaticBatchModel
from models.spec import CompileFor
from service.pipeline import DetectOptions, batch_size, call_shape, compile_for, detect_scene, model_meta
from tests.test_detect_cli import detect
from tests.test_pipeline import yard  # noqa: F401 - the fixture


class CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts the graphs it gets."""

    def __init__(self) -> None:
        self.graphs: list[set[tuple[int, ...]]] = []  # the shapes of each graph's inputs (weights too)

    def __call__(self, gm, example_inputs):
        self.graphs.append({tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)})
        return gm.forward


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 1)).eval()


@pytest.mark.parametrize("tiles", [1, 3, 4, 9])
def test_every_call_runs_the_one_compiled_batch_and_keeps_its_own_tiles(tiles):
    torch._dynamo.reset()
    net, backend = small_net(), CountingBackend()
    model = StaticBatchModel(net, batch=4, backend=backend)
    with torch.inference_mode():  # as models.inference.infer calls it
        x = torch.rand(tiles, 3, 16, 16).contiguous(memory_format=torch.channels_last)
        got, want = model(x), net(x)
    assert got.shape == want.shape == (tiles, 6, 16, 16)
    torch.testing.assert_close(got, want)
    assert len(backend.graphs) == 1 and (4, 3, 16, 16) in backend.graphs[0]  # padded or cut to 4, compiled once


def test_a_batch_under_one_is_refused():
    with pytest.raises(ValueError, match="batch must be at least 1"):
        StaticBatchModel(small_net(), batch=0)


def test_compile_for_names_the_calls_the_scene_will_make(oracle_spec):
    meta = model_meta(oracle_spec)
    assert compile_for(DetectOptions(), meta, 8) is None
    options = DetectOptions(compile=True, model_tile=256, precision="fp32")
    assert compile_for(options, meta, 8) == CompileFor(batch=8, window_px=256 + 2 * meta.halo_px, precision="fp32")


def test_compiled_pipeline_finds_what_the_eager_one_does(yard, dask_client, oracle_spec):  # noqa: F811
    path, boxes = yard
    eager = detect_scene(path, DetectOptions(device="cpu", precision="fp32"), oracle_spec, dask_client)
    options = DetectOptions(device="cpu", precision="fp32", compile=True)
    fc = detect_scene(path, options, oracle_spec, dask_client)
    assert fc["summary"]["compiled"] is True and eager["summary"]["compiled"] is False
    assert fc["summary"]["counts"] == eager["summary"]["counts"] and fc["summary"]["counts"]["railcar"] == len(boxes)
    assert [f["geometry"] for f in fc["features"]] == [f["geometry"] for f in eager["features"]]
    meta = model_meta(oracle_spec)
    batch = batch_size(options, meta, "cpu")
    want = compile_for(options, meta, batch)
    calls = call_shape(options, meta, batch)

    def compiled_and_warm():
        from service import model_plugin

        return model_plugin.is_warm(oracle_spec, "cpu", want, calls)

    assert list(dask_client.run(compiled_and_warm).values()) == [True, True]

    def compile_threads() -> int:
        import torch._inductor.config as inductor_config

        return inductor_config.compile_threads

    # Each worker compiles on its share of the host's cores, not a subprocess per core of its own.
    share = max(1, dask.system.CPU_COUNT // 2)  # two single-threaded workers
    assert list(dask_client.run(compile_threads).values()) == [share, share]


def test_detect_compile_flag(tmp_path, cli_env):
    from tests import scenes

    img = scenes.blank(600, 600)
    scenes.train_of_cars(img, 50, 280, 12)
    scene = scenes.write(tmp_path / "scene.tif", img)
    out = tmp_path / "detections.geojson"
    proc = detect(cli_env, scene, "-o", out, "--compile", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["compiled"] is True and summary["counts"]["railcar"] == 12
