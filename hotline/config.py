"""Settings read from `HOTLINE_*` environment variables.

Every reader is strict: a malformed value raises `ConfigError` at start-up with the variable's name
and what it accepts, so a typo never turns into a silent default in production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_RULES_DIR = PROJECT_ROOT / "routing_rules"
SMS_BACKENDS = ("console", "twilio")
# Signs offer links only on a machine nobody else can reach; `hotline demo` replaces it with a random key.
DEVELOPMENT_SECRET_KEY = "development-only-secret-key"
LANGUAGES = ("zh_Hans_CN", "en")
# Starting values for the public endpoints, not measured: a platform sends a few referrals a minute, and
# several platforms or agencies may share one address behind a NAT.
DEFAULT_RATE_LIMIT_PER_TOKEN = "120/minute"
DEFAULT_RATE_LIMIT_PER_IP = "300/minute"
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


class ConfigError(ValueError):
    """A `HOTLINE_*` variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    timezone: ZoneInfo
    public_base_url: str | None
    trusted_proxy_hops: int
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_base_url: str | None
    twilio_from_number: str
    hotline_number: str
    sms_backend: str
    secret_key: str
    rules_dir: Path
    instance_dir: Path
    max_request_bytes: int
    languages: tuple[str, ...] = field(default=LANGUAGES)
    rate_limit_per_token: str = DEFAULT_RATE_LIMIT_PER_TOKEN
    rate_limit_per_ip: str = DEFAULT_RATE_LIMIT_PER_IP
    # Lets webhooks reach loopback addresses (http or https), for tests and a demo on one machine.
    webhook_allow_loopback: bool = False

    @property
    def in_process_jobs(self) -> bool:
        """True when no Redis is configured, so jobs run in the process that commits them."""
        return self.redis_url is None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise `ConfigError` naming the first bad variable."""
    env = os.environ if environ is None else environ
    instance_dir = Path(_read_str(env, "HOTLINE_INSTANCE_DIR") or DEFAULT_INSTANCE_DIR)
    default_db = f"sqlite:///{instance_dir / 'hotline.sqlite3'}"

    sms_backend = _read_choice(env, "HOTLINE_SMS_BACKEND", SMS_BACKENDS, default="console")
    account_sid = _read_str(env, "HOTLINE_TWILIO_ACCOUNT_SID")
    auth_token = _read_str(env, "HOTLINE_TWILIO_AUTH_TOKEN")
    if sms_backend == "twilio" and not (account_sid and auth_token):
        raise ConfigError(
            "HOTLINE_SMS_BACKEND=twilio needs HOTLINE_TWILIO_ACCOUNT_SID and HOTLINE_TWILIO_AUTH_TOKEN"
        )

    return Settings(
        database_url=_read_database_url(env, default_db),
        redis_url=_read_url(env, "HOTLINE_REDIS_URL", schemes=("redis", "rediss", "unix")),
        timezone=_read_timezone(env, "HOTLINE_TIMEZONE", default="Asia/Shanghai"),
        public_base_url=_read_url(env, "HOTLINE_PUBLIC_BASE_URL", schemes=("http", "https")),
        trusted_proxy_hops=_read_int(env, "HOTLINE_TRUSTED_PROXY_HOPS", default=0, minimum=0, maximum=10),
        twilio_account_sid=account_sid,
        twilio_auth_token=auth_token,
        twilio_api_base_url=_read_url(env, "HOTLINE_TWILIO_API_BASE_URL", schemes=("http", "https")),
        twilio_from_number=_read_str(env, "HOTLINE_TWILIO_FROM_NUMBER") or "+862159200496",
        hotline_number=_read_str(env, "HOTLINE_NUMBER") or "+862159200496",
        sms_backend=sms_backend,
        secret_key=_read_secret_key(env),
        rules_dir=Path(_read_str(env, "HOTLINE_RULES_DIR") or DEFAULT_RULES_DIR),
        instance_dir=instance_dir,
        max_request_bytes=_read_int(
            env, "HOTLINE_MAX_REQUEST_BYTES", default=64 * 1024, minimum=1024, maximum=16 * 1024 * 1024
        ),
        rate_limit_per_token=_read_rate_limit(env, "HOTLINE_RATE_LIMIT_PER_TOKEN", DEFAULT_RATE_LIMIT_PER_TOKEN),
        rate_limit_per_ip=_read_rate_limit(env, "HOTLINE_RATE_LIMIT_PER_IP", DEFAULT_RATE_LIMIT_PER_IP),
        webhook_allow_loopback=_read_bool(env, "HOTLINE_WEBHOOK_ALLOW_LOOPBACK", default=False),
    )


def _read_str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _read_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = _read_str(env, name) or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is invalid: expected one of {', '.join(choices)}")
    return value


def _read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _read_str(env, name)
    if raw is None:
        return default
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={raw!r} is invalid: expected true or false (or 1/0, yes/no, on/off)")


def _read_int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _read_str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is invalid: expected an integer from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range: expected an integer from {minimum} to {maximum}")
    return value


def _read_rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """Read limits in the `limits` package's notation, such as "120/minute" or "10/second;1000/hour"."""
    from limits import parse_many

    raw = _read_str(env, name) or default
    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(f"{name}={raw!r} is invalid: expected limits such as 120/minute or 10/second;1000/hour")
    return raw


def _read_url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = _read_str(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        prefixes = " or ".join(scheme + "://" for scheme in schemes)
        raise ConfigError(f"{name}={raw!r} is invalid: expected a URL starting with {prefixes}")
    return raw.rstrip("/")


def _read_database_url(env: Mapping[str, str], default: str) -> str:
    raw = _read_str(env, "HOTLINE_DATABASE_URL")
    if raw is None:
        return default
    scheme = urlsplit(raw).scheme
    if scheme.startswith("postgres"):
        # Plain postgresql:// would pick psycopg2, which is not installed; psycopg 3 is.
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if scheme.startswith("sqlite"):
        return raw
    raise ConfigError(
        f"HOTLINE_DATABASE_URL={raw!r} is invalid: expected sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def _read_timezone(env: Mapping[str, str], name: str, default: str) -> ZoneInfo:
    raw = _read_str(env, name) or default
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={raw!r} is invalid: expected an IANA time zone such as Asia/Shanghai") from None


def _read_secret_key(env: Mapping[str, str]) -> str:
    """Read the key that signs offer links; a service reachable from outside must set its own."""
    raw = _read_str(env, "HOTLINE_SECRET_KEY")
    if raw is None:
        if _read_str(env, "HOTLINE_PUBLIC_BASE_URL") or _read_str(env, "HOTLINE_SMS_BACKEND") == "twilio":
            raise ConfigError(
                "HOTLINE_SECRET_KEY is missing: a service with a public URL or real SMS must set a random key of "
                "at least 16 characters, for example from `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return DEVELOPMENT_SECRET_KEY
    if len(raw) < 16:
        raise ConfigError("HOTLINE_SECRET_KEY is too short: expected at least 16 characters")
    return raw
