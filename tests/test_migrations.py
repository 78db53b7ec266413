"""The Alembic revisions build exactly the schema the models declare, on SQLite and on PostgreSQL.

These tests start from empty databases of their own, because the shared `database_url` fixture already
contains a schema made by `create_all`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, create_engine, inspect, text
from sqlmodel import SQLModel

import hotline.models  # noqa: F401  (registers the tables)
from hotline import migrate

POSTGRES_ADMIN_URL = os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A database with no tables at all, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return

    name = f"hotline_migrations_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means the server is missing
        admin.dispose()
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true requires every service)", pytrace=False)
        pytest.skip(message)

    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def schema_differences(database_url: str) -> list:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def describe(difference) -> str:
    """Render one compare_metadata entry as a line such as "add_table ticket" or "modify_type ticket.note: ..."."""
    if isinstance(difference, list):
        return "; ".join(describe(item) for item in difference)

    operation, *details = difference
    if operation.startswith("modify_"):
        _schema, table, column, _existing, old, new = details
        return f"{operation} {table}.{column}: {old!r} -> {new!r}"

    target = details[-1]
    table = getattr(target, "table", None)
    prefix = f"{table.name}." if table is not None else ""
    return f"{operation} {prefix}{getattr(target, 'name', target)}"


def assert_schema_matches_models(database_url: str) -> None:
    differences = [describe(difference) for difference in schema_differences(database_url)]
    assert not differences, (
        "the schema built by the migrations differs from the models; add a revision with "
        "`make migration MESSAGE=...`:\n" + "\n".join(differences)
    )


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_revisions_have_one_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()

    assert heads, "migrations/versions has no revision: generate one with `make migration MESSAGE=...`"
    assert len(heads) == 1, f"revisions branch into heads {heads}: add a merge revision with `alembic merge heads`"


def test_upgrade_matches_models(empty_database_url):
    migrate.upgrade(empty_database_url)

    assert_schema_matches_models(empty_database_url)


def test_upgrade_twice_changes_nothing(empty_database_url):
    migrate.upgrade(empty_database_url)
    tables_after_first = table_names(empty_database_url)

    migrate.upgrade(empty_database_url)

    assert table_names(empty_database_url) == tables_after_first
    assert_schema_matches_models(empty_database_url)


def test_downgrade_to_base_then_upgrade(empty_database_url):
    migrate.upgrade(empty_database_url)

    migrate.downgrade(empty_database_url, "base")

    assert table_names(empty_database_url) <= {"alembic_version"}

    migrate.upgrade(empty_database_url)

    assert_schema_matches_models(empty_database_url)


def test_upgrade_revokes_tokens_of_inactive_users(empty_database_url):
    migrate.upgrade(empty_database_url, "7b2e4d1c9a30")
    created = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    revoked_earlier = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        metadata = MetaData()
        users = Table("user", metadata, autoload_with=connection)
        api_tokens = Table("apitoken", metadata, autoload_with=connection)
        connection.execute(users.insert(), [
            {"id": 1, "username": "wang.li", "display_name": "王丽", "role": "operator", "password_hash": "x",
             "on_duty": False, "active": True, "created_at": created},
            {"id": 2, "username": "zhao.min", "display_name": "赵敏", "role": "operator", "password_hash": "x",
             "on_duty": False, "active": False, "created_at": created},
        ])
        connection.execute(api_tokens.insert(), [
            _api_token_values("active user", user_id=1, revoked_at=None, created=created),
            _api_token_values("inactive user", user_id=2, revoked_at=None, created=created),
            _api_token_values("inactive user, revoked earlier", user_id=2, revoked_at=revoked_earlier, created=created),
            _api_token_values("source", user_id=None, revoked_at=None, created=created),
        ])
    engine.dispose()

    migrate.upgrade(empty_database_url)

    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT name, revoked_at FROM apitoken")).all())
            versions = connection.execute(text('SELECT session_version FROM "user" ORDER BY id')).scalars().all()
    finally:
        engine.dispose()
    assert rows["inactive user"] is not None
    assert rows["active user"] is None
    assert rows["source"] is None
    assert str(rows["inactive user, revoked earlier"]).startswith("2026-12-02 09:00"), "an earlier revocation stays"
    assert versions == [0, 0]


def _api_token_values(name: str, user_id: int | None, revoked_at: datetime | None, created: datetime) -> dict:
    """Build an apitoken row: a staff token acting as `user_id`, or a source token when it is None."""
    source, role = ("shequyun", None) if user_id is None else (None, "operator")
    return {"token_hash": name.ljust(64, "-"), "prefix": name[:10], "name": name, "source": source, "role": role,
            "scopes": [], "user_id": user_id, "created_at": created, "revoked_at": revoked_at}


def queue_index_definitions(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE name IN ('ix_ticket_open_queue', 'ix_ticket_queue_order')"
            )).all())
    finally:
        engine.dispose()


def test_sqlite_queue_indexes_put_nulls_last(tmp_path):
    """compare_metadata skips SQLite expression indexes, so this checks the two queue indexes by their SQL."""
    database_url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    nulls_last = "(priority, queue_rank, due_at IS NULL, due_at, created_at, id)"
    plain = "(priority, queue_rank, due_at, created_at, id)"

    migrate.upgrade(database_url)
    upgraded = queue_index_definitions(database_url)
    migrate.downgrade(database_url, "1afb33168526")
    downgraded = queue_index_definitions(database_url)

    assert nulls_last in upgraded["ix_ticket_open_queue"]
    assert "WHERE status IN ('new', 'in_progress', 'dispatching', 'dispatched', 'waiting')" in \
        upgraded["ix_ticket_open_queue"]
    assert nulls_last in upgraded["ix_ticket_queue_order"]
    assert plain in downgraded["ix_ticket_open_queue"]
    assert plain in downgraded["ix_ticket_queue_order"]


def test_db_upgrade_reports_what_it_did(empty_database_url, tmp_path):
    from click.testing import CliRunner

    from hotline.cli.admin import db

    env = {"HOTLINE_DATABASE_URL": empty_database_url, "HOTLINE_INSTANCE_DIR": str(tmp_path)}
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    head = scripts.get_current_head()
    previous = scripts.get_revision(head).down_revision

    created = CliRunner().invoke(db, ["upgrade"], env=env)
    again = CliRunner().invoke(db, ["upgrade"], env=env)
    migrate.downgrade(empty_database_url, previous)
    migrated = CliRunner().invoke(db, ["upgrade"], env=env)

    assert created.exit_code == 0, created.output
    assert created.output == f"已在空数据库中建立表结构，版本 {head}。\n"
    assert again.output == f"数据库已是最新版本 {head}，无需迁移。\n"
    assert migrated.output == f"数据库已从版本 {previous} 迁移到 {head}。\n"


def test_db_upgrade_unreadable_file_explained(tmp_path):
    from click.testing import CliRunner

    from hotline.cli.admin import db

    text_file = tmp_path / "notes.sqlite3"
    text_file.write_text("not a database")
    env = {"HOTLINE_DATABASE_URL": f"sqlite:///{text_file}", "HOTLINE_INSTANCE_DIR": str(tmp_path)}

    result = CliRunner().invoke(db, ["upgrade"], env=env)

    assert result.exit_code == 1
    assert "无法打开或迁移数据库" in result.output
    assert "file is not a database" in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_creates_sqlite_folder(tmp_path):
    from click.testing import CliRunner

    from hotline.cli.admin import db

    path = tmp_path / "new" / "folder" / "hotline.sqlite3"
    env = {"HOTLINE_DATABASE_URL": f"sqlite:///{path}", "HOTLINE_INSTANCE_DIR": str(tmp_path)}

    result = CliRunner().invoke(db, ["upgrade"], env=env)

    assert result.exit_code == 0, result.output
    assert path.is_file()
