"""The job table. Alembic migrations (``service/migrations``) create and change it; this module is
what the code reads and writes, and a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Double, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# Statuses a job moves through: queued -> running -> succeeded | failed | cancelled.
# A running job whose lease expires goes back to running under a new lease (or fails for good
# after max_attempts claims); a queued job can be cancelled before it ever runs.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),  # SHA-256 of the API key that submitted it
    Column("status", String(16), nullable=False),
    Column("scene", Text, nullable=False),  # resolved local path, stored upload, or URL
    Column("scene_kind", String(8), nullable=False),  # path | upload | url
    Column("scene_name", Text, nullable=False),  # as the client named it (upload: its file name)
    Column("site_id", String(128)),
    Column("acquired_at", String(40)),  # ISO 8601, as given
    Column("options", JSON, nullable=False),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    # Times are seconds since the epoch (UTC), so lease arithmetic is the same on every database.
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_token", String(32)),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", Double),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("tiles_done", Integer, nullable=False, default=0),
    Column("tiles_total", Integer),
    Column("summary", JSON),
    Column("feature_count", Integer),
    Column("result_path", Text),  # relative to the results folder
    Column("classes_path", Text),
    Column("error_code", String(64)),
    Column("error_message", Text),
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    Index("ix_jobs_status_created_at", "status", "created_at"),
    Index("ix_jobs_owner_created_at", "owner", "created_at"),
    Index("ix_jobs_owner_site_created_at", "owner", "site_id", "created_at"),
)
