"""Keys and where scenes may come from: settings that refuse unsafe defaults, data-root checks,
the remote allow-list and blocked addresses, and the runner's own download of remote scenes (and
of the .IMD or STAC item beside one, which gives its view)."""

from __future__ import annotations

import http.server
import json
import os
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine

from service.jobs import sources
from service.jobs.errors import BadScenePath, SceneNotAllowed, TooLarge
from service.jobs.sources import blocked_address, check_local, check_remote, fetch_remote, fetch_view_sidecar, parse_scene
from service.rasters import inspect_scene
from service.service_settings import ConfigError, ServiceSettings, key_owner
from service.view_geometry import View, imd_text
from tests.test_view_geometry import dimap, maxar_xml


def settings(tmp_path, **kw) -> ServiceSettings:
    return ServiceSettings(state_dir=tmp_path / "state", **kw)


def test_no_keys_outside_dev_mode_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="no API keys"):
        settings(tmp_path).resolve_api_keys()
    with pytest.raises(ConfigError, match="at least 16"):
        settings(tmp_path, api_keys="short").resolve_api_keys()


def test_dev_mode_makes_one_private_key_per_state_dir(tmp_path):
    s = settings(tmp_path, dev_mode=True)
    keys, made = s.resolve_api_keys()
    assert made and len(keys) == 1 and len(keys[0]) >= 16
    assert s.resolve_api_keys()[0] == keys  # the same key on the next start
    assert oct((tmp_path / "state" / "dev-api-key").stat().st_mode & 0o777) == "0o600"
    # Configured keys win, even in dev mode.
    assert settings(tmp_path, dev_mode=True, api_keys="k" * 20).resolve_api_keys() == (["k" * 20], False)


def test_keys_from_env_and_secrets_file(tmp_path, monkeypatch):
    secret = tmp_path / "keys"
    secret.write_text("# analysts\nfile-key-0123456789abcdef\n\n")
    monkeypatch.setenv("RAILSIGHT_API_KEYS", "env-key-0123456789abcdef, other-key-0123456789ab")
    monkeypatch.setenv("RAILSIGHT_API_KEYS_FILE", str(secret))
    monkeypatch.setenv("RAILSIGHT_DATA_ROOTS", f"{tmp_path}/a,{tmp_path}/b")
    s = ServiceSettings()
    assert s.resolve_api_keys()[0] == ["env-key-0123456789abcdef", "other-key-0123456789ab", "file-key-0123456789abcdef"]
    assert [p.name for p in s.data_roots] == ["a", "b"]
    assert key_owner("x") != "x" and len(key_owner("x")) == 64


def test_data_root_checks(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.tif").write_bytes(b"x")
    outside = tmp_path / "secret.tif"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "escape.tif")
    os.symlink(root / "sub", root / "inner")
    roots = [root.resolve()]
    assert check_local(str(root / "sub" / "a.tif"), roots) == (root / "sub" / "a.tif").resolve()
    assert check_local("sub/a.tif", roots) == (root / "sub" / "a.tif").resolve()
    assert check_local(str(root / "inner" / "a.tif"), roots) == (root / "sub" / "a.tif").resolve()  # link inside
    for bad in (str(outside), str(root / "escape.tif"), "/etc/passwd"):
        with pytest.raises(SceneNotAllowed):
            check_local(bad, roots)
    for bad in (f"{root}/sub/../sub/a.tif", "../secret.tif", "/vsizip/x.zip/a.tif", "file:///etc/passwd"):
        with pytest.raises(BadScenePath):
            check_local(bad, roots)
    with pytest.raises(BadScenePath):
        parse_scene("a\x00b.tif", ServiceSettings())


