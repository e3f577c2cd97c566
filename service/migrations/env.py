"""Alembic environment. The job store runs migrations in code (``service.jobs.db.migrate``), passing
its connection; ``alembic -c service/migrations/alembic.ini`` also works, with the URL taken from
RAILSIGHT_DATABASE_URL / RAILSIGHT_STATE_DIR like the service."""

from __future__ import annotations

from alembic import context

from service.jobs.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from service.jobs.db import make_engine
    from service.service_settings import ServiceSettings

    engine = make_engine(ServiceSettings().store_url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them against a database")
run_migrations_online()
