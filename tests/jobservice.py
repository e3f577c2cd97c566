"""Helpers for the job-service tests: settings, a real uvicorn server on a loopback socket (in a
thread, or `railsight serve` as a subprocess), scenes the oracle model knows, and polling.

Fixtures here are imported by the test modules that use them (``from tests.jobservice import ...``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests import scenes

PG_URL = os.environ.get("RAILSIGHT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ORACLE = "tests.oracle_model:build"
SLOW = "tests.slow_model:build"
KEY_A = "alice-key-0123456789abcdef"
KEY_B = "bob-key-0123456789abcdef00"
REPO = Path(__file__).resolve().parent.parent


def auth(key: str = KEY_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_settings(tmp: Path, *, scheduler: str | None, **overrides: Any):
    from service.service_settings import ServiceSettings

    (tmp / "data").mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "api_keys": [KEY_A, KEY_B],
        "state_dir": tmp / "state",
        "data_roots": [tmp / "data"],
        "dask_scheduler": scheduler,
        "device": "cpu",
        "model_factory": ORACLE,
        "lease_seconds": 6.0,
        "poll_seconds": 0.2,
        "max_concurrent_scenes": 2,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def service_env(tmp: Path, *, scheduler: str | None, **overrides: str) -> dict[str, str]:
    """The same, as the environment of a `railsight` subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAILSIGHT_")}
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        RAILSIGHT_API_KEYS=f"{KEY_A},{KEY_B}",
        RAILSIGHT_STATE_DIR=str(tmp / "state"),
        RAILSIGHT_DATA_ROOTS=str(tmp / "data"),
        RAILSIGHT_DEVICE="cpu",
        RAILSIGHT_MODEL_FACTORY=ORACLE,
        RAILSIGHT_LEASE_SECONDS="3",
        RAILSIGHT_POLL_SECONDS="0.2",
        RAILSIGHT_SAMPLE_SCENE="0",
    )
    if scheduler:
        env["RAILSIGHT_DASK_SCHEDULER"] = scheduler
    env.update(overrides)
    return env


class LiveServer:
    """uvicorn serving ``app`` on a real loopback socket, in a background thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=20)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.app = app

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    @property
    def services(self):
        return self.app.state.services


@contextlib.contextmanager
def live_api(settings, *, wait_ready: bool = True) -> Iterator[LiveServer]:
    from service.api import create_app

    app = create_app(settings)
    with LiveServer(app) as server:
        if wait_ready:
            with server.client() as c:
                wait_for(lambda: c.get("/readyz").status_code == 200, 60, "service never became ready")
        yield server


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A plain HTTP server on loopback serving ``directory``; yields its base URL."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class ServeProcess:
    """`railsight serve` (or `worker`) as a real subprocess, for kill -9 and restart tests."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO,
                                     stdout=self._fh, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(predicate: Callable[[], Any], timeout: float, message: str = "condition not met", interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (after {timeout:.0f} s)")
        time.sleep(interval)


def wait_job(client: httpx.Client, job_id: str, statuses=("succeeded", "failed", "cancelled"), *, key: str = KEY_A,
             timeout: float = 90) -> dict:
    def poll():
        r = client.get(f"/v1/jobs/{job_id}", headers=auth(key))
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body["status"] in statuses else None

    return wait_for(poll, timeout, f"job {job_id} never reached {statuses}", interval=0.1)


def car_scene(path: Path, n_cars: int = 3, *, width: int = 256, height: int = 256) -> Path:
    """A small UTM scene with ``n_cars`` coupled railcars the oracle model finds exactly."""
    img = scenes.blank(width, height)
    scenes.train_of_cars(img, 20, height // 2, n_cars)
    return scenes.write(path, img)


def long_scene(path: Path, n_cars: int = 5) -> Path:
    """A scene that takes a few seconds with the slow model and 64-px tiles (many tiles)."""
    return car_scene(path, n_cars, width=512, height=256)


def two_band_scene(path: Path) -> Path:
    from service.rasters import write_geotiff

    data = np.full((2, 64, 64), 100, dtype=np.uint8)
    return write_geotiff(path, data, transform=scenes.transform_for(scenes.UTM, 0.5), crs=scenes.UTM)


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL to a fresh schema on the PostgreSQL server of the development and CI machines, dropped
    afterwards; the test is skipped, saying why, when no server answers."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # no server answering
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at {PG_URL} ({type(exc).__name__}); PostgreSQL tests skipped")
    schema = f"railsight_test_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def scheduler():
    """Address of the job-service tests' own multi-process Dask cluster (two worker processes),
    shared by every API, runner and `railsight worker` of the session. Its own, not the pipeline
    tests' cluster: the service tests load other models on it (the slow one), which those tests
    would see in their per-worker load counts."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
                      silence_logs=40) as cluster:
        yield cluster.scheduler_address
