"""The assembled service: settings, database engine, rule set, calendars, SMS backend and job queue.

The web app, the CLI, RQ jobs and the scheduler each build one `Runtime` per process. Jobs find it
with `current()`, which builds it from the environment the first time a worker process needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from hotline.config import Settings, load_settings
from hotline.request_connection import RequestConnection
from hotline.store import make_engine, make_request_engine

log = logging.getLogger("hotline.runtime")

_current: Runtime | None = None
_lock = threading.Lock()


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    queue: Any
    components: dict[str, Any] = field(default_factory=dict)
    # The engine with autocommit connections for `transaction(one_write=True)`, made on first use.
    _autocommit_engine: Engine | None = field(default=None, repr=False)
    # The pool of request connections on PostgreSQL, made on first use.
    _request_engine: Engine | None = field(default=None, repr=False)

    @contextmanager
    def transaction(self, one_write: bool = False, connection: RequestConnection | None = None) -> Iterator[Session]:
        """Yield a session that commits on success, then enqueues the jobs the work scheduled.

        Jobs are enqueued only after the commit, so a job never reads a row that is not there yet.
        A crash between the commit and the enqueue is covered by the scheduler's outbox sweep.

        With `one_write`, the caller promises that its work writes on PostgreSQL with a single statement,
        which is atomic on its own. The session then runs in autocommit there, without the round trips of
        BEGIN and COMMIT, on the request's `connection` when one is given. SQLite always runs a transaction.
        """
        bind = connection.connection if one_write and connection is not None else self._bind(one_write)
        with Session(bind, expire_on_commit=False) as session:
            try:
                yield session
                # A session that read and wrote nothing through the ORM has nothing to commit. The optimistic
                # referral path writes on the driver and skips the cost of an empty commit, about 13 µs.
                if session.in_transaction():
                    self._before_commit(session)
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            jobs = session.info.pop("jobs_after_commit", [])
        for name, args in jobs:
            self.queue.enqueue(name, *args)

    def _bind(self, one_write: bool) -> Engine:
        if not one_write or self.engine.dialect.name != "postgresql":
            return self.engine
        if self._autocommit_engine is None:
            self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._autocommit_engine

    def request_connection(self) -> RequestConnection | None:
        """Check out a connection for one request on PostgreSQL (close it when done); None on SQLite."""
        if self.engine.dialect.name != "postgresql":
            return None
        with _lock:
            if self._request_engine is None:
                self._request_engine = make_request_engine(self.engine.url)
        return RequestConnection(self._request_engine)

    def dispose(self) -> None:
        """Close the pooled connections of both engines."""
        self.engine.dispose()
        if self._request_engine is not None:
            self._request_engine.dispose()

    def _before_commit(self, session: Session) -> None:
        from hotline.tickets import assign_numbers

        assign_numbers(session, self.settings.timezone)

    def component(self, name: str) -> Any:
        return self.components[name]


def build_runtime(settings: Settings | None = None, queue: Any = None) -> Runtime:
    """Assemble a runtime; `queue` defaults to RQ when Redis is configured, else in-process."""
    from hotline.queueing import make_queue

    settings = settings or load_settings()
    runtime = Runtime(settings=settings, engine=make_engine(settings.database_url), queue=None)
    runtime.queue = queue or make_queue(settings, runtime)
    _load_components(runtime)
    return runtime


def _load_components(runtime: Runtime) -> None:
    from hotline.components import load_components

    runtime.components.update(load_components(runtime.settings))


def install(runtime: Runtime) -> Runtime:
    """Make `runtime` the one `current()` returns in this process."""
    global _current
    with _lock:
        _current = runtime
    return runtime


def current() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            _current = build_runtime()
            log.info("Runtime: built from environment for database %s", _current.engine.url.render_as_string())
        return _current
