"""Rule set versions: the rule files behind each version, stored the first time a ticket is evaluated with it.

A version is a content hash over every *.yaml file of the rules folder (see
hotline.rules.loader.rule_set_version), so a version always names the same files and its row never
changes once written. Tickets evaluated before versions were stored name versions without a row; those
are listed with their ticket counts but their files cannot be shown.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from weakref import WeakKeyDictionary

from sqlalchemy import event, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from hotline.clock import now
from hotline.models import RuleSetVersion, Ticket
from hotline.rules.engine import RuleSet
from hotline.rules.expressions import RuleError
from hotline.validation import N_, TemplatedError

log = logging.getLogger("hotline.rules")

MIN_PREFIX = 4
_PARSED_VERSIONS_KEPT = 16

# Versions known to have a committed row, per database engine, so evaluating a ticket costs no query
# once its version is stored. Keyed weakly, so a disposed test engine takes its entry with it.
_stored: WeakKeyDictionary = WeakKeyDictionary()
_parsed: OrderedDict[str, RuleSet | None] = OrderedDict()
# The rule sets loaded for evaluation in this process by version, and the one loaded last.
_loaded: dict[str, RuleSet] = {}
_latest: RuleSet | None = None
_hook_installed = False
_lock = threading.Lock()


class VersionNotFound(TemplatedError, LookupError):
    """No stored version matches, or a prefix matches several; the message says which."""


@dataclass(frozen=True)
class VersionSummary:
    """One version as `hotline rules versions` lists it.

    `stored` is False for a version that tickets name but whose files were never stored; then
    `first_used_at` is the creation time of its first ticket and `rules_dir` is None.
    """

    version: str
    stored: bool
    first_used_at: datetime | None
    rules_dir: str | None
    tickets: int


def remember_loaded(rule_set: RuleSet) -> None:
    """Keep the files of a rule set this process evaluates tickets with, so its first use can store them.

    The first call installs a flush hook on every session: when a ticket that names a version kept here
    is written, the version's row is inserted in the same transaction unless it exists. The insert
    ignores an existing row, so two processes that start using a new version at once both commit.
    """
    global _hook_installed, _latest
    with _lock:
        _loaded[rule_set.version] = rule_set
        _latest = rule_set
        if _hook_installed:
            return
        _hook_installed = True
    event.listen(OrmSession, "before_flush", _store_versions_of_tickets)


def _store_versions_of_tickets(session: Session, _flush_context, _instances) -> None:
    versions = {ticket.rule_set_version for ticket in (*session.new, *session.dirty)
                if isinstance(ticket, Ticket) and ticket.rule_set_version}
    store_versions(session, versions)


def store_versions(session: Session, versions: set[str]) -> None:
    """Insert the row of each version in `versions` that this process loaded and has not stored yet.

    The flush hook calls this for the tickets a flush writes. Code that inserts tickets without the ORM
    calls it itself.
    """
    if not versions:
        return

    # The engine, also when the session runs on a request's connection (hotline.request_connection).
    bind = session.get_bind().engine
    with _lock:
        to_store = [_loaded[version] for version in versions
                    if version in _loaded and version not in _stored.get(bind, ())]
    for rule_set in to_store:
        _insert_version(session, rule_set)
    if to_store:
        _remember_after_commit(session, bind, {rule_set.version for rule_set in to_store})


def _insert_version(session: Session, rule_set: RuleSet) -> None:
    # Core statements on the session's connection: an ORM statement here would flush again.
    connection = session.connection()
    table = RuleSetVersion.__table__
    if connection.execute(select(table.c.version).where(table.c.version == rule_set.version)).first() is not None:
        return
    values = {"version": rule_set.version, "files": _texts(rule_set.files), "rules_dir": _rules_dir(rule_set),
              "first_used_at": now()}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=["version"]))
    log.info("Rules: stored rule set version %s from %s", rule_set.version, values["rules_dir"])


def list_versions(session: Session) -> list[VersionSummary]:
    """Return every stored version and every version tickets name, oldest first use first."""
    stored = {row.version: row for row in session.exec(select(RuleSetVersion)).all()}
    counts = session.exec(
        select(Ticket.rule_set_version, func.count(Ticket.id), func.min(Ticket.created_at))
        .where(Ticket.rule_set_version.is_not(None))
        .group_by(Ticket.rule_set_version)
    ).all()
    tickets = {version: (count, first) for version, count, first in counts}

    summaries = []
    for version in stored.keys() | tickets.keys():
        row = stored.get(version)
        count, first_ticket_at = tickets.get(version, (0, None))
        summaries.append(VersionSummary(
            version=version,
            stored=row is not None,
            first_used_at=row.first_used_at if row is not None else first_ticket_at,
            rules_dir=row.rules_dir if row is not None else None,
            tickets=count,
        ))
    return sorted(summaries, key=lambda summary: (summary.first_used_at is None, summary.first_used_at,
                                                  summary.version))


def find_version(session: Session, text: str) -> RuleSetVersion:
    """Return the stored version named by `text`: the whole hash or a unique prefix of at least 4 digits.

    Raise VersionNotFound when nothing matches, when the prefix is too short or matches several, or when
    tickets name the version but its files were never stored.
    """
    text = text.strip().lower()
    if len(text) < MIN_PREFIX:
        raise VersionNotFound(N_("Version %(version)s is too short; give at least %(min)s characters."),
                              version=text, min=MIN_PREFIX)

    matches = session.exec(select(RuleSetVersion).where(RuleSetVersion.version.startswith(text))).all()
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(sorted(row.version for row in matches))
        raise VersionNotFound(N_("Version prefix %(version)s matches several versions: %(names)s."),
                              version=text, names=names)

    on_tickets = session.exec(select(func.count(Ticket.id)).where(Ticket.rule_set_version.startswith(text))).one()
    if on_tickets:
        raise VersionNotFound(N_("The files of version %(version)s were not stored, because it was used before "
                                 "versions were recorded."), version=text)
    raise VersionNotFound(N_("No version %(version)s; list them with `hotline rules versions`."), version=text)


def stored_rule_set(session: Session, version: str | None) -> RuleSet | None:
    """Return the rule set of a stored version, or None when it is not stored or no longer loads.

    Parsed versions are kept per process, because a version's files never change.
    """
    if not version:
        return None
    with _lock:
        if version in _parsed:
            _parsed.move_to_end(version)
            return _parsed[version]

    row = session.get(RuleSetVersion, version)
    if row is None:
        return None
    rule_set = _parse(row)
    with _lock:
        _parsed[version] = rule_set
        while len(_parsed) > _PARSED_VERSIONS_KEPT:
            _parsed.popitem(last=False)
    return rule_set


def rule_set_for(session: Session | None, version: str | None) -> RuleSet | None:
    """Return the rules that evaluated a ticket with `version`, for wording its trace.

    The rule set loaded in this process with that version comes first, then the stored version. A
    version that is neither (a ticket evaluated before versions were stored) gets the rule set loaded
    last, whose rules may be worded differently from the ones that evaluated the ticket; None when
    this process loaded no rule set at all.
    """
    exact = rule_set_of_version(session, version)
    if exact is not None:
        return exact
    with _lock:
        return _latest


def rule_set_of_version(session: Session | None, version: str | None) -> RuleSet | None:
    """Return the rule set with exactly `version`: loaded in this process, or else stored; None if neither."""
    with _lock:
        loaded = _loaded.get(version) if version else None
    if loaded is not None or session is None:
        return loaded
    return stored_rule_set(session, version)


def _parse(row: RuleSetVersion) -> RuleSet | None:
    from hotline.rules.loader import rule_set_from_files  # the loader imports this module

    files = {name: text.encode("utf-8") for name, text in row.files.items()}
    try:
        return rule_set_from_files(files, Path(f"rule-set-{row.version}"))
    except RuleError as error:
        log.warning("Rules: stored version %s no longer loads: %s", row.version, str(error).replace("\n", "; "))
        return None


def _texts(files: Mapping[str, bytes]) -> dict[str, str]:
    # Rule files that load are UTF-8; a file that is not (calendars.yaml, say) is kept with U+FFFD marks.
    return {name: data.decode("utf-8", errors="replace") for name, data in files.items()}


def _rules_dir(rule_set: RuleSet) -> str:
    return str(Path(rule_set.source).parent)[:300]


def _remember_after_commit(session: Session, bind, versions: set[str]) -> None:
    """Mark `versions` as stored for `bind` once this transaction commits; a rollback forgets them."""

    def remember(_committed: Session) -> None:
        with _lock:
            _stored.setdefault(bind, set()).update(versions)

    event.listen(session, "after_commit", remember, once=True)
