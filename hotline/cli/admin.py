"""Administration commands: database migration, staff and referrer accounts, and API tokens."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError
from sqlmodel import select
from werkzeug.security import generate_password_hash

from hotline import accounts, phones, webhooks
from hotline import tokens as token_store
from hotline.cli.language import N_, LocalizedGroup, cli_language, error_message, gettext, join, label, ngettext
from hotline.clock import local, now
from hotline.config import ConfigError, load_settings
from hotline.models import ApiToken, User
from hotline.referrers import REFERRER_ROLES, InvalidReferrerPhone, is_referrer, referrer_mobile
from hotline.towns import all_towns, find_town
from hotline.validation import InputError
from hotline.vocabulary import REFERRAL_SOURCES, ROLES, SOURCES, STATUSES

COMMITTEE_MAX = 64
# Labels that `hotline tokens webhook --show` prints for hotline.webhooks.DELIVERY_STATES.
DELIVERY_STATE_LABELS = {
    "pending": ("待推送", "Pending"),
    "delivered": ("已送达", "Delivered"),
    "failed": ("推送失败", "Failed"),
}


def _runtime():
    from hotline.runtime import build_runtime, install

    try:
        return install(build_runtime(load_settings()))
    except ConfigError as error:
        raise _configuration_error(error) from None


def _configuration_error(error: ConfigError) -> click.ClickException:
    # NOTE: the detail of a ConfigError stays English; it names the environment variable to fix.
    return click.ClickException(gettext("Invalid configuration: %(error)s", error=error))


@click.group(cls=LocalizedGroup, help=N_("Database schema."))
def db() -> None:
    pass


@db.command("upgrade", help=N_("Migrate the database at HOTLINE_DATABASE_URL to the latest schema."))
def db_upgrade() -> None:
    from hotline.migrate import current_revision, upgrade

    try:
        settings = load_settings()
    except ConfigError as error:
        raise _configuration_error(error) from None
    try:
        before = current_revision(settings.database_url)
        upgrade(settings.database_url)
        after = current_revision(settings.database_url)
    except DatabaseError as error:
        raise _database_error(settings.database_url, error) from None
    if before == after:
        click.echo(gettext("The database was already at the latest revision, %(revision)s.", revision=after))
    elif before is None:
        click.echo(gettext("Created the database schema at revision %(revision)s.", revision=after))
    else:
        click.echo(gettext("Migrated the database from revision %(before)s to %(after)s.", before=before,
                           after=after))


def _database_error(database_url: str, error: DatabaseError) -> click.ClickException:
    """Return a one-line error for a database that cannot be opened or migrated, instead of the driver's traceback."""
    safe_url = make_url(database_url).render_as_string(hide_password=True)
    lines = str(error.orig or error).strip().splitlines()
    reason = lines[0] if lines else type(error.orig or error).__name__
    return click.ClickException(gettext(
        "Cannot open or migrate the database %(url)s: %(reason)s. Check HOTLINE_DATABASE_URL, that the database "
        "exists and that this user may change its schema.", url=safe_url, reason=reason))


@click.group(cls=LocalizedGroup, help=N_("Staff and referrer accounts."))
def users() -> None:
    pass


# Staff passwords guard residents' phone numbers and addresses; the demo's random passwords are longer.
MIN_PASSWORD_LENGTH = 10


@users.command("create", help=N_("Create a staff or referrer account; the password is asked for unless given."))
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES + REFERRER_ROLES), required=True,
              help=N_("What the account may do; a referrer role is also the referral source it files under."))
@click.option("--display-name", help=N_("Name shown to colleagues; defaults to the username."))
@click.option("--phone",
              help=N_("Mobile number: supervisor alerts for staff, status SMS for referrers (required)."))
@click.option("--town",
              help=N_("Referrers only (required): name or statistical code of the town (街镇) they serve."))
@click.option("--committee",
              help=N_("Referrers only (required): their residents' or village committee (居委/村委)."))
