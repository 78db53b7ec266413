"""Process-wide logging: one line per record with time, level and component."""

from __future__ import annotations

import logging
import os
from datetime import datetime


class OffsetFormatter(logging.Formatter):
    """A formatter whose times are ISO 8601 with milliseconds and the process's UTC offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - overrides logging
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def configure_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OffsetFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=(level or os.environ.get("HOTLINE_LOG_LEVEL") or "INFO").upper(), handlers=[handler])
    # APScheduler logs every run of every sweep at INFO; the sweeps log what they did themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
