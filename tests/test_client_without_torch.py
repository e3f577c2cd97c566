"""The pipeline's client side (the CLI, the API, the runner) never loads torch: only the Dask
workers run the model. torch costs about 0.5 GB of resident memory per process, which counts
against the pipeline's memory budget on large scenes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from models.interface import ModelMeta
from models.loading import read_weights, save_weights
from models.spec import SHIPPED_WEIGHTS, read_meta
from models.unet import build_unet
from tests import scenes

CLIENT = textwrap.dedent(
    """
    import json, sys
    from service.cluster import dask_client
    from service.pipeline import DetectOptions, detect_scene
    from service.settings import PipelineSettings
    from models.spec import ModelSpec

    with dask_client(PipelineSettings(device="cpu", workers=1)) as client:
        fc = detect_scene(sys.argv[1], DetectOptions(device="cpu"), ModelSpec(), client)
        workers_have_torch = set(client.run(lambda: "torch" in sys.modules).values())
        workers_have_torchvision = set(client.run(lambda: "torchvision" in sys.modules).values())
        malloc = set(client.run(lambda: __import__("os").environ.get("MALLOC_ARENA_MAX")).values())
        profiling = set(client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks).values())
        ticks = set(client.run(lambda dask_worker: dask_worker.periodic_callbacks["tick"].callback_time).values())
        monitor = set(client.run(lambda dask_worker: dask_worker.periodic_callbacks["monitor"].callback_time).values())
    print(json.dumps({"client_has_torch": "torch" in sys.modules, "workers_have_torch": sorted(workers_have_torch),
                      "workers_have_torchvision": sorted(workers_have_torchvision), "malloc": sorted(malloc),
                      "profiling": sorted(profiling), "ticks_ms": sorted(ticks), "monitor_ms": sorted(monitor),
                      "tiles": fc["summary"]["tiles"], "model": fc["summary"]["model"]["name"]}))
    """
)


def test_a_detection_with_the_shipped_weights_keeps_torch_out_of_the_client(tmp_path):
    path = scenes.write(tmp_path / "yard.tif", scenes.blank(600, 400))
    out = subprocess.run([sys.executable, "-c", CLIENT, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["tiles"] > 0 and got["model"] == read_meta(SHIPPED_WEIGHTS).name
    assert got["workers_have_torch"] == [True]
    assert got["client_has_torch"] is False
    # the model runs without torchvision (170 MB of RSS per worker), and the workers started with
    # the malloc settings of models.allocator
    assert got["workers_have_torchvision"] == [False]
    assert got["malloc"] == ["1"]
    # ... and without Dask's statistical profiler (service.cluster.LOCAL_WORKER_CONFIG)
    assert got["profiling"] == [False]
    # ... and with the event-loop tick and system monitor slowed to once a second and every 10 s
    assert got["ticks_ms"] == [1000] and got["monitor_ms"] == [10000]


def test_metadata_is_read_from_the_weights_file_without_torch(tmp_path):
    meta = ModelMeta(name="m", version="1.2.3", pixel_size_m=0.3, extra={"hardware": "x"})
    path = save_weights(tmp_path / "w.pt", build_unet(), meta)
    assert read_meta(path) == read_weights(path)[0] == meta
    probe = "import sys; from models.spec import read_meta; m = read_meta(sys.argv[1]); " \
            "print(m.version, m.pixel_size_m, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1.2.3", "0.3", "False"], out.stderr
