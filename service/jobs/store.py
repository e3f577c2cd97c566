"""The durable job queue: one table, SQLAlchemy Core, the same statements on SQLite and PostgreSQL.

Claiming is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING``:
atomic on both databases, so two runners never get the same job. A claim carries a *lease*
(``lease_expires_at``) and a random *token*; the runner's heartbeat extends the lease, and every
write a runner makes afterwards names its token, so a runner that lost its lease (it stalled, and
another claimed the job) can no longer change the job. A job whose lease ran out is claimed again,
up to ``max_attempts`` claims, after which it fails.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from service.jobs.db import is_sqlite, make_engine, migrate
from service.jobs.errors import IdempotencyConflict, JobConflict, JobNotFound, QueueFull
from service.jobs.schema import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, STATUSES, SUCCEEDED, jobs

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class NewJob:
    owner: str
    scene: str
    scene_kind: str
    scene_name: str
    options: dict[str, Any]
    site_id: str | None = None
    acquired_at: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    status: str
    scene: str
    scene_kind: str
    scene_name: str
    site_id: str | None
    acquired_at: str | None
    options: dict[str, Any]
    idempotency_key: str | None
    request_hash: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    lease_token: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    tiles_done: int
    tiles_total: int | None
    summary: dict[str, Any] | None
    feature_count: int | None
    result_path: str | None
    classes_path: str | None
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row._mapping)
        data["cancel_requested"] = bool(data["cancel_requested"])
        data["options"] = data["options"] or {}
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Claim:
    """A job held by one runner under one lease. ``token`` fences every later write."""

    job: Job
    token: str
    runner_id: str

    @property
    def job_id(self) -> str:
        return self.job.id


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learned: whether the lease is still ours, and whether a cancel was asked."""

    held: bool
    cancel_requested: bool = False


@dataclass
class Page:
    jobs: list[Job]
    next_cursor: str | None = None


@dataclass
class Outcome:
    """How a claimed job ended; ``finish`` writes it."""

    status: str
    summary: dict[str, Any] | None = None
    feature_count: int | None = None
    result_path: str | None = None
    classes_path: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    tiles_done: int | None = None
    tiles_total: int | None = None


NOTIFY_CHANNEL = "railsight_jobs"

# Statements on the hot paths, built once (building a statement costs more than running it).
_GET = select(jobs).where(jobs.c.id == bindparam("job_id"))
_GET_OWNED = select(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.owner == bindparam("owner"))
_QUEUED_COUNT = select(func.count()).select_from(jobs).where(jobs.c.status == QUEUED)


def new_job_id() -> str:
    return uuid.uuid4().hex


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at!r}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for anything that is not a cursor this store made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        return float(created), job_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"bad cursor {cursor!r}") from exc


