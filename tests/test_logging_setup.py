"""Log lines carry their time in ISO 8601 with milliseconds and the UTC offset."""

from __future__ import annotations

import logging
import re

from hotline.logging_setup import OffsetFormatter


def test_log_time_carries_offset():
    record = logging.LogRecord("hotline.demo", logging.INFO, __file__, 1, "Demo: served %s", ("ok",), None)
    record.created = 1796587200.25

    line = OffsetFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.250[+-]\d\d:\d\d INFO hotline.demo: Demo: served ok", line)
