"""The runner: real `railsight worker` and `railsight serve` processes on the session's Dask cluster,
killed with SIGKILL mid-job and restarted; nothing is lost and nothing is counted twice."""

from __future__ import annotations

import json

import pytest

from service.jobs.metrics import Metrics
from service.jobs.results import ResultStore
from service.jobs.runner import Runner
from service.jobs.store import JobStore
from service.jobs.submission import Submission, Submitter
from tests.jobservice import (
    SLOW,
    ServeProcess,
    auth,
    car_scene,
    free_port,
    live_api,
    long_scene,
    postgres_schema,
    scheduler,  # noqa: F401  (fixture)
    service_env,
    service_settings,
    wait_for,
    wait_job,
)

SLOW_ENV = {"RAILSIGHT_MODEL_FACTORY": SLOW, "RAILSIGHT_TILE": "64", "RAILSIGHT_BATCH_SIZE": "1",
            "RAILSIGHT_MAX_CONCURRENT_SCENES": "1"}


def _progress(http, job_id) -> int:
    return http.get(f"/v1/jobs/{job_id}", headers=auth()).json()["progress"]["tiles_done"]


@pytest.mark.slow
def test_killed_worker_job_is_claimed_again_and_succeeds_once(tmp_path, scheduler):  # noqa: F811
    n_cars = 5
    scene = long_scene(tmp_path / "data" / "yard.tif", n_cars)
    settings = service_settings(tmp_path, scheduler=scheduler, embedded_runner=False)
    env = service_env(tmp_path, scheduler=scheduler, **SLOW_ENV)
    with live_api(settings) as api, api.client() as http:
        first = ServeProcess(["worker"], env, tmp_path / "worker1.log")
        try:
            job_id = http.post("/v1/jobs", json={"scene": str(scene)}, headers=auth()).json()["id"]
            wait_for(lambda: _progress(http, job_id) > 0, 90, "the first worker never made progress")
            first.kill9()
        finally:
            first.stop()
        running = http.get(f"/v1/jobs/{job_id}", headers=auth()).json()
        assert running["status"] == "running" and running["attempts"] == 1
        second = ServeProcess(["worker"], env, tmp_path / "worker2.log")
        try:
            done = wait_job(http, job_id, timeout=120)
        finally:
            second.stop()
        assert done["status"] == "succeeded", (done, second.output()[-3000:])
        assert done["attempts"] == 2
        assert done["feature_count"] == n_cars == done["counts"]["railcar"]
        fc = http.get(f"/v1/jobs/{job_id}/result", headers=auth()).json()
        assert sum(f["properties"]["class"] == "railcar" for f in fc["features"]) == n_cars
        leftovers = [p.name for p in (settings.results_path / job_id).iterdir()]
        assert leftovers == ["detections.geojson"]  # no temporary files, no second copy


@pytest.mark.slow
def test_restarted_api_loses_no_queued_job(tmp_path, scheduler):  # noqa: F811
    scene = long_scene(tmp_path / "data" / "yard.tif", 2)
    quick = car_scene(tmp_path / "data" / "quick.tif", 1, width=128, height=128)
    port = free_port()
    env = service_env(tmp_path, scheduler=scheduler, **SLOW_ENV)
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    import httpx

    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        try:
            return http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    server = ServeProcess(args, env, tmp_path / "serve1.log")
    try:
        wait_for(up, 90, "serve did not become ready")
        ids = [http.post("/v1/jobs", json={"scene": str(scene)}, headers=auth()).json()["id"]]
        ids += [http.post("/v1/jobs", json={"scene": str(quick)}, headers=auth()).json()["id"] for _ in range(3)]
        wait_for(lambda: _progress(http, ids[0]) > 0, 90, "the first job never started")
        server.kill9()
    finally:
        server.stop()
    server = ServeProcess(args, env, tmp_path / "serve2.log")
    try:
        wait_for(up, 90, "serve did not come back")
        jobs = [wait_job(http, job_id, timeout=120) for job_id in ids]
    finally:
        server.stop()
        http.close()
    assert [j["status"] for j in jobs] == ["succeeded"] * 4, server.output()[-3000:]
    assert [j["attempts"] for j in jobs] == [2, 1, 1, 1]
    assert jobs[0]["counts"]["railcar"] == 2 and all(j["counts"]["railcar"] == 1 for j in jobs[1:])
    assert "Traceback" not in server.output()