def test_remote_sources_are_off_by_default_and_follow_the_allow_list(tmp_path):
    off = settings(tmp_path)
    with pytest.raises(SceneNotAllowed, match="turned off"):
        check_remote("https://imagery.example.com/a.tif", off)
    on = settings(tmp_path, allow_remote=True,
                  remote_allow_list="imagery.example.com,*.cdn.example.net,s3://scenes-bucket,https://host.example.org/pub/")
    public = lambda host: ["93.184.215.14"]  # noqa: E731  (a resolver that needs no network)
    assert check_remote("https://imagery.example.com/a.tif", on, resolver=public)
    assert check_remote("https://eu.cdn.example.net/a.tif", on, resolver=public)
    assert check_remote("https://host.example.org/pub/a.tif", on, resolver=public)
    assert check_remote("s3://scenes-bucket/a.tif", on)
    for url in ("https://evil.example.com/a.tif", "https://cdn.example.net/a.tif", "https://host.example.org/private/a",
                "s3://other-bucket/a.tif", "https://imagery.example.com.evil.io/a.tif"):
        with pytest.raises(SceneNotAllowed):
            check_remote(url, on, resolver=public)
    with pytest.raises(BadScenePath):
        check_remote("https://user:pw@imagery.example.com/a.tif", on, resolver=public)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "10.0.0.5", "192.168.1.1",
     "fd00:ec2::254", "100.100.100.200", "::ffff:127.0.0.1"],
)
def test_loopback_link_local_metadata_and_private_addresses_are_blocked(tmp_path, address):
    assert blocked_address(address, allow_private=False)
    on = settings(tmp_path, allow_remote=True, remote_allow_list="imagery.example.com")
    with pytest.raises(SceneNotAllowed, match="resolves to"):
        check_remote("http://imagery.example.com/a.tif", on, resolver=lambda host: ["93.184.215.14", address])


def test_private_addresses_only_when_allowed(tmp_path):
    assert blocked_address("10.1.2.3", allow_private=True) is None
    assert blocked_address("127.0.0.1", allow_private=True)  # loopback never
    assert blocked_address("169.254.169.254", allow_private=True)  # metadata never


