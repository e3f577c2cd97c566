"""``create_app(settings)``: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api import routes_health, routes_jobs
from service.api.deps import KeyRing, Services
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimit, RequestMetrics
from service.jobs.metrics import Metrics
from service.jobs.results import ResultStore
from service.jobs.runner import ClientFactory, Runner, default_client_factory
from service.jobs.store import JobStore
from service.jobs.submission import Submitter
from service.service_settings import ServiceSettings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Find, count and map **railcars**, **tarped cargo** and **rail tracks** in satellite and aerial scenes.

Submit a scene (`POST /v1/jobs`), poll the job (`GET /v1/jobs/{id}`: status, tiles done / total,
counts), then fetch the RFC 7946 GeoJSON (`GET /v1/jobs/{id}/result`). Every `/v1` call needs
`Authorization: Bearer <key>`; each key sees only its own jobs. Errors are
`{"error": {"code": ..., "message": ...}}`.
"""


def _version() -> str:
    try:
        return version("railsight")
    except PackageNotFoundError:
        return "0.0.0"


def build_services(
    settings: ServiceSettings, *, client_factory: ClientFactory = default_client_factory
) -> Services:
    """Open the store (migrating it), and make the runner when it is embedded. Refuses (ConfigError)
    to build an API with no keys outside development mode."""
    from service.pipeline import model_meta, model_spec_from_settings

    keys, _ = settings.resolve_api_keys()
    store = JobStore.open(settings.store_url)
    results = ResultStore(settings.results_path)
    metrics = Metrics()
    metrics.watch_store(store)
    spec = model_spec_from_settings(settings)
    submitter = Submitter(settings, store, pixel_size=lambda: model_meta(spec).pixel_size_m)
    runner = None
    if settings.embedded_runner:
        runner = Runner(settings, store, results, metrics, client_factory=client_factory)
    return Services(settings, store, results, KeyRing(keys), metrics, submitter, runner)


def create_app(settings: ServiceSettings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.runner is not None:
            services.runner.start()
        try:
            yield
        finally:
            if services.runner is not None:
                await run_in_threadpool(services.runner.stop)
            services.store.close()

    app = FastAPI(
        title="railsight",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(routes_health.router)
    app.add_middleware(BodyLimit, upload_limit=settings.max_upload_bytes, json_limit=settings.max_json_bytes)
    app.add_middleware(RequestMetrics, metrics=services.metrics)
    return app
