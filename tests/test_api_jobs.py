"""The job API over real HTTP: uvicorn on loopback, the embedded runner on the session's
multi-process Dask cluster, a SQLite store, GeoTIFFs written on the fly."""

from __future__ import annotations

import json
import os

import pytest

from service.view_geometry import View, imd_text
from tests.jobservice import (
    KEY_A,
    KEY_B,
    SLOW,
    auth,
    car_scene,
    file_server,
    live_api,
    long_scene,
    scheduler,  # noqa: F401  (fixture)
    service_settings,
    wait_for,
    wait_job,
)


@pytest.fixture(scope="module")
def api(tmp_path_factory, scheduler):  # noqa: F811
    tmp = tmp_path_factory.mktemp("api")
    settings = service_settings(tmp, scheduler=scheduler, max_upload_bytes=1024 * 1024, max_scene_pixels=200_000)
    with live_api(settings) as server:
        server.data = tmp / "data"
        yield server


@pytest.fixture()
def http(api):
    with api.client() as c:
        yield c


def one_slow_scene_at_a_time(tmp_path, scheduler):  # noqa: F811
    """A service whose jobs take seconds (the slow model on 64 px tiles) and run one scene at a time,
    so a second job is still queued while the first runs."""
    return service_settings(tmp_path, scheduler=scheduler, model_factory=SLOW, tile=64, batch_size=1,
                            max_concurrent_scenes=1)


def submit(http, scene, key=KEY_A, **body):
    return http.post("/v1/jobs", json={"scene": str(scene), **body}, headers=auth(key))


