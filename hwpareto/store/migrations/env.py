"""Alembic environment of hwpareto's store.

hwpareto's revisions are recorded in ``hwp_alembic_version`` (Optuna keeps its own ``alembic_version`` in the same
database) and autogenerate only looks at ``hwp_`` tables. :class:`hwpareto.store.Store` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line falls back to the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from hwpareto.store._models import VERSION_TABLE, Base, include_name


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _engine = create_engine(context.config.get_main_option("sqlalchemy.url", ""), poolclass=pool.NullPool)
    with _engine.begin() as _conn:
        _run(_conn)
