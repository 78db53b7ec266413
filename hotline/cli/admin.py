"""Administration commands: database migration, staff and referrer accounts, and API tokens."""

from __future__ import annotations

import click
from sqlmodel import select
from werkzeug.security import generate_password_hash

from hotline import accounts, phones, webhooks
from hotline import tokens as token_store
from hotline.clock import local, now
from hotline.config import ConfigError, load_settings
from hotline.models import ApiToken, User
from hotline.referrers import REFERRER_ROLES, InvalidReferrerPhone, is_referrer, referrer_mobile
from hotline.towns import all_towns, find_town
from hotline.validation import InputError
from hotline.vocabulary import REFERRAL_SOURCES, ROLES

COMMITTEE_MAX = 64


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


@click.group(help="Staff and referrer accounts.")
def users() -> None:
    pass


# Staff passwords guard residents' phone numbers and addresses; the demo's random passwords are longer.
MIN_PASSWORD_LENGTH = 10


@users.command("create", help="Create a staff or referrer account; the password is asked for unless given.")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES + REFERRER_ROLES), required=True,
              help="What the account may do; a referrer role is also the referral source it files under.")
@click.option("--display-name", help="Name shown to colleagues; defaults to the username.")
@click.option("--phone", help="Mobile number: supervisor alerts for staff, status SMS for referrers (required).")
@click.option("--town", help="Referrers only (required): name or statistical code of the town (街镇) they serve.")
@click.option("--committee", help="Referrers only (required): their residents' or village committee (居委/村委).")
@click.option("--on-duty/--off-duty", default=False, help="Receive supervisor alerts now.")
@click.password_option(help="Password (asked for twice when not given).")
def users_create(username: str, role: str, display_name: str | None, phone: str | None, town: str | None,
                 committee: str | None, on_duty: bool, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        message = f"密码至少 {MIN_PASSWORD_LENGTH} 个字符 / use at least {MIN_PASSWORD_LENGTH} characters"
        raise click.BadParameter(message, param_hint="--password")
    runtime = _runtime()
    with runtime.transaction() as session:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise click.ClickException(f"user {username!r} already exists")
        if is_referrer(role):
            fields = _referrer_fields(session, role, phone, town, committee)
        else:
            fields = _staff_fields(role, phone, town, committee)
        session.add(User(username=username, display_name=display_name or username, role=role, on_duty=on_duty,
                         password_hash=generate_password_hash(password), **fields))
    click.echo(f"created {role} {username}")


def _referrer_fields(session, role: str, phone: str | None, town: str | None, committee: str | None) -> dict:
    missing = [option for option, value in (("--phone", phone), ("--town", town), ("--committee", committee))
               if not (value or "").strip()]
    if missing:
        raise click.UsageError(f"a {role} account needs {', '.join(missing)}")
    if len(committee.strip()) > COMMITTEE_MAX:
        raise click.BadParameter(f"longer than {COMMITTEE_MAX} characters", param_hint="--committee")
    found = find_town(session, town.strip())
    if found is None:
        names = ", ".join(known.name for known in all_towns(session)) or "none; run `hotline db upgrade` first"
        raise click.BadParameter(f"unknown town {town!r}; known towns: {names}", param_hint="--town")
    try:
        mobile = referrer_mobile(phone)
    except InvalidReferrerPhone as error:
        raise click.BadParameter(f"{error}; give a mainland mobile number such as 13812345678",
                                 param_hint="--phone") from None
    return {"phone": mobile, "town_code": found.code, "committee": committee.strip()}


@users.command("list", help="List every account: role, active, locked out until, last login.")
def users_list() -> None:
    from hotline.cli.agencies import format_table
    from hotline.web.auth import locked_until

    runtime = _runtime()
    tz = runtime.settings.timezone
    at = now()
    with runtime.transaction() as session:
        rows = accounts.all_users(session)
        logins = accounts.last_logins(session)
        table = [(user.username, user.display_name, user.role, "yes" if user.active else "no",
                  _when(locked_until(session, user.username, at), tz), _when(logins.get(user.id), tz))
                 for user in rows]
    for line in format_table(("USERNAME", "NAME", "ROLE", "ACTIVE", "LOCKED UNTIL", "LAST LOGIN"), table):
        click.echo(line)


BY_OPTION = click.option("--by", "admin_name", required=True, help="Username of the admin making the change.")


@users.command("unlock", help="Clear the login lockout that repeated wrong passwords put on USERNAME.")
@click.argument("username")
@BY_OPTION
def users_unlock(username: str, admin_name: str) -> None:
    from hotline.web.auth import unlock

    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        unlocked = unlock(session, user, admin.id, now())
    click.echo(f"unlocked {username}" if unlocked else f"{username} was not locked out")


@users.command("deactivate", help="Stop USERNAME from logging in, end its open sessions and revoke its API tokens.")
@click.argument("username")
@BY_OPTION
def users_deactivate(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        change = _raising_click_errors(lambda: accounts.set_active(session, user, False, admin.id, now()))
    if not change.changed:
        click.echo(f"{username} was already inactive")
        return
    click.echo(f"deactivated {username}; its open sessions have ended")
    if change.revoked_tokens:
        click.echo(f"revoked {len(change.revoked_tokens)} API token(s) of {username}: "
                   f"{', '.join(change.revoked_tokens)}")


@users.command("activate", help="Let a deactivated USERNAME log in again; its revoked API tokens stay revoked.")
@click.argument("username")
@BY_OPTION
def users_activate(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        change = accounts.set_active(session, user, True, admin.id, now())
        revoked = accounts.revoked_token_count(session, user)
    if not change.changed:
        click.echo(f"{username} was already active")
        return
    click.echo(f"activated {username}")
    if revoked:
        click.echo(f"its {revoked} revoked API token(s) stay revoked; `hotline tokens create --role ROLE "
                   f"--user {username}` issues a new one")


@users.command("reset-password", help="Give USERNAME a new random password and print it once; only its hash is kept. "
                                      "Every open session of USERNAME ends.")
@click.argument("username")
@BY_OPTION
def users_reset_password(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        password = accounts.reset_password(session, user, admin.id, now())
    click.echo(f"every open session of {username} has ended")
    click.echo(f"new password for {username} (shown only now): {password}")


def _admin_and_user(session, admin_name: str, username: str):
    admin = _raising_click_errors(lambda: accounts.require_admin(session, admin_name))
    user = accounts.find_user(session, username)
    if user is None:
        raise click.ClickException(f"user {username!r} not found; `hotline users list` shows every account")
    return admin, user


def _raising_click_errors(change):
    try:
        return change()
    except InputError as error:
        raise click.ClickException(str(error)) from None


def _staff_fields(role: str, phone: str | None, town: str | None, committee: str | None) -> dict:
    if town or committee:
        raise click.UsageError(f"--town and --committee are for referrer accounts, not for a {role}")
    if not phone:
        return {"phone": None}
    try:
        return {"phone": phones.normalise(phone).e164}
    except phones.InvalidPhoneNumber:
        raise click.BadParameter(f"{phone!r} is not a valid phone number", param_hint="--phone") from None


@click.group(help="API tokens and the webhooks of platform tokens.")
def tokens() -> None:
    pass


@tokens.command("create", help="Create an API token and print it alone on stdout; it is stored only hashed.")
@click.option("--source", type=click.Choice(REFERRAL_SOURCES), help="Referral source the token files under.")
@click.option("--role", type=click.Choice(ROLES), help="Staff role for the read and workflow API.")
@click.option("--user", "username", help="Staff member who acts with a role token (needed to claim tickets).")
@click.option("--name", help="Label to recognise the token by; defaults to the source or role.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(tuple(token_store.SCOPES)),
              help="What a source token may do; repeat for several. Default: "
                   f"{' '.join(token_store.DEFAULT_SOURCE_SCOPES)}.")
def tokens_create(source: str | None, role: str | None, username: str | None, name: str | None,
                  scopes: tuple[str, ...]) -> None:
    if (source is None) == (role is None):
        raise click.UsageError("give exactly one of --source or --role")
    if role is not None and scopes:
        raise click.UsageError("--scope is for source tokens; a staff token's role decides what it may do")
    runtime = _runtime()
    with runtime.transaction() as session:
        user_id = None
        if username:
            user = session.exec(select(User).where(User.username == username)).first()
            if user is None:
                raise click.ClickException(f"user {username!r} not found; create it with `hotline users create`")
            if role is None or user.role != role:
                raise click.ClickException(f"user {username!r} is a {user.role}; give --role {user.role}")
            # NOTE: a deactivation committed between this check and the insert leaves the new token live.
            # Authentication does not look at the account, so only `hotline tokens revoke` ends that token.
            if not user.active:
                raise click.ClickException(f"user {username!r} is deactivated; activate it first with "
                                           f"`hotline users activate {username} --by ADMIN`")
            user_id = user.id
        secret = token_store.create_token(session, name or source or role, source=source, role=role,
                                          user_id=user_id, scopes=scopes or None)
    click.echo(secret)


@tokens.command("list", help="List every token: prefix, name, source or role, scopes, created, last used, revoked.")
def tokens_list() -> None:
    runtime = _runtime()
    tz = runtime.settings.timezone
    with runtime.transaction() as session:
        rows = token_store.all_tokens(session)
    header = ("PREFIX", "NAME", "SOURCE/ROLE", "SCOPES", "CREATED", "LAST USED", "REVOKED")
    table = [header] + [
        (token.prefix, token.name, token.source or f"role:{token.role}",
         " ".join(token.scopes or []) if token.source else "(role)", _when(token.created_at, tz),
         _when(token.last_used_at, tz), _when(token.revoked_at, tz))
        for token in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _when(instant, tz) -> str:
    return "-" if instant is None else local(instant, tz).strftime("%Y-%m-%d %H:%M")


@tokens.command("revoke", help="Revoke the token whose prefix starts with PREFIX; it stops working at once.")
@click.argument("prefix")
def tokens_revoke(prefix: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        token = _token_by_prefix(session, prefix)
        revoked = token_store.revoke(session, token, now())
    click.echo(f"revoked {token.prefix} ({token.name})" if revoked else f"{token.prefix} was already revoked")


@tokens.command("webhook", help="Register, show or remove the webhook of the source token whose prefix is PREFIX.")
@click.argument("prefix")
@click.option("--url", help="https URL that receives the referrals' status changes; its host must resolve to public "
                            "addresses. Prints the new signing secret.")
@click.option("--show", is_flag=True, help="Print the webhook and its latest deliveries.")
@click.option("--remove", is_flag=True, help="Delete the webhook; pending deliveries fail.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500),
              help="Deliveries shown by --show.")
def tokens_webhook(prefix: str, url: str | None, show: bool, remove: bool, limit: int) -> None:
    if sum((url is not None, show, remove)) != 1:
        raise click.UsageError("give exactly one of --url, --show or --remove")
    runtime = _runtime()
    if url is not None:
        _register_webhook(runtime, prefix, url)
        return
    with runtime.transaction() as session:
        token = _source_token(session, prefix)
        webhook = webhooks.find_for_token(session, token.id)
        if webhook is None:
            raise click.ClickException(f"{token.prefix} has no webhook; register one with --url")
        if remove:
            webhooks.remove(session, webhook)
            click.echo(f"removed the webhook of {token.prefix}")
            return
        _show_webhook(session, webhook, limit, runtime.settings.timezone)


def _register_webhook(runtime, prefix: str, url: str) -> None:
    """Check the token, then the URL outside any transaction (its DNS lookup can take seconds), then register."""
    with runtime.transaction() as session:
        token_id = _source_token(session, prefix).id
    try:
        checked = webhooks.check_url(url, runtime.settings.webhook_allow_loopback)
    except InputError as error:
        raise click.BadParameter(str(error), param_hint="--url") from None
    with runtime.transaction() as session:
        token = session.get(ApiToken, token_id)
        webhook, created, secret = webhooks.register(session, token, checked, now())
    click.echo(f"{'registered' if created else 'replaced'} webhook {webhook.url} for {token.prefix} ({token.source})")
    click.echo(f"signing secret (shown only now): {secret}")


def _source_token(session, prefix: str):
    token = _token_by_prefix(session, prefix)
    if token.source is None:
        raise click.ClickException(f"{token.prefix} is a staff token; webhooks belong to source tokens")
    return token


def _show_webhook(session, webhook, limit: int, tz) -> None:
    click.echo(f"url: {webhook.url}")
    click.echo(f"source: {webhook.source}")
    click.echo(f"registered: {_when(webhook.created_at, tz)}, last changed: {_when(webhook.updated_at, tz)}")
    rows = webhooks.deliveries(session, webhook, limit)
    if not rows:
        click.echo("deliveries: none yet")
        return
    click.echo(f"deliveries (newest {len(rows)}):")
    for message, number in rows:
        view = webhooks.delivery_view(message, number)
        at = _when(message.sent_at or message.created_at, tz)
        detail = f" - {message.last_error}" if message.last_error and view["state"] != "delivered" else ""
        click.echo(f"  {message.id}  {at}  {number or '-'}  {view['body'].get('status', '-')}  {view['state']}"
                   f"  attempts {message.attempts}{detail}")


def _token_by_prefix(session, prefix: str):
    try:
        return token_store.find_by_prefix(session, prefix)
    except token_store.TokenNotFound as error:
        raise click.ClickException(str(error)) from None
