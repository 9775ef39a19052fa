"""Alembic environment: runs against the engine handed over by ``db.schema.alembic_config``."""

from __future__ import annotations

from alembic import context

from ecode_jupyter.db.metadata import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
