"""``/healthz`` (liveness), ``/readyz`` (the store, the cluster and the model) and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import ServicesDep
from service.api.schemas import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the store answers, and (embedded runner) the cluster has workers with the model loaded",
    responses={503: {"model": Readiness, "description": "not ready; `checks` says what is missing"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    ready = True
    try:
        services.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"error: {type(exc).__name__}: {exc}"
        ready = False
    try:
        checks["model"] = {"ok": True, "pixel_size_m": services.submitter.pixel_size()}
    except Exception as exc:
        checks["model"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ready = False
    runner = services.runner
    if runner is not None:
        health = runner.health()
        checks["cluster"] = {"ok": health["cluster"], "workers": health["workers"]}
        checks["runner"] = {
            "ok": health["model"] and runner.ready.is_set(),
            "model_loaded_on_workers": health["model"],
            "active_jobs": health["active_jobs"],
            "slots": health["slots"],
            "error": health["error"],
        }
        ready = ready and health["cluster"] and checks["runner"]["ok"]
    else:
        checks["runner"] = {"ok": True, "mode": "external: jobs run in `railsight worker` processes"}
    body = Readiness(ready=ready, checks=checks).model_dump(mode="json")
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
