"""Run the Alembic migrations in migrations/ from Python, for `hotline db upgrade` and the tests.

The scripts are found through PROJECT_ROOT, never through the working directory, so this works from
any folder. It needs the source tree (or an editable install, as in the container image), because
migrations/ and alembic.ini are not part of the installed package.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, pool

from hotline.config import PROJECT_ROOT

log = logging.getLogger("hotline.migrate")

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config() -> Config:
    """Build the Alembic configuration with an absolute script_location.

    Raises FileNotFoundError when migrations/ is missing, which happens when the package was installed
    without its source tree.
    """
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic migrations not found at {MIGRATIONS_DIR}: install the hotline with `pip install -e .` "
            "from its source tree"
        )

    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at `database_url` to `revision` ("head" is the newest).

    All steps run in one transaction, so a failed step leaves the schema as it was, on SQLite too.
    Running it again on an up-to-date database changes nothing.
    """
    _run(command.upgrade, database_url, revision)


def current_revision(database_url: str) -> str | None:
    """Return the Alembic revision the database at `database_url` is at, or None when it has no schema yet."""
    engine = make_migration_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def downgrade(database_url: str, revision: str) -> None:
    """Downgrade the database at `database_url` to `revision` ("base" removes every table), in one transaction."""
    _run(command.downgrade, database_url, revision)


def make_migration_engine(database_url: str) -> Engine:
    """Create a single-use engine for migrations, with transactional DDL on SQLite as well.

    Python 3.11's sqlite3 driver opens a transaction only before INSERT, UPDATE or DELETE, so CREATE and
    ALTER statements commit on their own and a failed upgrade would keep the tables made before the
    failure. With the driver's transaction handling off and an explicit BEGIN, the whole run is atomic.
    """
    engine = create_engine(database_url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # As hotline.store does for the app, so a new SQLite file may go in a folder that does not exist yet.
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _disable_driver_transactions)
        event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _disable_driver_transactions(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None


def _begin_sqlite_transaction(connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _run(alembic_command, database_url: str, revision: str) -> None:
    config = alembic_config()
    engine = make_migration_engine(database_url)
    name = alembic_command.__name__
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            log.info("Migrate: %s of %s to %s started", name, engine.url.render_as_string(), revision)
            alembic_command(config, revision)
    finally:
        engine.dispose()

    log.info("Migrate: %s of %s to %s finished", name, engine.url.render_as_string(), revision)