@click.option("--on-duty/--off-duty", default=False, help=N_("Receive supervisor alerts now."))
@click.password_option(help=N_("Password (asked for twice when not given)."), prompt=N_("Password"),
                       confirmation_prompt=N_("Repeat the password"))
def users_create(username: str, role: str, display_name: str | None, phone: str | None, town: str | None,
                 committee: str | None, on_duty: bool, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        message = gettext("Use at least %(min)s characters.", min=MIN_PASSWORD_LENGTH)
        raise click.BadParameter(message, param_hint="--password")
    runtime = _runtime()
    with runtime.transaction() as session:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise click.ClickException(gettext("User %(username)s already exists.", username=username))
        if is_referrer(role):
            fields = _referrer_fields(session, role, phone, town, committee)
        else:
            fields = _staff_fields(role, phone, town, committee)
        session.add(User(username=username, display_name=display_name or username, role=role, on_duty=on_duty,
                         password_hash=generate_password_hash(password), **fields))
    click.echo(gettext("Created the %(role)s account %(username)s.", role=label(accounts.ROLE_LABELS, role),
                       username=username))


def _referrer_fields(session, role: str, phone: str | None, town: str | None, committee: str | None) -> dict:
    missing = [option for option, value in (("--phone", phone), ("--town", town), ("--committee", committee))
               if not (value or "").strip()]
    if missing:
        raise click.UsageError(gettext("An account with the role %(role)s needs %(options)s.",
                                       role=label(accounts.ROLE_LABELS, role), options=" ".join(missing)))
    if len(committee.strip()) > COMMITTEE_MAX:
        raise click.BadParameter(gettext("Longer than %(max)s characters.", max=COMMITTEE_MAX),
                                 param_hint="--committee")
    found = find_town(session, town.strip())
    if found is None:
        raise click.BadParameter(_unknown_town_message(session, town), param_hint="--town")
    try:
        mobile = referrer_mobile(phone)
    except InvalidReferrerPhone as error:
        raise click.BadParameter(error_message(error), param_hint="--phone") from None
    return {"phone": mobile, "town_code": found.code, "committee": committee.strip()}


def _unknown_town_message(session, town: str) -> str:
    names = [known.name for known in all_towns(session)]
    if not names:
        return gettext("Unknown town %(town)s, and no towns are stored; run `hotline db upgrade` first.", town=town)
    return gettext("Unknown town %(town)s; known towns: %(names)s.", town=town, names=join(names))


@users.command("list", help=N_("List every account: role, active or deactivated, locked out until, last login."))
def users_list() -> None:
    from hotline.cli.agencies import format_table
    from hotline.web.auth import locked_until

    runtime = _runtime()
    tz = runtime.settings.timezone
    at = now()
    with runtime.transaction() as session:
        rows = accounts.all_users(session)
        logins = accounts.last_logins(session)
        table = [(user.username, user.display_name, label(accounts.ROLE_LABELS, user.role),
                  gettext("Active") if user.active else gettext("Deactivated"),
                  _when(locked_until(session, user.username, at), tz), _when(logins.get(user.id), tz))
                 for user in rows]
    headers = (gettext("Username"), gettext("Name"), gettext("Role"), gettext("Account"), gettext("Locked out until"),
               gettext("Last login"))
    for line in format_table(headers, table):
        click.echo(line)


BY_OPTION = click.option("--by", "admin_name", required=True, help=N_("Username of the admin making the change."))


@users.command("unlock", help=N_("Clear the login lockout that repeated wrong passwords put on USERNAME."))
@click.argument("username")
@BY_OPTION
def users_unlock(username: str, admin_name: str) -> None:
    from hotline.web.auth import unlock

    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        unlocked = unlock(session, user, admin.id, now())
    if unlocked:
        click.echo(gettext("The login lockout of %(username)s is cleared.", username=username))
    else:
        click.echo(gettext("%(username)s was not locked out.", username=username))


@users.command("deactivate",
               help=N_("Stop USERNAME from logging in, end its open sessions and revoke its API tokens."))
@click.argument("username")
@BY_OPTION
def users_deactivate(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        change = _raising_click_errors(lambda: accounts.set_active(session, user, False, admin.id, now()))
    if not change.changed:
        click.echo(gettext("%(username)s was already inactive.", username=username))
        return
    click.echo(gettext("%(username)s is deactivated and can no longer log in; every open session has ended.",
                       username=username))
    if change.revoked_tokens:
        click.echo(ngettext("Revoked %(num)d API token of %(username)s: %(prefixes)s.",
                            "Revoked %(num)d API tokens of %(username)s: %(prefixes)s.",
                            len(change.revoked_tokens), username=username, prefixes=join(change.revoked_tokens)))


@users.command("activate",
               help=N_("Let a deactivated USERNAME log in again; its revoked API tokens stay revoked."))
@click.argument("username")
@BY_OPTION
def users_activate(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        change = accounts.set_active(session, user, True, admin.id, now())
        revoked = accounts.revoked_token_count(session, user)
    if not change.changed:
        click.echo(gettext("%(username)s was already active.", username=username))
        return
    click.echo(gettext("%(username)s is active again.", username=username))
    if revoked:
        click.echo(ngettext("Its %(num)d revoked API token stays revoked; `hotline tokens create --role ROLE "
                            "--user %(username)s` issues a new one.",
                            "Its %(num)d revoked API tokens stay revoked; `hotline tokens create --role ROLE "
                            "--user %(username)s` issues a new one.", revoked, username=username))


@users.command("reset-password", help=N_("Give USERNAME a new random password and print it once; only its hash is "
                                         "kept. Every open session of USERNAME ends."))
@click.argument("username")
@BY_OPTION
def users_reset_password(username: str, admin_name: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        admin, user = _admin_and_user(session, admin_name, username)
        password = accounts.reset_password(session, user, admin.id, now())
    click.echo(gettext("Every open session of %(username)s has ended.", username=username))
    click.echo(gettext("New password of %(username)s, shown only now: %(password)s", username=username,
                       password=password))


def _admin_and_user(session, admin_name: str, username: str):
    admin = _raising_click_errors(lambda: accounts.require_admin(session, admin_name))
    user = accounts.find_user(session, username)
    if user is None:
        raise click.ClickException(gettext("User %(username)s not found; `hotline users list` shows every account.",
                                           username=username))
    return admin, user


def _raising_click_errors(change):
    try:
        return change()
    except InputError as error:
        raise click.ClickException(error_message(error)) from None


def _staff_fields(role: str, phone: str | None, town: str | None, committee: str | None) -> dict:
    if town or committee:
        raise click.UsageError(gettext("--town and --committee are for referrer accounts, not for the role %(role)s.",
                                       role=label(accounts.ROLE_LABELS, role)))
    if not phone:
        return {"phone": None}
    try:
        return {"phone": phones.normalise(phone).e164}
    except phones.InvalidPhoneNumber:
        raise click.BadParameter(gettext("%(phone)s is not a valid phone number.", phone=phone),
                                 param_hint="--phone") from None


@click.group(cls=LocalizedGroup, help=N_("API tokens and the webhooks of platform tokens."))
def tokens() -> None:
    pass


@tokens.command("create", help=N_("Create an API token and print it alone on stdout; it is stored only hashed."))
@click.option("--source", type=click.Choice(REFERRAL_SOURCES), help=N_("Referral source the token files under."))
@click.option("--role", type=click.Choice(ROLES), help=N_("Staff role for the read and workflow API."))
@click.option("--user", "username", help=N_("Staff member who acts with a role token (needed to claim tickets)."))
@click.option("--name", help=N_("Label to recognise the token by; defaults to the source or role."))
@click.option("--scope", "scopes", multiple=True, type=click.Choice(tuple(token_store.SCOPES)),
              help=N_("What a source token may do; repeat for several. referrals:write files referrals, "
                      "referrals:read reads them and registers a webhook, kb:read reads knowledge articles. "
                      "Default: referrals:write referrals:read."))
def tokens_create(source: str | None, role: str | None, username: str | None, name: str | None,
                  scopes: tuple[str, ...]) -> None:
    if (source is None) == (role is None):
        raise click.UsageError(gettext("Give exactly one of --source or --role."))
    if role is not None and scopes:
        raise click.UsageError(gettext("--scope is for source tokens; a staff token's role decides what it may do."))
    runtime = _runtime()
    with runtime.transaction() as session:
        user_id = None
        if username:
            user = session.exec(select(User).where(User.username == username)).first()
            if user is None:
                raise click.ClickException(gettext("User %(username)s not found; create it with `hotline users "
                                                   "create`.", username=username))
            if role is None or user.role != role:
                raise click.ClickException(gettext("User %(username)s has the role %(role)s; give --role %(code)s.",
                                                   username=username, role=label(accounts.ROLE_LABELS, user.role),
                                                   code=user.role))
            # NOTE: a deactivation committed between this check and the insert leaves the new token live.
            # Authentication does not look at the account, so only `hotline tokens revoke` ends that token.
            if not user.active:
                raise click.ClickException(gettext("User %(username)s is deactivated; activate it first with "
                                                   "`hotline users activate %(username)s --by ADMIN`.",
                                                   username=username))
            user_id = user.id
        secret = token_store.create_token(session, name or source or role, source=source, role=role,
                                          user_id=user_id, scopes=scopes or None)
    click.echo(secret)


@tokens.command("list",
                help=N_("List every token: prefix, name, source or role, scopes, issued, last used, revoked."))
def tokens_list() -> None:
    from hotline.cli.agencies import format_table

    runtime = _runtime()
    tz = runtime.settings.timezone
    with runtime.transaction() as session:
        rows = token_store.all_tokens(session)
    headers = (gettext("Prefix"), gettext("Token name"), gettext("Source or role"), gettext("Scopes"),
               gettext("Issued"), gettext("Last used"), gettext("Revoked"))
    table = [(token.prefix, token.name, _token_owner(token), _token_scopes(token), _when(token.created_at, tz),
              _when(token.last_used_at, tz), _when(token.revoked_at, tz))
             for token in rows]
    for line in format_table(headers, table):
        click.echo(line)


def _token_owner(token: ApiToken) -> str:
    return label(SOURCES, token.source) if token.source else label(accounts.ROLE_LABELS, token.role)


def _token_scopes(token: ApiToken) -> str:
    if not token.source:
        return gettext("Decided by the role")
    separator = "；" if cli_language() == "zh" else "; "
    return separator.join(label(token_store.SCOPE_LABELS, scope) for scope in token.scopes or []) or "-"


def _when(instant, tz) -> str:
    return "-" if instant is None else local(instant, tz).strftime("%Y-%m-%d %H:%M")


@tokens.command("revoke", help=N_("Revoke the token whose prefix starts with PREFIX; it stops working at once."))
@click.argument("prefix")
def tokens_revoke(prefix: str) -> None:
    runtime = _runtime()
    with runtime.transaction() as session:
        token = _token_by_prefix(session, prefix)
        revoked = token_store.revoke(session, token, now())
    if revoked:
        click.echo(gettext("Token %(prefix)s (%(name)s) is revoked and stops working at once.", prefix=token.prefix,
                           name=token.name))
    else:
        click.echo(gettext("Token %(prefix)s (%(name)s) was already revoked.", prefix=token.prefix, name=token.name))


@tokens.command("webhook",
                help=N_("Register, show or remove the webhook of the source token whose prefix is PREFIX."))
@click.argument("prefix")
@click.option("--url", help=N_("https URL that receives the referrals' status changes; its host must resolve to "
                               "public addresses. Prints the new signing secret."))
@click.option("--show", is_flag=True, help=N_("Print the webhook and its latest deliveries."))
@click.option("--remove", is_flag=True, help=N_("Delete the webhook; pending deliveries fail."))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500),
              help=N_("Number of deliveries --show prints."))
def tokens_webhook(prefix: str, url: str | None, show: bool, remove: bool, limit: int) -> None:
    if sum((url is not None, show, remove)) != 1:
        raise click.UsageError(gettext("Give exactly one of --url, --show or --remove."))
    runtime = _runtime()
    if url is not None:
        _register_webhook(runtime, prefix, url)
        return
    with runtime.transaction() as session:
        token = _source_token(session, prefix)
        webhook = webhooks.find_for_token(session, token.id)
        if webhook is None:
            raise click.ClickException(gettext("Token %(prefix)s has no webhook; register one with --url.",
                                               prefix=token.prefix))
        if remove:
            webhooks.remove(session, webhook)
            click.echo(gettext("Removed the webhook of token %(prefix)s.", prefix=token.prefix))
            return
        _show_webhook(session, webhook, limit, runtime.settings.timezone)


def _register_webhook(runtime, prefix: str, url: str) -> None:
    """Check the token, then the URL outside any transaction (its DNS lookup can take seconds), then register."""
    with runtime.transaction() as session:
        token_id = _source_token(session, prefix).id
    try:
        checked = webhooks.check_url(url, runtime.settings.webhook_allow_loopback)
    except InputError as error:
        raise click.BadParameter(error_message(error), param_hint="--url") from None
    with runtime.transaction() as session:
        token = session.get(ApiToken, token_id)
        webhook, created, secret = webhooks.register(session, token, checked, now())
    values = {"url": webhook.url, "prefix": token.prefix, "source": label(SOURCES, token.source)}
    if created:
        click.echo(gettext("Registered the webhook %(url)s for token %(prefix)s (%(source)s).", **values))
    else:
        click.echo(gettext("Replaced the webhook of token %(prefix)s (%(source)s) with %(url)s.", **values))
    click.echo(gettext("Signing secret, shown only now: %(secret)s", secret=secret))


def _source_token(session, prefix: str):
    token = _token_by_prefix(session, prefix)
    if token.source is None:
        raise click.ClickException(gettext("Token %(prefix)s is a staff token; webhooks belong to source tokens.",
                                           prefix=token.prefix))
    return token


def _show_webhook(session, webhook, limit: int, tz) -> None:
    click.echo(gettext("URL: %(url)s", url=webhook.url))
    click.echo(gettext("Source: %(source)s", source=label(SOURCES, webhook.source)))
    click.echo(gettext("Registered %(registered)s, last changed %(changed)s", registered=_when(webhook.created_at, tz),
                       changed=_when(webhook.updated_at, tz)))
    rows = webhooks.deliveries(session, webhook, limit)
    if not rows:
        click.echo(gettext("No deliveries yet."))
        return
    click.echo(ngettext("The latest %(num)d delivery:", "The latest %(num)d deliveries:", len(rows)))
    for message, number in rows:
        click.echo(_delivery_line(message, number, tz))


def _delivery_line(message, number: str | None, tz) -> str:
    """Word one delivery: id, time, ticket number, ticket status, delivery state, attempts and the last error."""
    view = webhooks.delivery_view(message, number)
    at = _when(message.sent_at or message.created_at, tz)
    status = view["body"].get("status")
    attempts = ngettext("%(num)d attempt", "%(num)d attempts", message.attempts)
    detail = f" - {message.last_error}" if message.last_error and view["state"] != "delivered" else ""
    return (f"  {message.id}  {at}  {number or '-'}  {label(STATUSES, status) if status else '-'}  "
            f"{label(DELIVERY_STATE_LABELS, view['state'])}  {attempts}{detail}")


def _token_by_prefix(session, prefix: str):
    try:
        return token_store.find_by_prefix(session, prefix)
    except token_store.TokenNotFound as error:
        raise click.ClickException(error_message(error)) from None