def test_submit_poll_and_stream_the_result(api, http):
    scene = car_scene(api.data / "three.tif", 3)
    r = submit(http, scene, site_id="tumangang", acquired_at="2023-10-05T02:14:00Z",
               options={"min_confidence": 0.1, "tta": 2})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running")
    assert r.headers["location"] == job["url"] and job["url"].endswith(f"/v1/jobs/{job['id']}")
    done = wait_job(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["counts"]["railcar"] == 3 and done["feature_count"] == 3
    assert done["progress"]["tiles_done"] == done["progress"]["tiles_total"] >= 1
    assert done["site_id"] == "tumangang" and done["acquired_at"] == "2023-10-05T02:14:00Z"
    assert done["timings"]["total_s"] >= done["timings"]["run_s"] > 0
    result = http.get(f"/v1/jobs/{job['id']}/result", headers=auth())
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/geo+json"
    fc = result.json()
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    assert fc["summary"]["tta_views"] == 2
    cars = [f for f in fc["features"] if f["properties"]["class"] == "railcar"]
    assert len(cars) == 3
    lon, lat = cars[0]["geometry"]["coordinates"][0][0]
    assert 130 < lon < 131 and 42 < lat < 43  # WGS 84, around Tumangang
    assert done["links"]["result"].endswith("/result")


def test_upload_a_scene_as_multipart(api, http):
    scene = car_scene(api.data.parent / "upload-me.tif", 2)
    with open(scene, "rb") as fh:
        r = http.post("/v1/jobs", headers=auth(), files={"scene": ("upload-me.tif", fh, "image/tiff")},
                      data={"site_id": "khasan", "options": json.dumps({"classes": ["railcar"]})})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["source"] == "upload" and job["scene"] == "upload-me.tif"
    done = wait_job(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["counts"] == {"railcar": 2}
    assert not any(api.services.settings.uploads_path.iterdir())  # the upload is gone once the job is done


def test_an_upload_brings_its_view_as_its_metadata(api, http):
    """An uploaded scene has no .IMD or JSON beside it to read, so its metadata comes as field 'view':
    the job runs with that view. One that gives no view, or a view given twice, is refused."""
    scene = car_scene(api.data.parent / "upload-leaned.tif", 2)
    imd = imd_text(View(30.0, 180.0))

    def upload(view, options=None):
        with open(scene, "rb") as fh:
            data = {"options": json.dumps(options)} if options else {}
            return http.post("/v1/jobs", headers=auth(), data=data,
                             files={"scene": ("upload-leaned.tif", fh, "image/tiff"), "view": ("x.IMD", view, "text/plain")})

    r = upload(imd)
    assert r.status_code == 202, r.text
    assert (r.json()["options"]["off_nadir_deg"], r.json()["options"]["satellite_azimuth_deg"]) == (30.0, 180.0)
    done = wait_job(http, r.json()["id"])
    assert done["status"] == "succeeded" and done["counts"]["railcar"] == 2, done
    fc = http.get(f"/v1/jobs/{done['id']}/result", headers=auth()).json()
    widths = [f["properties"]["width_m"] for f in fc["features"] if f["properties"]["class"] == "railcar"]
    assert fc["summary"]["view"]["off_nadir_deg"] == 30.0 and all(5.0 <= w <= 5.6 for w in widths), widths

    # A STAC item (or Planet's metadata JSON) does as well.
    r = upload(json.dumps({"type": "Feature", "properties": {"view:off_nadir": 12.0, "view:azimuth": 95.0}}))
    assert r.status_code == 202, r.text
    assert (r.json()["options"]["off_nadir_deg"], r.json()["options"]["satellite_azimuth_deg"]) == (12.0, 95.0)
    assert wait_job(http, r.json()["id"])["status"] == "succeeded"

    r = upload("BEGIN_GROUP = IMAGE_1\n\tmeanSatAz = 180.0;\nEND_GROUP = IMAGE_1\n")
    assert r.status_code == 400 and "meanOffNadirViewAngle" in r.json()["error"]["message"], r.text
    r = upload(json.dumps({"type": "Feature", "properties": {"view:azimuth": 95.0}}))
    assert r.status_code == 400 and "view:off_nadir" in r.json()["error"]["message"], r.text
    r = upload(imd, {"off_nadir_deg": 10, "satellite_azimuth_deg": 0})
    assert r.status_code == 400 and "once" in r.json()["error"]["message"], r.text
    assert not any(api.services.settings.uploads_path.iterdir())


def test_a_remote_scene_brings_its_view_from_the_metadata_beside_it(tmp_path, scheduler, monkeypatch):  # noqa: F811
    """An http(s) scene is downloaded by the runner, and so is the .IMD beside its URL, or the STAC
    item named after its id: the job runs with that view, as a local scene with its metadata does,
    and the downloads are gone afterwards."""
    from service.jobs import sources

    real = sources.blocked_address  # loopback is refused, rightly: let the test's own server through
    monkeypatch.setattr(sources, "blocked_address",
                        lambda a, allow_private: None if a == "127.0.0.1" else real(a, allow_private=allow_private))
    www = tmp_path / "www"
    www.mkdir()
    car_scene(www / "leaned.tif", 2)
    (www / "leaned.IMD").write_text(imd_text(View(30.0, 180.0)))
    car_scene(www / "straight.tif", 2)
    car_scene(www / "1030010-visual.tif", 2)  # a STAC item named after the scene's id beside it
    (www / "1030010.json").write_text(json.dumps(
        {"type": "Feature", "id": "1030010", "properties": {"view:off_nadir": 20.0, "view:azimuth": 90.0}}))
    settings = service_settings(tmp_path / "svc", scheduler=scheduler, allow_remote=True, remote_allow_list="127.0.0.1")
    with file_server(www) as base, live_api(settings) as server, server.client() as http:
        for name, view in (("leaned", {"off_nadir_deg": 30.0, "satellite_azimuth_deg": 180.0}), ("straight", None),
                           ("1030010-visual", {"off_nadir_deg": 20.0, "satellite_azimuth_deg": 90.0})):
            r = http.post("/v1/jobs", headers=auth(), json={"scene": f"{base}/{name}.tif"})
            assert r.status_code == 202, r.text
            done = wait_job(http, r.json()["id"])
            assert done["status"] == "succeeded" and done["counts"]["railcar"] == 2, done
            fc = http.get(f"/v1/jobs/{done['id']}/result", headers=auth()).json()
            got = fc["summary"].get("view")
            assert (got and {k: got[k] for k in view}) == view, got
            if view:
                assert got["source"] == "scene metadata"
        assert not any(settings.downloads_path.iterdir())


def test_idempotency_key_returns_the_same_job(api, http):
    scene = car_scene(api.data / "idem.tif", 1)
    headers = {**auth(), "Idempotency-Key": "retry-me-1"}
    first = http.post("/v1/jobs", json={"scene": str(scene)}, headers=headers)
    again = http.post("/v1/jobs", json={"scene": str(scene)}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = http.post("/v1/jobs", json={"scene": str(scene), "site_id": "elsewhere"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    # The same key from another API key is another job: keys are per owner.
    theirs = http.post("/v1/jobs", json={"scene": str(scene)}, headers={**auth(KEY_B), "Idempotency-Key": "retry-me-1"})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


def test_each_key_sees_only_its_own_jobs(api, http):
    scene = car_scene(api.data / "mine.tif", 1)
    job_id = submit(http, scene, KEY_A).json()["id"]
    for method, path in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
        r = http.request(method, f"/v1/jobs/{job_id}{path}", headers=auth(KEY_B))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "job_not_found"
    listed = http.get("/v1/jobs", headers=auth(KEY_B)).json()["jobs"]
    assert job_id not in {j["id"] for j in listed}
    assert job_id in {j["id"] for j in http.get("/v1/jobs", headers=auth(KEY_A)).json()["jobs"]}


def test_missing_or_wrong_key_is_401(http):
    for headers in ({}, {"Authorization": "Bearer not-a-key-at-all-123"}, {"Authorization": "Basic abc"}):
        r = http.get("/v1/jobs", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"
    r = http.post("/v1/jobs", json={"scene": "x.tif"}, headers={"Authorization": "Bearer wrong-key-000000000"})
    assert r.status_code == 401


def test_paths_outside_the_data_roots_are_refused(api, http, tmp_path):
    outside = car_scene(tmp_path / "outside.tif", 1)
    link = api.data / "sneaky.tif"
    if not link.exists():
        os.symlink(outside, link)
    cases = {
        str(outside): (403, "scene_not_allowed"),
        "/etc/passwd": (403, "scene_not_allowed"),
        str(link): (403, "scene_not_allowed"),  # a symlink inside a root that points outside
        f"{api.data}/../outside.tif": (400, "bad_scene_path"),
        "../outside.tif": (400, "bad_scene_path"),
        "/vsicurl/http://169.254.169.254/latest/meta-data": (400, "bad_scene_path"),
        "file:///etc/passwd": (400, "bad_scene_path"),
        "https://example.com/scene.tif": (403, "scene_not_allowed"),  # remote sources are off
        "ftp://example.com/scene.tif": (400, "bad_scene_path"),
    }
    for scene, (status, code) in cases.items():
        r = submit(http, scene)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (scene, r.text)
    # A relative path is taken inside the roots.
    car_scene(api.data / "relative.tif", 1)
    assert submit(http, "relative.tif").status_code == 202


def test_unusable_rasters_are_422_with_the_reason(api, http):
    from tests.jobservice import two_band_scene
    from tests.scenes import UTM, blank, transform_for, write, write_with_gcps

    (api.data / "notes.tif").write_text("not a raster")
    two_band_scene(api.data / "two-band.tif")
    write(api.data / "no-georef.tif", blank(64, 64), crs=None)
    import numpy as np

    write(api.data / "empty.tif", blank(64, 64), mask=np.zeros((64, 64), bool))
    write_with_gcps(api.data / "bent-gcps.tif", blank(64, 64), transform_for(UTM, 0.5), bend_px=8.0)
    write(api.data / "huge.tif", blank(600, 400))  # over this server's 200,000-pixel limit
    whole = car_scene(api.data.parent / "whole.tif", 2).read_bytes()
    (api.data / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    cases = {
        "missing.tif": "scene_not_found",
        "notes.tif": "not_a_raster",
        "two-band.tif": "too_few_bands",
        "no-georef.tif": "no_georeference",
        "bent-gcps.tif": "needs_warping",
        "empty.tif": "all_nodata",
        "huge.tif": "scene_too_large",
        "truncated.tif": None,  # "not_a_raster" or "unusable_scene", depending on where the cut falls
    }
    for name, code in cases.items():
        r = submit(http, api.data / name)
        assert r.status_code == 422, (name, r.text)
        assert code is None or r.json()["error"]["code"] == code, (name, r.text)
        assert name in r.json()["error"]["message"]
    # An upload that is not a TIFF (a VRT could point anywhere) is refused the same way.
    r = http.post("/v1/jobs", headers=auth(), files={"scene": ("x.vrt", b"<VRTDataset/>", "text/xml")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_raster"
    # An uploaded scene's error names it as the client did, not where the service keeps uploads.
    with open(api.data / "two-band.tif", "rb") as fh:
        r = http.post("/v1/jobs", headers=auth(), files={"scene": ("mine.tif", fh, "image/tiff")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_few_bands", r.text
    message = r.json()["error"]["message"]
    assert "upload 'mine.tif'" in message and str(api.services.settings.uploads_path) not in message, message
    assert not any(api.services.settings.uploads_path.iterdir())


def test_a_picture_runs_at_the_pixel_size_given(api, http):
    """pixel_size_m lets a plain picture (no georeferencing) run at its own scale; a georeferenced
    scene's scale is its own, so giving one there is refused, as is a size of 0."""
    from tests.scenes import blank, train_of_cars, write

    scene = car_scene(api.data / "cars.tif", 3)  # 0.5 m a pixel, in UTM
    pixels = blank(160, 128)
    train_of_cars(pixels, 20, 64, 3)
    write(api.data / "picture.tif", pixels.repeat(2, axis=1).repeat(2, axis=2), crs=None)  # 0.25 m, no CRS
    r = submit(http, api.data / "picture.tif", options={"pixel_size_m": 0.25})
    assert r.status_code == 202, r.text
    done = wait_job(http, r.json()["id"])
    assert done["status"] == "succeeded" and done["counts"]["railcar"] == 3, done
    fc = http.get(f"/v1/jobs/{done['id']}/result", headers=auth()).json()
    assert fc["summary"]["pixel_size_m"] == [0.25, 0.25] and fc["summary"]["crs"] is None

    r = submit(http, scene, options={"pixel_size_m": 0.25})
    assert r.status_code == 422 and r.json()["error"]["code"] == "pixel_size_conflict", r.text
    assert "georeferenced" in r.json()["error"]["message"]
    r = submit(http, api.data / "picture.tif", options={"pixel_size_m": 0})
    assert r.status_code == 400 and "pixel_size_m" in r.text, r.text


def test_a_job_given_its_view_draws_its_railcars_as_wide_as_they_show(api, http):
    """Seen 30 degrees off nadir from the south, a car along x shows its roof 2.3 m north of its foot
    (at a real car's 4 m): the three cars come out that much wider. Half a view is refused."""
    scene = car_scene(api.data / "leaned.tif", 3)
    r = submit(http, scene, options={"off_nadir_deg": 30, "satellite_azimuth_deg": 180})
    assert r.status_code == 202, r.text
    done = wait_job(http, r.json()["id"])
    assert done["status"] == "succeeded" and done["counts"]["railcar"] == 3, done
    assert done["options"]["off_nadir_deg"] == 30
    fc = http.get(f"/v1/jobs/{done['id']}/result", headers=auth()).json()
    assert fc["summary"]["view"] == {"off_nadir_deg": 30.0, "satellite_azimuth_deg": 180.0, "source": "request"}
    widths = [f["properties"]["width_m"] for f in fc["features"] if f["properties"]["class"] == "railcar"]
    assert all(4.6 <= w <= 5.6 for w in widths), widths  # 2.4-3.2 m and the lean

    r = submit(http, scene, options={"off_nadir_deg": 30})
    assert r.status_code == 400 and "satellite_azimuth_deg" in r.json()["error"]["message"], r.text
    r = submit(http, scene, options={"off_nadir_deg": 75, "satellite_azimuth_deg": 10})
    assert r.status_code == 400 and "off_nadir_deg" in r.json()["error"]["message"], r.text


def test_oversized_upload_is_413_and_the_service_stays_healthy(api, http):
    big = b"II*\x00" + os.urandom(1024 * 1024 + 300 * 1024)
    r = http.post("/v1/jobs", headers=auth(), files={"scene": ("big.tif", big, "image/tiff")})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"

    # Without a Content-Length (chunked), the limit is enforced while reading.
    def chunks():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="scene"; filename="big.tif"\r\n\r\n'
        for _ in range(20):
            yield os.urandom(128 * 1024)
        yield b"\r\n--xyz--\r\n"

    r = http.post("/v1/jobs", headers={**auth(), "Content-Type": "multipart/form-data; boundary=xyz"}, content=chunks())
    assert r.status_code == 413, r.text
    assert http.get("/healthz").status_code == 200
    assert not any(api.services.settings.uploads_path.iterdir())


def test_request_errors_are_json(http):
    r = http.post("/v1/jobs", json={"scene": "a.tif", "options": {"classes": ["locomotive"]}}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert "classes" in r.json()["error"]["message"]
    r = http.post("/v1/jobs", json={"scene": "a.tif", "options": {"tta": 3}}, headers=auth())
    assert r.status_code == 400 and "tta" in r.json()["error"]["message"]
    r = http.post("/v1/jobs", json={"scene": "a.tif", "color": "red"}, headers=auth())
    assert r.status_code == 400
    r = http.post("/v1/jobs", content=b"{not json", headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = http.post("/v1/jobs", content=b"scene=a.tif", headers={**auth(), "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = http.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = http.put("/v1/jobs", headers=auth())
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = http.get("/v1/jobs", params={"status": "sleeping"}, headers=auth())
    assert r.status_code == 400
    r = http.get("/v1/jobs", params={"limit": 0}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = http.get("/v1/jobs", params={"cursor": "!!"}, headers=auth())
    assert r.status_code == 400


def test_list_is_paged_and_filtered(api, http):
    scene = car_scene(api.data / "list.tif", 1)
    ids = {submit(http, scene, KEY_B).json()["id"] for _ in range(5)}
    for job_id in ids:
        wait_job(http, job_id, key=KEY_B)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/jobs", params=params, headers=auth(KEY_B)).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    succeeded = http.get("/v1/jobs", params={"status": "succeeded"}, headers=auth(KEY_B)).json()["jobs"]
    assert {j["status"] for j in succeeded} == {"succeeded"}
    none = http.get("/v1/jobs", params={"status": "queued,running"}, headers=auth(KEY_B)).json()["jobs"]
    assert none == []
    site = submit(http, scene, KEY_B, site_id="khasan").json()["id"]
    by_site = http.get("/v1/jobs", params={"site_id": "khasan"}, headers=auth(KEY_B)).json()["jobs"]
    assert [j["id"] for j in by_site] == [site]


def test_result_of_an_unfinished_or_failed_job_is_409(tmp_path, scheduler):  # noqa: F811
    # One scene at a time, behind a slow job: the doomed job is still queued when its scene goes, so it
    # fails when its turn comes, every time (it used to race a fast runner and sometimes skip).
    settings = one_slow_scene_at_a_time(tmp_path, scheduler)
    blocker_scene = long_scene(tmp_path / "data" / "long.tif")
    scene = car_scene(tmp_path / "data" / "doomed.tif", 1)
    with live_api(settings) as server, server.client() as http:
        blocker = submit(http, blocker_scene).json()["id"]
        job_id = submit(http, scene).json()["id"]
        wait_for(lambda: http.get(f"/v1/jobs/{blocker}", headers=auth()).json()["status"] == "running", 60,
                 "the first job never started")
        assert http.get(f"/v1/jobs/{job_id}", headers=auth()).json()["status"] == "queued"
        r = http.get(f"/v1/jobs/{job_id}/result", headers=auth())
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_conflict"  # unfinished
        scene.unlink()  # gone before the runner gets to it: the job fails with the reason
        assert http.delete(f"/v1/jobs/{blocker}", headers=auth()).status_code == 202
        done = wait_job(http, job_id, timeout=60)
        assert done["status"] == "failed" and done["error"]["code"] == "scene_not_found", done
        r = http.get(f"/v1/jobs/{job_id}/result", headers=auth())
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_conflict"  # failed


def test_health_readiness_and_metrics(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["store"] == "ok" and checks["cluster"]["workers"] >= 1 and checks["runner"]["model_loaded_on_workers"]
    text = http.get("/metrics").text
    for name in ("railsight_jobs{", "railsight_queue_depth", "railsight_tiles_processed_total",
                 "railsight_http_request_duration_seconds_bucket", "railsight_job_run_seconds"):
        assert name in text, name
    assert 'railsight_jobs{status="succeeded"}' in text
    assert 'route="/v1/jobs/{job_id}"' in text  # latencies by route template, not by job id
    docs = http.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}/result" in docs["paths"]
    assert docs["components"]["securitySchemes"]["APIKey"]["scheme"] == "bearer"  # /docs can authorize


def test_cancel_a_running_job_stops_it(tmp_path, scheduler):  # noqa: F811
    settings = one_slow_scene_at_a_time(tmp_path, scheduler)
    scene = long_scene(tmp_path / "data" / "long.tif")
    with live_api(settings) as server, server.client() as http:
        job_id = submit(http, scene).json()["id"]
        queued_id = submit(http, scene).json()["id"]
        wait_for(lambda: http.get(f"/v1/jobs/{job_id}", headers=auth()).json()["progress"]["tiles_done"] > 0, 60,
                 "the job never made progress")
        # The second job waits behind the first (one scene at a time): cancelling it is immediate.
        r = http.delete(f"/v1/jobs/{queued_id}", headers=auth())
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = http.delete(f"/v1/jobs/{job_id}", headers=auth())
        assert r.status_code == 202 and r.json()["cancel_requested"]
        done = wait_job(http, job_id, timeout=30)
        assert done["status"] == "cancelled", done
        # Its Dask work stopped too: nothing left running or waiting on the cluster.
        from distributed import Client

        with Client(scheduler, timeout="10s") as dask:
            wait_for(lambda: not any(dask.processing().values()), 20, "Dask tasks still running after cancel")
        assert done["progress"]["tiles_done"] < done["progress"]["tiles_total"]
        assert http.delete(f"/v1/jobs/{job_id}", headers=auth()).status_code == 409
        assert http.get(f"/v1/jobs/{queued_id}", headers=auth()).json()["started_at"] is None


def test_a_store_outage_is_503_not_a_crash(api, http, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(api.services.store, "get", down)
    r = http.get("/v1/jobs/0123456789abcdef0123456789abcdef", headers=auth())
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert r.headers["retry-after"]
