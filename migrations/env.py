"""Alembic environment for the hotline schema.

The database comes from one of two places:

1. `config.attributes["connection"]`, an open SQLAlchemy connection that `hotline.migrate` passes in
   when the service or a test migrates a database programmatically;
2. otherwise `HOTLINE_DATABASE_URL`, read through `hotline.config.load_settings()`, which is what the
   `alembic` command line uses.

SQLite cannot alter most column and constraint definitions in place, so on SQLite every operation is
rendered and run in batch mode (copy the table, then swap). The same scripts run unchanged on PostgreSQL.
"""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import hotline.models  # noqa: F401  (registers every table on SQLModel.metadata)
from hotline.config import load_settings
from hotline.migrate import make_migration_engine

config = context.config
target_metadata = SQLModel.metadata
log = logging.getLogger("hotline.migrate")


def configure_cli_logging() -> None:
    # Only the alembic command line owns logging. Called from the service, fileConfig would replace the
    # service's root handler and level with the ones in alembic.ini.
    if config.cmd_opts is not None and config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)


def context_options(dialect_name: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    """Print the SQL for `alembic upgrade --sql` instead of running it."""
    url = load_settings().database_url
    dialect_name = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **context_options(dialect_name)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    context.configure(connection=connection, **context_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return

    engine = make_migration_engine(load_settings().database_url)
    try:
        with engine.begin() as connection:
            log.info("Migrate: running against %s", engine.url.render_as_string())
            run_migrations_on(connection)
    finally:
        engine.dispose()


configure_cli_logging()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
