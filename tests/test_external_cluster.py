"""RAILSIGHT_DASK_SCHEDULER points `railsight detect` at a cluster started outside it:
a real `dask scheduler` and `dask worker` process, started here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import scenes

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def external_cluster(tmp_path, cli_env):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([BIN / "dask", "worker", address, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path / "dask")],
                                      env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="2s") as c:
                    if c.scheduler_info()["workers"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "external cluster did not start"
            time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def test_detect_on_an_external_scheduler(tmp_path, cli_env, external_cluster):
    img = scenes.blank(700, 600)
    scenes.train_of_cars(img, 40, 300, 9)
    scene = scenes.write(tmp_path / "scene.tif", img)
    out = tmp_path / "out.geojson"
    env = dict(cli_env, RAILSIGHT_DASK_SCHEDULER=external_cluster)
    proc = subprocess.run([sys.executable, "-m", "service.cli", "detect", str(scene), "-o", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["summary"]["counts"]["railcar"] == 9

    from distributed import Client

    def loads():
        from service import model_plugin

        return model_plugin.loaded_models()

    with Client(external_cluster) as c:
        assert list(c.run(loads).values()) == [1]  # the model went to the external worker, once