def test_stopping_a_runner_hands_its_job_back_without_using_an_attempt(tmp_path, scheduler):  # noqa: F811
    settings = service_settings(tmp_path, scheduler=scheduler, model_factory=SLOW, tile=64, batch_size=1,
                                max_concurrent_scenes=1, embedded_runner=False)
    scene = long_scene(tmp_path / "data" / "yard.tif", 3)
    store = JobStore.open(settings.store_url)
    submitter = Submitter(settings, store, pixel_size=lambda: 0.5)
    job, _ = submitter.submit("owner", Submission(scene=str(scene)))
    runner = Runner(settings, store, ResultStore(settings.results_path), Metrics())
    runner.start()
    try:
        wait_for(lambda: store.get(job.id).tiles_done > 0, 60, "the job never made progress")
    finally:
        runner.stop()
    back = store.get(job.id)
    assert back.status == "queued" and back.attempts == 0 and back.lease_token is None
    # Another runner picks it up and finishes it.
    other = Runner(settings, store, ResultStore(settings.results_path), Metrics())
    other.start()
    try:
        wait_for(lambda: store.get(job.id).status == "succeeded", 90, "the job did not finish")
    finally:
        other.stop()
    done = store.get(job.id)
    assert done.attempts == 1 and done.feature_count == 3
    fc = json.loads((settings.results_path / done.result_path).read_text())
    assert fc["summary"]["counts"]["railcar"] == 3
    store.close()


def test_queue_full_is_429_with_retry_after(tmp_path, scheduler):  # noqa: F811
    settings = service_settings(tmp_path, scheduler=scheduler, embedded_runner=False, queue_limit=2,
                                retry_after_seconds=11)
    scene = car_scene(tmp_path / "data" / "a.tif", 1)
    with live_api(settings) as api, api.client() as http:
        for _ in range(2):
            assert http.post("/v1/jobs", json={"scene": str(scene)}, headers=auth()).status_code == 202
        r = http.post("/v1/jobs", json={"scene": str(scene)}, headers=auth())
        assert r.status_code == 429 and r.headers["retry-after"] == "11"
        assert r.json()["error"]["code"] == "queue_full"
        ready = http.get("/readyz").json()
        assert ready["ready"] and "external" in ready["checks"]["runner"]["mode"]
        assert "railsight_queue_depth 2.0" in http.get("/metrics").text


def test_jobs_run_on_a_postgresql_store(tmp_path, scheduler):  # noqa: F811
    scene = car_scene(tmp_path / "data" / "pg.tif", 4)
    with postgres_schema() as url:
        settings = service_settings(tmp_path, scheduler=scheduler, database_url=url, poll_seconds=30.0)
        with live_api(settings) as api, api.client() as http:
            ids = [http.post("/v1/jobs", json={"scene": str(scene)}, headers=auth()).json()["id"] for _ in range(3)]
            # poll_seconds=30: only LISTEN/NOTIFY (and the API's own wake-up) can start these quickly
            jobs = [wait_job(http, job_id, timeout=60) for job_id in ids]
        assert [j["counts"]["railcar"] for j in jobs] == [4, 4, 4]
        assert all(j["timings"]["queued_s"] < 10 for j in jobs)


def test_a_ready_runner_has_warmed_the_workers_for_a_default_job(tmp_path, scheduler):  # noqa: F811
    """/readyz says ready only once every worker ran a model call of the shape a job with the
    service's default options makes, so the first job does not pay for that call's set-up."""
    from distributed import Client

    from service.pipeline import batch_size, call_shape, model_meta, model_spec_from_settings, options_from_settings

    settings = service_settings(tmp_path, scheduler=scheduler, batch_size=3)
    spec = model_spec_from_settings(settings)
    options = options_from_settings(settings)
    meta = model_meta(spec)
    calls = call_shape(options, meta, batch_size(options, meta, "cpu"))
    assert calls.batch == 3

    def warm_at(shape):
        from service import model_plugin

        return model_plugin.is_warm(spec, "cpu", None, shape)

    with live_api(settings) as api, api.client() as http, Client(scheduler) as dask:
        assert http.get("/readyz").json()["ready"]
        warm = dask.run(warm_at, calls)
        assert warm and all(warm.values())
