"""`hotline demo`: the embedded default in one process.

It migrates the database, seeds towns, agencies and staff accounts, issues one API token per referral
source and per staff role, prints how to log in, and serves on 127.0.0.1 with the scheduler in a
thread and jobs run in-process. Credentials are kept in the instance folder (mode 600) so a second
start prints the same tokens; only their hashes are in the database.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import click
from sqlmodel import select

from hotline import seed
from hotline.cli.language import N_, LocalizedCommand, gettext
from hotline.clock import local, now
from hotline.config import DEVELOPMENT_SECRET_KEY, ConfigError, Settings, load_settings
from hotline.models import User
from hotline.tokens import create_token
from hotline.vocabulary import REFERRAL_SOURCES

log = logging.getLogger("hotline.demo")

CREDENTIALS_FILE = "demo-credentials.json"


def _require_free_port(host: str, port: int) -> None:
    """Stop before migrating and seeding when another program already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server does, so a port left in TIME_WAIT by an earlier demo still counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(gettext(
                "%(host)s:%(port)s is not available (%(reason)s); choose another port, for example "
                "make demo PORT=%(next)s or hotline demo --port %(next)s.",
                host=host, port=port, reason=error.strerror, next=port + 1)) from None


@click.command(cls=LocalizedCommand,
               help=N_("Start the hotline on the embedded default: SQLite, in-process jobs, demo data."))
@click.option("--host", default="127.0.0.1", show_default=True, help=N_("Address to listen on."))
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help=N_("TCP port."))
def demo(host: str, port: int) -> None:
    from werkzeug.serving import run_simple

    from hotline import create_app
    from hotline.migrate import upgrade
    from hotline.runtime import build_runtime
    from workers.scheduler import build_scheduler

    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(gettext("Invalid configuration: %(error)s", error=error)) from None
    _require_free_port(host, port)
    credentials = load_or_create_credentials(settings.instance_dir)
    if settings.secret_key == DEVELOPMENT_SECRET_KEY:
        settings = replace(settings, secret_key=credentials.setdefault("secret_key", secrets.token_hex(32)))
    settings = replace(settings, twilio_auth_token=settings.twilio_auth_token or credentials["twilio_auth_token"])
    if settings.public_base_url is None:
        # Offer links in SMS and Twilio signatures use the address the demo really listens on.
        settings = replace(settings, public_base_url=f"http://{host}:{port}")

    upgrade(settings.database_url)
    runtime = build_runtime(settings)
    seed_demo_data(runtime, credentials)
    app = create_app(runtime)

    scheduler = build_scheduler(runtime, background=True)
    scheduler.start()
    print_welcome(settings, credentials, host, port)
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        scheduler.shutdown(wait=False)


def load_or_create_credentials(instance_dir: Path) -> dict:
    """Read the demo's passwords and tokens, creating them on the first start."""
    path = instance_dir / CREDENTIALS_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))

    instance_dir.mkdir(parents=True, exist_ok=True)
    credentials = {
        "password": secrets.token_urlsafe(9),
        "twilio_auth_token": secrets.token_hex(16),
        "secret_key": secrets.token_hex(32),
        "tokens": {},
    }
    _write_private(path, credentials)
    return credentials


def seed_demo_data(runtime, credentials: dict) -> None:
    """Seed the missing towns, agencies, users, knowledge articles and tokens; tokens go to the credentials file."""
    tz = runtime.settings.timezone
    with runtime.transaction() as session:
        seed.seed_towns(session)
        seed.seed_agencies(session, licence_expires_on=(local(now(), tz) + timedelta(days=365)).date())
        seed.seed_users(session, credentials["password"])
        seed.seed_kb_articles(session)
        session.flush()

        saved = credentials["tokens"]
        for source in REFERRAL_SOURCES:
            if source not in saved:
                saved[source] = create_token(session, f"demo {source}", source=source)
        for role in ("operator", "supervisor", "admin"):
            if role not in saved:
                user = session.exec(select(User).where(User.username == role)).one()
                saved[role] = create_token(session, f"demo {role}", role=role, user_id=user.id)

    _write_private(runtime.settings.instance_dir / CREDENTIALS_FILE, credentials)


def print_welcome(settings: Settings, credentials: dict, host: str, port: int) -> None:
    # NOTE: the welcome stays English after its Chinese title in both languages; README.md describes it.
    url = f"http://{host}:{port}"
    lines = [
        "",
        f"青浦区殡仪馆白事服务专线 59200496 — hotline demo at {url}",
        f"  database:   {settings.database_url}",
        f"  web login:  {url}/login  (operator, supervisor or admin; password {credentials['password']})",
        "  the same staff accounts act through the API tokens below",
        f"  Twilio auth token for signed webhooks: {credentials['twilio_auth_token']}",
        "  API tokens:",
    ]
    lines += [f"    {name:<20} {token}" for name, token in credentials["tokens"].items()]
    lines += [
        f"  credentials file: {settings.instance_dir / CREDENTIALS_FILE}",
        f"  replay a day of traffic: .venv/bin/hotline replay samples/day-2026-12-07.jsonl --base-url {url}",
        "",
    ]
    click.echo("\n".join(lines))


def _write_private(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.chmod(path, 0o600)
