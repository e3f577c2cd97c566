"""The shipped weights give the same features whatever ``--tile`` (the square one Dask task covers)
and whatever the batch: the model always runs on the weights' own windows. Those windows matter:
the network's output depends on the window it sees, which is why the task tile must not choose them."""

from __future__ import annotations

import pytest

from models.spec import ModelSpec
from models.synth import render_scene, write_scene
from service.pipeline import DetectOptions, batch_size, detect_scene, model_meta, model_tile, task_side


def canonical(fc: dict) -> list[tuple]:
    """Every feature as (class, geometry, properties but the id), in a fixed order."""
    rows = []
    for f in fc["features"]:
        props = {k: v for k, v in f["properties"].items() if k != "id"}
        rows.append((props["class"], repr(f["geometry"]["coordinates"]), sorted(props.items())))
    return sorted(rows)


@pytest.fixture(scope="module")
def yard(tmp_path_factory):
    scene = render_scene(8101, size_px=1100, pixel_size_m=0.5, min_railcars=30)
    return write_scene(scene, tmp_path_factory.mktemp("yard"), "yard")["image"]


def test_task_tiles_change_no_feature_of_the_shipped_model(yard, dask_client):
    runs = {tile: detect_scene(yard, DetectOptions(device="cpu", tile=tile), ModelSpec(), dask_client)
            for tile in (None, 256, 512, 1024)}
    first = canonical(runs[None])
    assert runs[None]["summary"]["counts"]["railcar"] >= 20
    # By default a task is 4 x 4 tiles where the CPU runs bf16 (8 a model call), 3 x 3 in fp32 (6 a call).
    options, meta = DetectOptions(device="cpu"), model_meta(ModelSpec())
    default = task_side(options, model_tile(options, meta), batch_size(options, meta, "cpu"), "cpu")
    assert default in (768, 1024)
    for tile, fc in runs.items():
        assert fc["summary"]["tile_size"] == 256 and fc["summary"]["task_tile"] == (tile or default)
        assert canonical(fc) == first, f"--tile {tile} changed the features"
    # nor does the number of tiles a model call takes
    threes = detect_scene(yard, DetectOptions(device="cpu", batch_size=3), ModelSpec(), dask_client)
    assert canonical(threes) == first


def test_the_model_tile_does_change_the_shipped_models_features(yard, dask_client):
    own = detect_scene(yard, DetectOptions(device="cpu"), ModelSpec(), dask_client)
    wider = detect_scene(yard, DetectOptions(device="cpu", model_tile=512), ModelSpec(), dask_client)
    assert wider["summary"]["tile_size"] == 512
    assert canonical(wider) != canonical(own)
