"""`railsight serve` as a new user meets it: development mode with no keys configured prints the
docs URL and a curl that works as pasted; outside development mode it refuses to start."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from tests.jobservice import (
    REPO,
    ServeProcess,
    free_port,
    scheduler,  # noqa: F401  (fixture)
    service_env,
    wait_for,
)


def test_serve_refuses_to_start_without_keys_outside_dev_mode(tmp_path):
    env = service_env(tmp_path, scheduler=None)
    del env["RAILSIGHT_API_KEYS"]
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", str(free_port())], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no API keys" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_dev_mode_prints_a_curl_that_works_as_pasted(tmp_path, scheduler):  # noqa: F811
    port = free_port()
    env = service_env(tmp_path, scheduler=scheduler, RAILSIGHT_DEV_MODE="1", RAILSIGHT_SAMPLE_SCENE="1")
    del env["RAILSIGHT_API_KEYS"]
    server = ServeProcess(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_for(lambda: "curl -s -X POST" in server.output(), 120, "no curl printed")
        out = server.output()
        assert f"http://127.0.0.1:{port}/docs" in out
        key = (tmp_path / "state" / "dev-api-key").read_text().strip()
        assert key in out
        lines = out.splitlines()
        i = next(n for n, line in enumerate(lines) if "curl -s -X POST" in line)
        command = lines[i].strip().rstrip("\\") + " " + lines[i + 1].strip()
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TimeoutException:  # a starting service on a busy machine can take over 5 s to answer
                return False

        wait_for(ready, 90, "not ready")
        posted = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        job = httpx.Response(202, content=posted.stdout).json()
        assert re.fullmatch(r"[0-9a-f]{32}", job["id"]), posted.stdout
        headers = {"Authorization": f"Bearer {key}"}

        def finished():
            body = httpx.get(job["url"], headers=headers).json()
            return body if body["status"] in ("succeeded", "failed") else None

        done = wait_for(finished, 120, "the sample job did not finish")
        assert done["status"] == "succeeded", done
        result = httpx.get(f"{job['url']}/result", headers=headers)
        assert result.headers["content-type"] == "application/geo+json"
        # The engine drew the sample, and wrote the view beside it as a satellite product comes.
        assert "synthetic engine unavailable" not in server.output()
        assert result.json()["summary"]["view"]["source"] == "scene metadata"
        assert httpx.get(job["url"], headers={"Authorization": "Bearer wrong-key-0000000000"}).status_code == 401
    finally:
        server.stop()
