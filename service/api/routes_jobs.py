"""``/v1/jobs``: submit, list, status, result, cancel. Each key sees only its own jobs."""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from service.api.deps import Owner, Services, ServicesDep
from service.api.errors import InvalidRequest, UnsupportedMediaType, describe_validation
from service.api.schemas import ErrorBody, JobOut, JobPage, JobRequest, Links, Progress, Timings, iso
from service.geojson import MEDIA_TYPE as GEOJSON_MEDIA_TYPE
from service.jobs.errors import JobConflict
from service.jobs.schema import CANCELLED, QUEUED, RUNNING, STATUSES, SUCCEEDED
from service.jobs.store import Job, decode_cursor
from service.jobs.submission import Submission
from service.view_geometry import view_from_metadata_text

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
FORM_FIELD_LIMIT = 64 * 1024

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "malformed request", 401: "missing or invalid API key", 404: "no such job (or not yours)",
    }.items()
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": ErrorBody, "description": "scene outside the data roots, or a remote source not allowed"},
    409: {"model": ErrorBody, "description": "Idempotency-Key reused with a different request"},
    413: {"model": ErrorBody, "description": "upload over the size limit"},
    415: {"model": ErrorBody, "description": "neither JSON nor multipart/form-data"},
    422: {"model": ErrorBody, "description": "the scene cannot be used; the message says why"},
    429: {"model": ErrorBody, "description": "queue full; see Retry-After"},
}
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["scene"],
                    "properties": {
                        "scene": {"type": "string", "format": "binary", "description": "a GeoTIFF or COG"},
                        "site_id": {"type": "string"},
                        "acquired_at": {"type": "string", "format": "date-time"},
                        "options": {"type": "string", "description": "JSON object, as in the JSON body"},
                        "view": {"type": "string", "format": "binary",
                                 "description": "the scene's metadata, for its view (or give it in options): a Maxar "
                                                ".IMD or .XML, an Airbus DIM_*.XML, or a STAC or Planet item (JSON)"},
                    },
                }
            },
        },
    }
}


