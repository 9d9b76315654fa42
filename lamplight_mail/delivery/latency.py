"""How long each message's SMTP exchange took, kept in Redis for /metrics to read, so the
figure is right however many workers there are."""

from __future__ import annotations

from collections import Counter

import redis
from flask import current_app

from lamplight_mail.extensions import get_redis

LATENCY_KEY = "lm:metrics:smtp_latency"
# Seconds; Office 365 answers a message in well under a second when all is well.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SUM_FIELD = "sum"


def observe_smtp_latency(seconds: float, client: redis.Redis | None = None) -> None:
    """Record how long one message's SMTP exchange took (MAIL FROM to the final answer)."""
    observe_smtp_latencies([seconds], client)


def observe_smtp_latencies(durations: list[float], client: redis.Redis | None = None) -> None:
    """Record how long several messages' SMTP exchanges took, in one Redis round trip.

    The worker calls this about once a second with what it marked meanwhile. Best effort: a
    Redis failure here must not undo or hold up a delivery, so it is logged and dropped.
    """
    buckets = Counter(
        next((str(bound) for bound in LATENCY_BUCKETS if seconds <= bound), "+Inf")
        for seconds in durations
    )
    try:
        pipeline = (client or get_redis()).pipeline(transaction=True)
        for bucket, count in buckets.items():
            pipeline.hincrby(LATENCY_KEY, bucket, count)
        pipeline.hincrbyfloat(LATENCY_KEY, SUM_FIELD, sum(durations))
        pipeline.execute()
    except redis.RedisError:
        current_app.logger.warning("SMTP latency not recorded: Redis did not answer")
