"""The towns (街镇) of Qingpu, read once per database and kept in memory.

The town table is reference data: the migration and `hotline demo` seed it, and no request changes
it. Intake reads it on every referral, so the rows are cached per database URL. A name or code that
is not in the cache reloads it once before it counts as unknown, so towns seeded after the first
read are still found.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine
from sqlmodel import Session, select

from hotline.models import Town


@dataclass(frozen=True)
class TownInfo:
    code: str
    name: str
    pilot: bool


_cache: dict[str, tuple[TownInfo, ...]] = {}
_lock = threading.Lock()


def all_towns(session: Session) -> tuple[TownInfo, ...]:
    """Return every town ordered by code, from the cache when it holds any."""
    key = _cache_key(session)
    towns = _cache.get(key)
    if not towns:
        towns = _reload(session, key)
    return towns


def find_town(session: Session, name_or_code: str) -> TownInfo | None:
    """Find a town by its Chinese name or its statistical code; None when there is no such town."""
    town = _match(all_towns(session), name_or_code)
    if town is None:
        town = _match(_reload(session, _cache_key(session)), name_or_code)
    return town


def town_names(session: Session) -> dict[str, str]:
    """Map each town code to its name."""
    return {town.code: town.name for town in all_towns(session)}


def forget_towns() -> None:
    """Drop every cached town list, so the next read goes to the database."""
    with _lock:
        _cache.clear()


def _match(towns: tuple[TownInfo, ...], name_or_code: str) -> TownInfo | None:
    for town in towns:
        if name_or_code in (town.name, town.code):
            return town
    return None


def _reload(session: Session, key: str) -> tuple[TownInfo, ...]:
    rows = session.exec(select(Town).order_by(Town.code)).all()
    towns = tuple(TownInfo(row.code, row.name, row.pilot) for row in rows)
    with _lock:
        _cache[key] = towns
    return towns


def _cache_key(session: Session) -> str:
    return _database_key(session.get_bind().engine)


@lru_cache(maxsize=32)
def _database_key(engine: Engine) -> str:
    """Name the engine's database, rendered once per engine because rendering a URL costs about 10 µs."""
    return engine.url.render_as_string(hide_password=True)
