"""Job queues: RQ on Redis in production, direct calls in the embedded default.

Both run the same functions of `workers.jobs`; RQ delivers at least once, so every job is written to
be safe to run twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hotline.config import Settings

if TYPE_CHECKING:
    from hotline.runtime import Runtime

log = logging.getLogger("hotline.queue")

# RQ queue of each job. Dispatch has its own queue so a flood of SMS never delays an offer.
JOB_QUEUES = {
    "dispatch_ticket": "dispatch",
    "expire_offer": "dispatch",
    "deliver_message": "notify",
}
JOB_MODULE = "workers.jobs"


class InProcessQueue:
    """Run each job at once in the calling thread; a failing job is logged and left to the sweeps."""

    def enqueue(self, name: str, *args) -> None:
        from workers import jobs

        try:
            getattr(jobs, name)(*args)
        except Exception:
            log.exception("Queue: in-process job %s%s failed; the scheduler's sweep will retry it", name, args)


class RedisQueue:
    """Enqueue jobs to RQ queues; retries with back-off are left to RQ's `Retry`."""

    def __init__(self, redis_url: str):
        from redis import Redis
        from rq import Queue

        self.connection = Redis.from_url(redis_url)
        self._queues = {name: Queue(name, connection=self.connection) for name in set(JOB_QUEUES.values())}

    def enqueue(self, name: str, *args) -> None:
        from rq import Retry

        queue = self._queues[JOB_QUEUES.get(name, "notify")]
        try:
            queue.enqueue(f"{JOB_MODULE}.{name}", *args, retry=Retry(max=3, interval=[5, 30, 120]))
        except Exception:
            # The row that asked for this job is committed; the scheduler's sweep re-enqueues it.
            log.exception("Queue: enqueue of %s%s failed; the scheduler's sweep will retry it", name, args)

    def queue_names(self) -> list[str]:
        return sorted(self._queues)


def make_queue(settings: Settings, runtime: Runtime):
    if settings.in_process_jobs:
        return InProcessQueue()
    return RedisQueue(settings.redis_url)