def job_url(request: Request, job_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/v1/jobs/{job_id}"


def job_view(job: Job, url: str) -> JobOut:
    now_or_end = job.finished_at
    timings = Timings(
        queued_s=_span(job.created_at, job.started_at),
        run_s=_span(job.started_at, now_or_end),
        total_s=_span(job.created_at, job.finished_at),
        pipeline=(job.summary or {}).get("timings"),
    )
    total = job.tiles_total
    summary = job.summary
    error = None
    if job.error_code and job.status != SUCCEEDED:
        error = {"code": job.error_code, "message": job.error_message or job.error_code}
    return JobOut(
        id=job.id,
        url=url,
        status=job.status,  # type: ignore[arg-type]
        scene=job.scene_name,
        source=job.scene_kind,  # type: ignore[arg-type]
        site_id=job.site_id,
        acquired_at=job.acquired_at,
        options=job.options,
        progress=Progress(
            tiles_done=job.tiles_done, tiles_total=total,
            fraction=round(job.tiles_done / total, 4) if total else (1.0 if job.status == SUCCEEDED else None),
        ),
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=_iso_ts(job.created_at),
        started_at=_iso_ts(job.started_at) if job.started_at else None,
        finished_at=_iso_ts(job.finished_at) if job.finished_at else None,
        timings=timings,
        counts=(summary or {}).get("counts"),
        feature_count=job.feature_count,
        summary=summary,
        error=error,  # type: ignore[arg-type]
        links=Links(
            self=url,
            result=f"{url}/result" if job.status == SUCCEEDED and job.result_path else None,
            classes=f"{url}/classes" if job.status == SUCCEEDED and job.classes_path else None,
        ),
    )


def _span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start is not None and end is not None else None


def _iso_ts(ts: float) -> str:
    from datetime import UTC, datetime

    return iso(datetime.fromtimestamp(ts, UTC)) or ""


class JSONBody(Response):
    """A response model serialised by pydantic's own (Rust) JSON encoder. Routes return it directly,
    so FastAPI does not validate and re-encode what was just built from the store."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code, headers=headers)


def _accepted(request: Request, job: Job, created: bool) -> JSONBody:
    url = job_url(request, job.id)
    headers = {"Location": url}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONBody(job_view(job, url), status_code=202, headers=headers)


def _submission(req: JobRequest, scene: str | None = None) -> Submission:
    return Submission(
        scene=scene if scene is not None else req.scene,
        site_id=req.site_id,
        acquired_at=iso(req.acquired_at),
        options=req.options.model_dump(mode="json", exclude_none=True),
    )


def _parse_request(data: Any) -> JobRequest:
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(exc.errors())) from exc


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Submit a scene",
    description=(
        "JSON naming a scene (a path under an allowed data root, or an allowed remote URL), or a "
        "multipart upload with the file in field `scene`. Answers 202 with the job and its URL "
        "(`Location`). With an `Idempotency-Key` header a retried request returns the same job."
    ),
    responses=SUBMIT_ERRORS,
    openapi_extra=SUBMIT_BODY,
)
async def submit_job(
    request: Request,
    owner: Owner,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
        sub = _submission(_parse_request(data))
        job, created = await run_in_threadpool(
            services.submitter.submit, owner, sub, idempotency_key=idempotency_key
        )
    elif content_type == "multipart/form-data":
        job, created = await _submit_upload(request, services, owner, idempotency_key)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'} is not accepted: send application/json or multipart/form-data"
        )
    if created:
        services.metrics.submitted.labels(job.scene_kind).inc()
        services.wake_runner()
    return _accepted(request, job, created)


async def _submit_upload(request: Request, services: Services, owner: str, key: str | None):
    async with request.form(max_files=2, max_fields=8, max_part_size=FORM_FIELD_LIMIT) as form:
        upload = form.get("scene")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("multipart body needs the scene file in field 'scene'")
        fields: dict[str, Any] = {}
        for name in ("site_id", "acquired_at"):
            value = form.get(name)
            if isinstance(value, str) and value:
                fields[name] = value
        options = form.get("options")
        if isinstance(options, str) and options.strip():
            try:
                fields["options"] = json.loads(options)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"field 'options' is not valid JSON: {exc}") from exc
        view = form.get("view")
        if view is not None:
            fields["options"] = with_uploaded_view(fields.get("options", {}), await _small_text(view, "view"))
        name = PurePath(upload.filename or "upload.tif").name[:255] or "upload.tif"
        req = _parse_request({"scene": name, **fields})
        return await run_in_threadpool(
            services.submitter.submit_upload, owner, _submission(req, name), upload.file, idempotency_key=key
        )


async def _small_text(part: UploadFile | str, field: str) -> str:
    """A form field's text, sent as a field or as a file of at most FORM_FIELD_LIMIT bytes."""
    if isinstance(part, str):
        return part
    data = await part.read(FORM_FIELD_LIMIT + 1)
    if len(data) > FORM_FIELD_LIMIT:
        raise InvalidRequest(f"field '{field}' is over {FORM_FIELD_LIMIT:,} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"field '{field}' is not text: {exc}") from exc


def with_uploaded_view(options: Any, text: str) -> Any:
    """Job ``options`` with the view an uploaded scene's metadata (field ``view``) records: a Maxar
    ``.IMD`` or ``.XML``, an Airbus DIMAP, or a STAC or Planet item's JSON. An upload has no file
    beside it to read it from."""
    view = view_from_metadata_text(text)
    if view is None:
        raise InvalidRequest("field 'view' records no view: it must be a Maxar .IMD or .XML giving the image's "
                             "meanOffNadirViewAngle (0-60) and meanSatAz (0-360), an Airbus DIMAP giving the centre's "
                             "INCIDENCE_ANGLE and AZIMUTH_ANGLE, or a STAC or Planet item whose properties give "
                             "view:off_nadir and view:azimuth, or view_angle and satellite_azimuth")
    if not isinstance(options, dict):
        return options  # the request's own check names what is wrong with it
    if "off_nadir_deg" in options or "satellite_azimuth_deg" in options:
        raise InvalidRequest("give the view once: in options, or as the scene's metadata in field 'view'")
    return {**options, "off_nadir_deg": view.off_nadir_deg, "satellite_azimuth_deg": view.satellite_azimuth_deg}


@router.get("", response_model=JobPage, summary="List your jobs, newest first", responses=ERRORS)
async def list_jobs(
    request: Request,
    owner: Owner,
    services: ServicesDep,
    status: Annotated[list[str] | None, Query(description="filter: one or more statuses (repeat, or comma list)")] = None,
    site_id: Annotated[str | None, Query(max_length=128, description="only jobs of this site")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONBody:
    wanted = [s.strip() for value in (status or []) for s in value.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise InvalidRequest(f"unknown status {unknown[0]!r}: use {', '.join(STATUSES)}")
    limit = min(limit, services.settings.page_limit)
    if cursor:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
    page = await run_in_threadpool(
        services.store.list, owner, statuses=wanted, site_id=site_id, limit=limit, cursor=cursor
    )
    nxt = None
    if page.next_cursor:
        nxt = str(request.url.include_query_params(cursor=page.next_cursor))
    views = [job_view(j, job_url(request, j.id)) for j in page.jobs]
    return JSONBody(JobPage(jobs=views, next_cursor=page.next_cursor, next=nxt))


@router.get("/{job_id}", response_model=JobOut, summary="Status, progress, timings and counts of a job", responses=ERRORS)
async def get_job(job_id: str, request: Request, owner: Owner, services: ServicesDep) -> JSONBody:
    job = await run_in_threadpool(services.store.get, job_id, owner)
    return JSONBody(job_view(job, job_url(request, job_id)))


@router.get(
    "/{job_id}/result",
    summary="The detections (RFC 7946 GeoJSON), streamed",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {GEOJSON_MEDIA_TYPE: {}}, "description": "FeatureCollection with summary"},
               409: {"model": ErrorBody, "description": "the job has not succeeded (yet)"}},
)
def get_result(job_id: str, owner: Owner, services: ServicesDep) -> FileResponse:
    path = _output_file(job_id, owner, services, "result_path", "result", "")
    return FileResponse(
        path, media_type=GEOJSON_MEDIA_TYPE, headers={"Content-Disposition": f'inline; filename="{job_id}.geojson"'}
    )


@router.get(
    "/{job_id}/classes",
    summary="The class raster (COG: 0 background, 1 railcar, 2 tarped cargo, 3 track), when asked for",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {"image/tiff": {}}, "description": "Cloud-optimised GeoTIFF"},
               409: {"model": ErrorBody, "description": "not succeeded, or no class_cog output asked for"}},
)
def get_classes(job_id: str, owner: Owner, services: ServicesDep) -> FileResponse:
    path = _output_file(job_id, owner, services, "classes_path", "class raster",
                        " (ask for it with options.outputs: [\"class_cog\"])")
    return FileResponse(path, media_type=COG_MEDIA_TYPE, filename=f"{job_id}-classes.tif")


def _output_file(job_id: str, owner: str, services, attr: str, what: str, hint: str):
    """The file of one of a succeeded job's outputs (``hint`` tells a client how to ask for it);
    a missing file is the server's fault (5xx)."""
    job = services.store.get(job_id, owner)
    relative = getattr(job, attr)
    _require_success(job, relative, what, hint)
    path = services.results.path_of(relative or "")
    if not path.is_file():
        raise FileNotFoundError(f"{what} of job {job_id} is missing from {services.results.root}")
    return path


def _require_success(job: Job, path: str | None, what: str, hint: str) -> None:
    if job.status in (QUEUED, RUNNING):
        raise JobConflict(f"job {job.id} is {job.status}; its {what} is not ready yet")
    if job.status != SUCCEEDED:
        detail = f": {job.error_message}" if job.error_message else ""
        raise JobConflict(f"job {job.id} {job.status}{detail}; it has no {what}")
    if not path:
        raise JobConflict(f"job {job.id} has no {what}{hint}")


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    description="A queued job is cancelled at once (200). A running one is asked to stop (202) and "
    "stops its Dask work within a heartbeat. A finished job cannot be cancelled (409).",
    responses={**ERRORS, 202: {"model": JobOut, "description": "cancel requested; the job is stopping"},
               409: {"model": ErrorBody, "description": "the job has already finished"}},
)
async def cancel_job(job_id: str, request: Request, owner: Owner, services: ServicesDep) -> JSONBody:
    job = await run_in_threadpool(services.store.cancel, job_id, owner)
    if job.status == CANCELLED and job.scene_kind == "upload":
        await run_in_threadpool(_delete_upload, services, job.scene)
    if services.runner is not None and job.status == RUNNING:
        services.runner.cancel_now(job.id)
    return JSONBody(job_view(job, job_url(request, job.id)), status_code=200 if job.status == CANCELLED else 202)


def _delete_upload(services: Services, path: str) -> None:
    """A job cancelled before it started no longer needs its upload (only ever under uploads/)."""
    target = Path(path)
    if target.resolve().is_relative_to(services.settings.uploads_path):
        target.unlink(missing_ok=True)
