"""Index jobs by owner and site, for a site's time series (GET /v1/jobs?site_id=...).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_site_created_at", "jobs", ["owner", "site_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_site_created_at", table_name="jobs")