class JobStore:
    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True, clock: Clock = time.time) -> JobStore:
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    # --- transactions ----------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read-only statement (on SQLite it runs without BEGIN/COMMIT around it)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(single_read=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(write=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(text("SELECT 1"))

    # --- the API's side --------------------------------------------------------------------------
    def submit(self, new: NewJob, *, queue_limit: int, retry_after: int) -> tuple[Job, bool]:
        """Add a queued job. Returns (job, created); with an idempotency key already used by this
        owner, the earlier job and False (IdempotencyConflict if the request differs).
        QueueFull when ``queue_limit`` jobs are already queued."""
        if new.idempotency_key:
            existing = self.find_by_idempotency_key(new.owner, new.idempotency_key, new.request_hash)
            if existing is not None:
                return existing, False
        now = self.clock()
        row = {
            "id": new_job_id(),
            "owner": new.owner,
            "status": QUEUED,
            "scene": new.scene,
            "scene_kind": new.scene_kind,
            "scene_name": new.scene_name,
            "site_id": new.site_id,
            "acquired_at": new.acquired_at,
            "options": new.options,
            "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "cancel_requested": False,
            "tiles_done": 0,
        }
        try:
            with self._write() as conn:
                queued = conn.execute(_QUEUED_COUNT).scalar_one()
                if queued >= queue_limit:
                    raise QueueFull(
                        f"the queue is full ({queued} jobs waiting); retry later", retry_after=retry_after
                    )
                created = conn.execute(insert(jobs).values(**row).returning(*jobs.c)).one()
                if not is_sqlite(self.engine):  # runners LISTENing wake up when this commits
                    conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        except IntegrityError:
            # Two requests with the same idempotency key raced; the other one won.
            existing = None
            if new.idempotency_key:
                existing = self.find_by_idempotency_key(new.owner, new.idempotency_key, new.request_hash)
            if existing is None:
                raise
            return existing, False
        return Job.from_row(created), True

    def find_by_idempotency_key(self, owner: str, key: str, request_hash: str | None = None) -> Job | None:
        """The owner's job made with this key; IdempotencyConflict if it was made by another request."""
        with self._read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)).one_or_none()
        if row is None:
            return None
        job = Job.from_row(row)
        if request_hash and job.request_hash and job.request_hash != request_hash:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for a different request (job {job.id})")
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; JobNotFound if there is none, or it belongs to another owner."""
        with self._read() as conn:
            if owner is None:
                row = conn.execute(_GET, {"job_id": job_id}).one_or_none()
            else:
                row = conn.execute(_GET_OWNED, {"job_id": job_id, "owner": owner}).one_or_none()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return Job.from_row(row)

    def list(self, owner: str, *, statuses: Sequence[str] = (), site_id: str | None = None, limit: int = 50,
             cursor: str | None = None) -> Page:
        """Newest first, ``limit`` at a time; ``cursor`` is ``next_cursor`` of the page before."""
        query = select(jobs).where(jobs.c.owner == owner)
        if statuses:
            query = query.where(jobs.c.status.in_(list(statuses)))
        if site_id is not None:
            query = query.where(jobs.c.site_id == site_id)
        if cursor:
            created, job_id = decode_cursor(cursor)
            query = query.where(
                or_(jobs.c.created_at < created, and_(jobs.c.created_at == created, jobs.c.id < job_id))
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = [Job.from_row(r) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, _encode_cursor(rows[-1]) if more and rows else None)

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """A queued job is cancelled at once and never starts; a running one is flagged, and its
        runner stops at its next heartbeat. JobConflict for a job that has already finished."""
        now = self.clock()
        with self._write() as conn:
            query = select(jobs).where(jobs.c.id == job_id)
            if owner is not None:
                query = query.where(jobs.c.owner == owner)
            row = conn.execute(query).one_or_none()
            if row is None:
                raise JobNotFound(f"no job {job_id}")
            job = Job.from_row(row)
            if job.status == QUEUED:
                values: dict[str, Any] = {
                    "status": CANCELLED, "cancel_requested": True, "finished_at": now, "updated_at": now,
                    "error_code": "cancelled", "error_message": "cancelled before it started",
                }
            elif job.status == RUNNING:
                values = {"cancel_requested": True, "updated_at": now}
            else:
                raise JobConflict(f"job {job_id} has already {job.status}; nothing to cancel")
            row = conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.status == job.status).values(**values).returning(*jobs.c)
            ).one()
        return Job.from_row(row)

    def counts(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        out = dict.fromkeys(STATUSES, 0)
        out.update({status: int(n) for status, n in rows})
        return out

    # --- the runner's side -----------------------------------------------------------------------
    def claim(self, runner_id: str, *, lease_seconds: float, max_attempts: int) -> Claim | None:
        """The oldest claimable job under a fresh lease, or None. Claimable: queued, or running with
        an expired lease and attempts left. Jobs whose lease expired with no attempts left fail, and
        expired ones that were asked to cancel are cancelled, first."""
        self.reap(max_attempts=max_attempts)
        now = self.clock()
        token = uuid.uuid4().hex
        claimable = or_(
            jobs.c.status == QUEUED,
            and_(
                jobs.c.status == RUNNING,
                jobs.c.lease_expires_at < now,
                jobs.c.attempts < max_attempts,
                jobs.c.cancel_requested.is_(False),
            ),
        )
        pick = (
            select(jobs.c.id)
            .where(claimable)
            .order_by(jobs.c.created_at, jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(jobs)
            .where(jobs.c.id == pick, claimable)
            .values(
                status=RUNNING,
                attempts=jobs.c.attempts + 1,
                lease_token=token,
                lease_owner=runner_id[:128],
                lease_expires_at=now + lease_seconds,
                started_at=func.coalesce(jobs.c.started_at, now),
                updated_at=now,
            )
            .returning(*jobs.c)
        )
        with self._write() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            return None
        return Claim(Job.from_row(row), token, runner_id)

    def reap(self, *, max_attempts: int) -> int:
        """Finish jobs whose runner died and that may not be claimed again. Returns how many."""
        now = self.clock()
        expired = and_(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)
        with self._write() as conn:
            cancelled = conn.execute(
                update(jobs)
                .where(expired, jobs.c.cancel_requested.is_(True))
                .values(status=CANCELLED, finished_at=now, updated_at=now, lease_token=None,
                        error_code="cancelled", error_message="cancelled while running")
            ).rowcount
            failed = conn.execute(
                update(jobs)
                .where(expired, jobs.c.cancel_requested.is_(False), jobs.c.attempts >= max_attempts)
                .values(
                    status=FAILED, finished_at=now, updated_at=now, lease_token=None,
                    error_code="attempts_exhausted",
                    error_message=f"the job's runner stopped responding {max_attempts} times; giving up",
                )
            ).rowcount
        return int(cancelled or 0) + int(failed or 0)

    def heartbeat(self, claim: Claim, *, lease_seconds: float, tiles_done: int | None = None,
                  tiles_total: int | None = None) -> Beat:
        """Extend the lease and record progress. ``held`` is False when the lease was lost."""
        now = self.clock()
        values: dict[str, Any] = {"lease_expires_at": now + lease_seconds, "updated_at": now}
        if tiles_done is not None:
            values["tiles_done"] = tiles_done
        if tiles_total is not None:
            values["tiles_total"] = tiles_total
        with self._write() as conn:
            row = conn.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id, jobs.c.lease_token == claim.token, jobs.c.status == RUNNING)
                .values(**values)
                .returning(jobs.c.cancel_requested)
            ).one_or_none()
        if row is None:
            return Beat(held=False)
        return Beat(held=True, cancel_requested=bool(row[0]))

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Record how the job ended. False (and nothing written) when the lease was lost."""
        if outcome.status not in FINISHED:
            raise ValueError(f"not a final status: {outcome.status}")
        now = self.clock()
        values: dict[str, Any] = {
            "status": outcome.status,
            "finished_at": now,
            "updated_at": now,
            "lease_token": None,
            "lease_expires_at": None,
            "summary": outcome.summary,
            "feature_count": outcome.feature_count,
            "result_path": outcome.result_path,
            "classes_path": outcome.classes_path,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
        }
        if outcome.tiles_done is not None:
            values["tiles_done"] = outcome.tiles_done
        if outcome.tiles_total is not None:
            values["tiles_total"] = outcome.tiles_total
        with self._write() as conn:
            n = conn.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id, jobs.c.lease_token == claim.token, jobs.c.status == RUNNING)
                .values(**values)
            ).rowcount
        return n == 1

    def release(self, claim: Claim, *, count_attempt: bool = False, error: str | None = None) -> bool:
        """Give a claimed job back to the queue (a runner shutting down, or a transient failure).
        A graceful release does not use up one of the job's attempts."""
        now = self.clock()
        values: dict[str, Any] = {
            "status": QUEUED, "lease_token": None, "lease_owner": None, "lease_expires_at": None, "updated_at": now,
        }
        if not count_attempt:
            values["attempts"] = jobs.c.attempts - 1
        if error:
            values["error_message"] = error
        with self._write() as conn:
            n = conn.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id, jobs.c.lease_token == claim.token, jobs.c.status == RUNNING)
                .values(**values)
            ).rowcount
        return n == 1

    def queued_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(_QUEUED_COUNT).scalar_one())

    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def listen(self, on_job: Callable[[], None], stop: threading.Event, *, timeout: float = 5.0) -> None:
        """PostgreSQL only: call ``on_job`` whenever a job is submitted (LISTEN/NOTIFY), until
        ``stop`` is set; reconnects after errors. Runners still poll, so this only cuts latency."""
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=timeout, stop_after=1):
                            on_job()
            except Exception:  # the database restarted or the network blinked: listen again shortly
                log.warning("LISTEN %s failed; retrying", NOTIFY_CHANNEL, exc_info=True)
                stop.wait(timeout)


__all__ = [
    "CANCELLED", "FAILED", "FINISHED", "QUEUED", "RUNNING", "STATUSES", "SUCCEEDED",
    "Beat", "Claim", "Job", "JobStore", "NewJob", "Outcome", "Page", "decode_cursor",
]
