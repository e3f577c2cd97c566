"""`railsight serve --host H --port P`: the HTTP job service. By default it runs jobs itself too
(an embedded runner on a LocalCluster, or on RAILSIGHT_DASK_SCHEDULER); with --no-runner it is the
API only, and `railsight worker` processes run the jobs."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import threading

from service.service_settings import ServiceSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP job service (API, job store, embedded runner)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--no-runner", action="store_true", help="API only: jobs run in `railsight worker` processes")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app
    from service.sample import ensure_sample

    configure_logging(args.log_level)
    settings = ServiceSettings()
    if args.no_runner:
        settings = settings.model_copy(update={"embedded_runner": False})
    keys, dev_key = settings.resolve_api_keys()  # refuses to start with no keys outside dev mode
    app = create_app(settings)

    def announce() -> None:
        """Make the sample scene (a few seconds, the first time) while the server starts, then
        print where everything is and a curl that submits it."""
        sample = str(ensure_sample(settings.samples_path)) if settings.sample_scene else None
        print(banner(settings, args.host, args.port, sample=sample, key=keys[0] if dev_key else None), flush=True)

    threading.Thread(target=announce, name="railsight-banner", daemon=True).start()
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
    return 0


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def banner(settings: ServiceSettings, host: str, port: int, *, sample: str | None, key: str | None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    auth = f"Authorization: Bearer {key}" if key else "Authorization: Bearer $RAILSIGHT_KEY"
    scene = sample or f"{settings.allowed_roots()[0]}/<scene>.tif"
    body = json.dumps({"scene": scene, "site_id": "sample-yard", "options": {"min_confidence": 0.5}})
    runner = f"embedded, {_cluster_name(settings)}" if settings.embedded_runner else "none (railsight worker)"
    lines = [
        "",
        "railsight job service",
        f"  API docs (OpenAPI):  {base}/docs",
        f"  job store:           {_store_name(settings)}",
        f"  results:             {settings.results_path}",
        f"  runner:              {runner}",
        f"  data roots:          {', '.join(str(r) for r in settings.allowed_roots())}",
    ]
    if key:
        lines.append(f"  development key:     {key}   (RAILSIGHT_DEV_MODE; kept in {settings.state_dir}/dev-api-key)")
    else:
        lines.append("  API keys:            RAILSIGHT_API_KEYS / RAILSIGHT_API_KEYS_FILE (export RAILSIGHT_KEY=<yours>)")
    lines += [
        "",
        "Submit the sample scene:" if sample else "Submit a scene:",
        f"  curl -s -X POST {base}/v1/jobs -H {shlex.quote(auth)} -H 'Content-Type: application/json' \\",
        f"       -d {shlex.quote(body)}",
        "Then poll the job's url, and fetch its result:",
        f"  curl -s -H {shlex.quote(auth)} {base}/v1/jobs/<id>",
        f"  curl -s -H {shlex.quote(auth)} {base}/v1/jobs/<id>/result -o detections.geojson",
        "",
    ]
    return "\n".join(lines)


def _store_name(settings: ServiceSettings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.store_url).render_as_string(hide_password=True)


def _cluster_name(settings: ServiceSettings) -> str:
    return f"Dask scheduler {settings.dask_scheduler}" if settings.dask_scheduler else "LocalCluster"