@pytest.fixture()
def file_server(tmp_path):
    """A loopback HTTP server with a TIFF, a redirect to a metadata address, and a VRT."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "scene.tif").write_bytes(b"II*\x00" + b"\x00" * 5000)
    (tmp_path / "www" / "scene.vrt").write_bytes(b"<VRTDataset/>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def do_GET(self):
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def loopback_allowed(monkeypatch):
    """Loopback is blocked, rightly: for the test only, let 127.0.0.1 through but nothing else."""
    real = sources.blocked_address
    monkeypatch.setattr(sources, "blocked_address",
                        lambda a, allow_private: None if a == "127.0.0.1" else real(a, allow_private=allow_private))


def test_remote_download(tmp_path, file_server, loopback_allowed):
    s = settings(tmp_path, allow_remote=True, remote_allow_list="127.0.0.1", max_remote_bytes=4096 * 4)
    got = fetch_remote(f"{file_server}/scene.tif", tmp_path / "dl" / "a.tif", s)
    assert got.read_bytes().startswith(b"II*\x00") and got.stat().st_size == 5004
    with pytest.raises(SceneNotAllowed):  # the redirect goes to the metadata service
        fetch_remote(f"{file_server}/hop", tmp_path / "dl" / "b.tif", s)
    with pytest.raises(Exception, match="not a GeoTIFF"):
        fetch_remote(f"{file_server}/scene.vrt", tmp_path / "dl" / "c.tif", s)
    with pytest.raises(TooLarge):
        fetch_remote(f"{file_server}/scene.tif", tmp_path / "dl" / "d.tif", s.model_copy(update={"max_remote_bytes": 100}))
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["a.tif"]  # no partial files left


def test_remote_download_refuses_loopback(tmp_path, file_server):
    s = settings(tmp_path, allow_remote=True, remote_allow_list="127.0.0.1")
    with pytest.raises(SceneNotAllowed, match="loopback"):
        fetch_remote(f"{file_server}/scene.tif", tmp_path / "x.tif", s)


def test_the_view_comes_with_a_remote_scene_from_the_metadata_beside_it(tmp_path, file_server, loopback_allowed):
    """The runner downloads a scene as JOB.tif, and the view from the metadata beside its URL (a
    Maxar .IMD or .XML, an Airbus DIMAP, or a STAC item named after the scene's id) it writes as
    JOB.IMD, where GDAL reads it with the scene. A scene with none, or with metadata that records no
    view, gets none, and nothing is left beside its download."""
    www = tmp_path / "www"
    with rasterio.open(www / "yard.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32632", transform=Affine(0.5, 0, 400000, 0, -0.5, 5270000)) as dst:
        dst.write(np.full((3, 64, 64), 120, dtype=np.uint8))
    (www / "yard.IMD").write_text(imd_text(View(21.5, 300.0)))
    (www / "plain.tif").write_bytes((www / "yard.tif").read_bytes())
    (www / "noview.tif").write_bytes((www / "yard.tif").read_bytes())
    (www / "noview.IMD").write_text('BEGIN_GROUP = IMAGE_1\n\tsatId = "WV03";\nEND_GROUP = IMAGE_1\nEND;\n')
    (www / "noview.json").write_text(json.dumps({"type": "Feature", "properties": {"view:off_nadir": 9.0}}))
    (www / "10300100A5431800-visual.tif").write_bytes((www / "yard.tif").read_bytes())
    (www / "10300100A5431800.json").write_text(json.dumps(
        {"type": "Feature", "id": "10300100A5431800", "properties": {"view:off_nadir": 17.0, "view:azimuth": 98.5}}))
    s = settings(tmp_path, allow_remote=True, remote_allow_list="127.0.0.1")
    dl = tmp_path / "dl"

    scene = fetch_remote(f"{file_server}/yard.tif?token=abc", dl / "job-1.tif", s)
    assert fetch_view_sidecar(f"{file_server}/yard.tif?token=abc", scene, s) == dl / "job-1.IMD"
    view = inspect_scene(scene, model_pixel_size_m=0.5).view
    assert view is not None and (view.off_nadir_deg, view.satellite_azimuth_deg) == pytest.approx((21.5, 300.0))

    (www / "maxar.tif").write_bytes((www / "yard.tif").read_bytes())
    (www / "maxar.XML").write_text(maxar_xml(21.4, 201.5))
    (www / "IMG_PHR1A_PMS_2020_ORT_1_R1C1.TIF").write_bytes((www / "yard.tif").read_bytes())
    (www / "DIM_PHR1A_PMS_2020_ORT_1.XML").write_text(dimap([("Top Left", 12.0, 181.0), ("Center", 13.5, 180.5)]))
    for k, (name, view) in enumerate((("10300100A5431800-visual.tif", View(17.0, 98.5, "scene metadata")),
                                      ("maxar.tif", View(21.4, 201.5, "scene metadata")),
                                      ("IMG_PHR1A_PMS_2020_ORT_1_R1C1.TIF", View(13.5, 180.5, "scene metadata"))), 2):
        scene = fetch_remote(f"{file_server}/{name}", dl / f"job-{k}.tif", s)
        assert fetch_view_sidecar(f"{file_server}/{name}", scene, s) == dl / f"job-{k}.IMD"
        assert inspect_scene(scene, model_pixel_size_m=0.5).view == view, name

    for name in ("plain", "noview"):
        scene = fetch_remote(f"{file_server}/{name}.tif", dl / f"job-{name}.tif", s)
        assert fetch_view_sidecar(f"{file_server}/{name}.tif", scene, s) is None
        assert inspect_scene(scene, model_pixel_size_m=0.5).view is None
    assert sorted(p.name for p in dl.iterdir()) == ["job-1.IMD", "job-1.tif", "job-2.IMD", "job-2.tif", "job-3.IMD",
                                                    "job-3.tif", "job-4.IMD", "job-4.tif", "job-noview.tif",
                                                    "job-plain.tif"]
