"""Administration commands: database migration, staff accounts and API tokens."""

from __future__ import annotations

import click
from sqlmodel import select
from werkzeug.security import generate_password_hash

from hotline import tokens as token_store
from hotline.config import ConfigError, load_settings
from hotline.models import User
from hotline.vocabulary import REFERRAL_SOURCES, ROLES


def _runtime():
    from hotline.runtime import build_runtime, install

    try:
        return install(build_runtime(load_settings()))
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@click.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Migrate the database at HOTLINE_DATABASE_URL to the latest schema.")
def db_upgrade() -> None:
    from hotline.migrate import upgrade

    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    upgrade(settings.database_url)
    click.echo("database is at the latest revision")


@click.group(help="Staff accounts.")
def users() -> None:
    pass


@users.command("create", help="Create a staff account; the password is asked for unless given.")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
@click.option("--display-name", help="Name shown to colleagues; defaults to the username.")
@click.option("--phone", help="Mobile number in E.164 for supervisor alerts.")
@click.option("--on-duty/--off-duty", default=False, help="Receive supervisor alerts now.")
@click.password_option(help="Password (asked for twice when not given).")
def users_create(username: str, role: str, display_name: str | None, phone: str | None, on_duty: bool,
                 password: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise click.ClickException(f"user {username!r} already exists")
        session.add(User(username=username, display_name=display_name or username, role=role, phone=phone,
                         on_duty=on_duty, password_hash=generate_password_hash(password)))
    click.echo(f"created {role} {username}")


@click.group(help="API tokens.")
def tokens() -> None:
    pass


@tokens.command("create", help="Create an API token and print it alone on stdout; it is stored only hashed.")
@click.option("--source", type=click.Choice(REFERRAL_SOURCES), help="Referral source the token files under.")
@click.option("--role", type=click.Choice(ROLES), help="Staff role for the read and workflow API.")
@click.option("--user", "username", help="Staff member who acts with a role token (needed to claim tickets).")
@click.option("--name", help="Label to recognise the token by; defaults to the source or role.")
def tokens_create(source: str | None, role: str | None, username: str | None, name: str | None) -> None:
    if (source is None) == (role is None):
        raise click.UsageError("give exactly one of --source or --role")
    runtime = _runtime()
    with runtime.transaction() as session:
        user_id = None
        if username:
            user = session.exec(select(User).where(User.username == username)).first()
            if user is None:
                raise click.ClickException(f"user {username!r} not found; create it with `hotline users create`")
            if role is None or user.role != role:
                raise click.ClickException(f"user {username!r} is a {user.role}; give --role {user.role}")
            user_id = user.id
        secret = token_store.create_token(session, name or source or role, source=source, role=role,
                                          user_id=user_id)
    click.echo(secret)
