"""``python -m bench.service_bench``: the job service against its targets, as one JSON line.

Each figure is measured next to a baseline taken in the same run, on the same machine, and
reported as a ratio, so a slow or busy machine shows up in both:

- ``submission``: ``POST /v1/jobs`` (JSON naming a 512 x 512 GeoTIFF under a data root; the service
  checks the path, opens the raster to validate it, and commits the job to SQLite) from
  ``--clients`` concurrent keep-alive clients on loopback; latency percentiles in ms. Baseline:
  ``GET /healthz`` under the same load (the HTTP stack and this client, no work).
  Target: p99 <= 50 ms with 50 clients.
- ``status``: ``GET /v1/jobs/{id}`` (authenticated, one store read) requests per second from the
  same clients; baseline ``GET /healthz`` req/s. Target: >= 500 req/s.
- ``job``: a 512 x 512 scene job from submission to the client seeing ``succeeded`` (polling every
  10 ms), on the embedded runner and a LocalCluster; baseline: ``detect_scene`` + ``write_geojson``
  called directly on an equally sized LocalCluster (what `railsight detect` does, without starting
  the cluster). ``overhead_s`` = job - direct; ``overhead_excl_model_s`` = job - model time the
  pipeline reported. Target: the job finishes within 1 s of submission, not counting model time.

Phases A (submission, status) run against `railsight serve --no-runner` (the API alone, as on
Kubernetes), so jobs being run do not compete with the requests being measured; phase B runs
`railsight serve` with its embedded runner. The load generator is a minimal asyncio HTTP/1.1 client
(httpx would cost more CPU than the server on a small machine). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

KEY = "bench-key-0123456789abcdef"
WARM_UP = 2
REPO = Path(__file__).resolve().parent.parent


# --- a minimal keep-alive HTTP/1.1 client --------------------------------------------------------
class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
        assert self.reader and self.writer
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self.writer:
            self.writer.close()


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


async def _load(port: int, clients: int, make_request, *, per_client: int | None = None,
                seconds: float | None = None, interval: float | None = None) -> tuple[list[float], float, dict[int, int]]:
    """``clients`` concurrent keep-alive connections. Each sends ``per_client`` requests or keeps
    going for ``seconds``: back to back (closed loop), or one every ``interval`` seconds from a
    random phase (paced, like clients that each submit now and then). Returns latencies, wall time
    and counts by status."""
    import random

    conns = [Conn("127.0.0.1", port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(0)
    start = time.perf_counter()
    deadline = start + seconds if seconds else None

    async def client(i: int, conn: Conn) -> None:
        n = 0
        next_at = start + (rng.uniform(0, interval) if interval else 0.0)
        while (per_client is None or n < per_client) and (deadline is None or time.perf_counter() < deadline):
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            method, path, body, headers = make_request(i, n)
            t0 = time.perf_counter()
            status, _ = await conn.request(method, path, body, headers)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            n += 1

    await asyncio.gather(*(client(i, c) for i, c in enumerate(conns)))
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    return latencies, wall, statuses


def load(port: int, clients: int, make_request, **kw):
    return asyncio.run(_load(port, clients, make_request, **kw))


# --- the service under test -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CPU:
    """CPU seconds (user + system) of the server process: what a phase cost the service itself,
    whatever else the machine was doing."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(env: dict[str, str], *extra: str):
    port = free_port()
    with tempfile.NamedTemporaryFile("w+b", prefix="railsight-bench-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", *extra],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(port, proc, log.name)
            yield port, CPU(proc.pid)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait_ready(port: int, proc: subprocess.Popen, log: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"railsight serve exited: {Path(log).read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("railsight serve did not become ready")


def write_scene(path: Path, size: int) -> Path:
    """A ``size`` x ``size`` crop of the sample yard (UTM 52N, 0.5 m)."""
    from affine import Affine

    from service.rasters import write_geotiff
    from service.sample import ORIGIN, PIXEL_SIZE_M, render_sample

    image = render_sample(seed=1, width=max(size, 1024), height=max(size, 768))[:, :size, :size].copy()
    transform = Affine(PIXEL_SIZE_M, 0, ORIGIN[0], 0, -PIXEL_SIZE_M, ORIGIN[1])
    return write_geotiff(path, image, transform=transform, crs="EPSG:32652")


def service_env(state: Path, data: Path, spec, device: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAILSIGHT_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        RAILSIGHT_API_KEYS=KEY,
        RAILSIGHT_STATE_DIR=str(state),
        RAILSIGHT_DATA_ROOTS=str(data),
        RAILSIGHT_DEVICE=device,
        RAILSIGHT_QUEUE_LIMIT="1000000",
    )
    if spec.factory:
        env["RAILSIGHT_MODEL_FACTORY"] = spec.factory
    if spec.weights:
        env["RAILSIGHT_WEIGHTS"] = str(spec.weights)
    env.update(extra)
    return env


# --- phases ------------------------------------------------------------------------------------
def _measure(port: int, cpu: CPU, clients: int, make_request, **kw) -> dict[str, Any]:
    cpu0 = cpu.seconds()
    lat, wall, statuses = load(port, clients, make_request, **kw)
    used = cpu.seconds() - cpu0
    return {
        **percentiles(lat),
        "req_per_s": round(len(lat) / wall, 1),
        "server_cpu_ms_per_req": round(used / len(lat) * 1000, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def phase_api(env: dict[str, str], scene: Path, clients: int, per_client: int, seconds: float,
              pace_s: float) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = json.dumps({"scene": str(scene), "site_id": "bench"}).encode()
    post_headers = {**auth, "Content-Type": "application/json"}
    health = ("GET", "/healthz", b"", {})
    submit = ("POST", "/v1/jobs", body, post_headers)
    with serve(env, "--no-runner") as (port, cpu):
        load(port, clients, lambda i, n: health, per_client=5)  # warm-up
        load(port, clients, lambda i, n: submit, per_client=1)
        base = _measure(port, cpu, clients, lambda i, n: health, per_client=per_client)
        burst = _measure(port, cpu, clients, lambda i, n: submit, per_client=per_client)
        paced_base = _measure(port, cpu, clients, lambda i, n: health, seconds=seconds, interval=pace_s)
        paced = _measure(port, cpu, clients, lambda i, n: submit, seconds=seconds, interval=pace_s)
        import httpx

        job_id = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", content=body, headers=post_headers).json()["id"]
        get_job = ("GET", f"/v1/jobs/{job_id}", b"", auth)
        hz = _measure(port, cpu, clients, lambda i, n: health, seconds=seconds)
        status = _measure(port, cpu, clients, lambda i, n: get_job, seconds=seconds)
    return {
        "submission": {
            "target": f"p99 <= 50 ms with {clients} concurrent clients",
            "paced": {
                "what": f"{clients} clients, each submitting once every {pace_s:g} s for {seconds:g} s",
                **paced,
                "baseline_healthz": paced_base,
                "p99_over_baseline": round(paced["p99_ms"] / paced_base["p99_ms"], 2),
            },
            "saturated": {
                "what": f"{clients} clients submitting back to back, {per_client} each",
                **burst,
                "baseline_healthz": base,
                "p99_over_baseline": round(burst["p99_ms"] / base["p99_ms"], 2),
                "req_per_s_over_baseline": round(burst["req_per_s"] / base["req_per_s"], 3),
            },
        },
        "status": {
            "target": ">= 500 req/s",
            **status,
            "baseline_healthz": hz,
            "req_per_s_over_baseline": round(status["req_per_s"] / hz["req_per_s"], 3),
            "server_capacity_req_per_s_per_core": round(1000.0 / status["server_cpu_ms_per_req"], 1),
        },
    }


def phase_job(env: dict[str, str], scene: Path, jobs: int, settings) -> dict[str, Any]:
    import httpx

    auth = {"Authorization": f"Bearer {KEY}"}
    runs = []
    with serve(env) as (port, _), httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as http:
        for i in range(jobs + WARM_UP):  # warm-ups: the first model call on each worker is slower
            t0 = time.perf_counter()
            job = http.post("/v1/jobs", json={"scene": str(scene)}).json()
            submitted = time.perf_counter() - t0
            while True:
                body = http.get(f"/v1/jobs/{job['id']}").json()
                if body["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.01)
            e2e = time.perf_counter() - t0
            if body["status"] != "succeeded":
                raise RuntimeError(f"bench job failed: {body['error']}")
            timings = body["summary"]["timings"]
            if i >= WARM_UP:
                runs.append({"e2e_s": e2e, "submit_s": submitted, "pipeline_s": timings["total_s"],
                             "model_s": timings["model_s"], "tiles": body["summary"]["tiles"],
                             "queued_s": body["timings"]["queued_s"]})
    direct = run_direct(scene, jobs, settings)
    e2e = statistics.median(r["e2e_s"] for r in runs)
    model = statistics.median(r["model_s"] for r in runs)
    direct_s = statistics.median(direct)
    return {
        "scene_px": [int(scene_size(scene))] * 2,
        "jobs": jobs,
        "tiles": runs[0]["tiles"],
        "job_e2e_s": round(e2e, 3),
        "job_e2e_all_s": [round(r["e2e_s"], 3) for r in runs],
        "submit_s": round(statistics.median(r["submit_s"] for r in runs), 4),
        "queued_s": round(statistics.median(r["queued_s"] or 0.0 for r in runs), 4),
        "pipeline_s": round(statistics.median(r["pipeline_s"] for r in runs), 3),
        "model_s": round(model, 3),
        "baseline_direct_s": round(direct_s, 3),
        "baseline_direct_all_s": [round(d, 3) for d in direct],
        "overhead_s": round(e2e - direct_s, 3),
        "e2e_over_direct": round(e2e / direct_s, 3),
        "overhead_excl_model_s": round(e2e - model, 3),
        "target_overhead_excl_model_s": 1.0,
    }


def scene_size(path: Path) -> int:
    from service.rasters import inspect_scene

    return inspect_scene(path, model_pixel_size_m=0.5).width


def run_direct(scene: Path, jobs: int, settings) -> list[float]:
    """The baseline: the pipeline called directly, as `railsight detect` does once its cluster is up."""
    from service.cluster import dask_client
    from service.geojson import write_geojson
    from service.pipeline import detect_scene, model_spec_from_settings, options_from_settings

    out = scene.parent / "direct.geojson"
    spec = model_spec_from_settings(settings)
    options = options_from_settings(settings)
    times = []
    with dask_client(settings) as client:
        for i in range(jobs + WARM_UP):
            t0 = time.perf_counter()
            write_geojson(detect_scene(scene, options, spec, client), out)
            if i >= WARM_UP:
                times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.service_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--per-client", type=int, default=20, help="submissions per client (default 20)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of paced and of status load (default 5)")
    p.add_argument("--pace", type=float, default=1.0, help="paced clients submit once every PACE s (default 1)")
    p.add_argument("--scene", type=int, default=512, help="scene side in px (default 512)")
    p.add_argument("--jobs", type=int, default=5, help="timed scene jobs, after one warm-up (default 5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--factory", default=None, help="model factory (default: shipped weights, else untrained UNet)")
    p.add_argument("--skip-job", action="store_true", help="only the API phases")
    args = p.parse_args(argv)

    from bench.model import choose_spec
    from service.settings import PipelineSettings

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    spec, model_info = choose_spec(None, args.factory)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    line: dict[str, Any] = {"bench": "service", "device": device, "model": model_info, "clients": args.clients}
    try:
        from bench.monitor import machine

        line["machine"] = machine(device)
    except Exception as exc:  # psutil is in the bench extra
        line["machine"] = {"cores": os.cpu_count(), "note": f"bench.monitor unavailable: {exc}"}
    with tempfile.TemporaryDirectory(prefix="railsight-service-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        scene = write_scene(data / "scene.tif", args.scene)
        env_a = service_env(root / "state-api", data, spec, device)
        line.update(phase_api(env_a, scene, args.clients, args.per_client, args.seconds, args.pace))
        if not args.skip_job:
            env_b = service_env(root / "state-job", data, spec, device)
            settings = PipelineSettings(device=device, model_factory=spec.factory, weights=spec.weights)
            line["job"] = phase_job(env_b, scene, args.jobs, settings)
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
