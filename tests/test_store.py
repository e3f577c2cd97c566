"""The job store on SQLite (a WAL file) and on the real PostgreSQL server of the development and CI
machines (127.0.0.1:5432, trust auth, database `test`; each run uses its own schema)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.jobs.db import current_revision, make_engine, migrate
from service.jobs.errors import IdempotencyConflict, JobConflict, JobNotFound, QueueFull
from service.jobs.store import JobStore, NewJob, Outcome
from tests.jobservice import postgres_schema


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001  # strictly increasing, like real time
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture()
def clock():
    return FakeClock()


@pytest.fixture()
def store(store_url, clock):
    s = JobStore.open(store_url, clock=clock)
    yield s
    s.close()


def new(owner="alice", scene="/data/a.tif", **kw) -> NewJob:
    return NewJob(owner=owner, scene=scene, scene_kind="path", scene_name=scene, options={"classes": ["railcar"]}, **kw)


def submit(store, job=None, limit=100):
    return store.submit(job or new(), queue_limit=limit, retry_after=7)[0]


def test_migrations_are_idempotent_and_match_the_code(store, store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from service.jobs.schema import metadata

    assert current_revision(store.engine) == "0002"
    migrate(store.engine)  # a second start changes nothing
    assert current_revision(store.engine) == "0002"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == []


def test_concurrent_first_starts_migrate_once(store_url):
    engines = [make_engine(store_url) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(migrate, engines))
    assert {current_revision(e) for e in engines} == {"0002"}
    for e in engines:
        e.dispose()


def test_an_older_schema_is_upgraded_in_place(store_url):
    from alembic import command

    from service.jobs.db import alembic_config

    engine = make_engine(store_url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(engine, conn), "0001")
        conn.commit()
    old = JobStore(engine)
    kept = old.submit(new(), queue_limit=10, retry_after=1)[0]
    upgraded = JobStore.open(store_url)
    assert current_revision(upgraded.engine) == "0002"
    assert upgraded.get(kept.id).status == "queued"
    upgraded.close()
    engine.dispose()


def test_submit_get_list_and_owner_isolation(store):
    a = submit(store, new("alice"))
    b = submit(store, new("bob"))
    assert store.get(a.id).status == "queued" and a.options == {"classes": ["railcar"]}
    assert store.get(a.id, "alice").id == a.id
    with pytest.raises(JobNotFound):
        store.get(a.id, "bob")
    with pytest.raises(JobNotFound):
        store.cancel(a.id, "bob")
    assert [j.id for j in store.list("bob").jobs] == [b.id]


def test_list_pages_newest_first(store):
    ids = [submit(store).id for _ in range(7)]
    seen, cursor = [], None
    while True:
        page = store.list("alice", limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert store.list("alice", statuses=["running"]).jobs == []


def test_idempotency_key_same_request_same_job(store):
    first, created = store.submit(new(idempotency_key="k1", request_hash="h"), queue_limit=10, retry_after=1)
    again, created_again = store.submit(new(idempotency_key="k1", request_hash="h"), queue_limit=10, retry_after=1)
    assert created and not created_again and first.id == again.id
    with pytest.raises(IdempotencyConflict):
        store.submit(new(idempotency_key="k1", request_hash="other"), queue_limit=10, retry_after=1)
    other_owner, created = store.submit(new("bob", idempotency_key="k1", request_hash="h"), queue_limit=10, retry_after=1)
    assert created and other_owner.id != first.id


def test_idempotent_submissions_racing_make_one_job(store):
    def go(_):
        return store.submit(new(idempotency_key="race", request_hash="h"), queue_limit=100, retry_after=1)[0].id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(go, range(16)))
    assert len(ids) == 1
    assert store.counts()["queued"] == 1


def test_queue_limit(store):
    submit(store, limit=2)
    submit(store, limit=2)
    with pytest.raises(QueueFull) as err:
        submit(store, limit=2)
    assert err.value.retry_after == 7


def test_claims_are_atomic_under_contention(store):
    ids = {submit(store).id for _ in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def runner(n):
        while True:
            claim = store.claim(f"runner-{n}", lease_seconds=60, max_attempts=3)
            if claim is None:
                return
            with lock:
                claimed.append(claim.job_id)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(runner, range(6)))
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert store.counts()["running"] == 12


def test_claims_go_oldest_first(store):
    first, second = submit(store), submit(store)
    assert store.claim("r", lease_seconds=10, max_attempts=3).job_id == first.id
    assert store.claim("r", lease_seconds=10, max_attempts=3).job_id == second.id
    assert store.claim("r", lease_seconds=10, max_attempts=3) is None


def test_expired_lease_is_claimed_again_and_the_old_runner_is_fenced_off(store, clock):
    job = submit(store)
    old = store.claim("dead", lease_seconds=5, max_attempts=3)
    assert store.heartbeat(old, lease_seconds=5, tiles_done=2, tiles_total=9).held
    assert store.claim("other", lease_seconds=5, max_attempts=3) is None  # lease still held
    clock.advance(6)
    new_claim = store.claim("other", lease_seconds=5, max_attempts=3)
    assert new_claim.job_id == job.id and new_claim.job.attempts == 2
    assert new_claim.job.tiles_done == 2  # progress so far is kept until the new runner reports
    # The first runner wakes up: its heartbeat and its result are refused.
    assert not store.heartbeat(old, lease_seconds=5).held
    assert not store.finish(old, Outcome("succeeded", feature_count=1))
    assert store.finish(new_claim, Outcome("succeeded", feature_count=3, result_path=f"{job.id}/detections.geojson"))
    done = store.get(job.id)
    assert done.status == "succeeded" and done.feature_count == 3 and done.lease_token is None


def test_attempts_are_bounded(store, clock):
    job = submit(store)
    for attempt in (1, 2):
        claim = store.claim("r", lease_seconds=1, max_attempts=2)
        assert claim.job.attempts == attempt
        clock.advance(2)
    assert store.claim("r", lease_seconds=1, max_attempts=2) is None
    failed = store.get(job.id)
    assert failed.status == "failed" and failed.error_code == "attempts_exhausted"


def test_graceful_release_does_not_use_an_attempt(store):
    job = submit(store)
    claim = store.claim("r", lease_seconds=30, max_attempts=3)
    assert store.release(claim)
    assert store.get(job.id).status == "queued" and store.get(job.id).attempts == 0
    again = store.claim("r2", lease_seconds=30, max_attempts=3)
    assert again.job.attempts == 1
    assert not store.release(claim)  # the old claim's token is dead


def test_cancel_queued_running_and_finished(store, clock):
    queued = submit(store)
    running = submit(store)
    cancelled = store.cancel(queued.id, "alice")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    claim = store.claim("r", lease_seconds=5, max_attempts=3)
    assert claim.job_id == running.id  # the cancelled job is never claimed
    flagged = store.cancel(running.id, "alice")
    assert flagged.status == "running" and flagged.cancel_requested
    assert store.heartbeat(claim, lease_seconds=5).cancel_requested
    assert store.finish(claim, Outcome("cancelled", error_code="cancelled", error_message="stopped"))
    with pytest.raises(JobConflict):
        store.cancel(running.id, "alice")


def test_runner_that_dies_after_a_cancel_request_leaves_the_job_cancelled(store, clock):
    job = submit(store)
    store.claim("r", lease_seconds=1, max_attempts=3)
    store.cancel(job.id)
    clock.advance(2)
    assert store.claim("r2", lease_seconds=1, max_attempts=3) is None
    assert store.get(job.id).status == "cancelled"


def test_counts(store):
    submit(store)
    submit(store)
    store.claim("r", lease_seconds=10, max_attempts=3)
    assert store.counts() == {"queued": 1, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 0}


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # LISTEN/NOTIFY: SQLite runners poll
def test_postgresql_runners_are_woken_by_submissions(store):
    assert not store.is_sqlite()
    woken, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=store.listen, args=(woken.set, stop), kwargs={"timeout": 0.2}, daemon=True)
    listener.start()
    try:
        deadline = 50
        while not woken.is_set() and deadline:  # submit until the listener (connecting) hears one
            submit(store)
            woken.wait(0.1)
            deadline -= 1
        assert woken.is_set()
    finally:
        stop.set()
        listener.join(5)
    assert not listener.is_alive()
