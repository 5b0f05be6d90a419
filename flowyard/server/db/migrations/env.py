"""Alembic environment for Flowyard's tables; run through flowyard.server.db.engine.migrate."""

from alembic import context

from flowyard.server.db.engine import VERSION_TABLE
from flowyard.server.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
