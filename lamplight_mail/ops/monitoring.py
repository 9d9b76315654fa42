"""What operators' tools read: the health check and the Prometheus metrics.

Metrics are counted from the database and Redis at scrape time, never kept in one process's
memory, so they are right however many web and worker processes run, on however many machines
(no prometheus_client multiprocess mode needed). The one figure only a worker sees, how long SMTP
takes, is kept in Redis by the worker (delivery/latency.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis
from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from lamplight_mail.delivery.latency import LATENCY_BUCKETS, LATENCY_KEY, SUM_FIELD
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import AccountHealth, utcnow
from lamplight_mail.reporting import usage


@dataclass(frozen=True)
class Health:
    db: bool
    redis: bool
    workers: int

    @property
    def ok(self) -> bool:
        return self.db and self.redis

    def as_json(self) -> dict[str, str | int]:
        return {
            "db": "ok" if self.db else "unavailable",
            "redis": "ok" if self.redis else "unavailable",
            "workers": self.workers,
        }


def check_health() -> Health:
    """Do the database and Redis answer, and how many workers are alive?"""
    try:
        db.session.execute(select(1))
        db_ok = True
    except SQLAlchemyError as error:
        db.session.rollback()
        current_app.logger.warning("health: the database did not answer (%s)", type(error).__name__)
        db_ok = False
    try:
        get_redis().ping()
        _, workers = usage.rq_figures()
        redis_ok = True
    except redis.RedisError as error:
        current_app.logger.warning("health: Redis did not answer (%s)", type(error).__name__)
        redis_ok, workers = False, 0
    return Health(db_ok, redis_ok, workers)


class MailCollector:
    """Reads every figure when Prometheus scrapes (needs an app context)."""

    def collect(self) -> Iterator[Metric]:
        yield from self._account_metrics()
        yield from self._queue_metrics()

    def _account_metrics(self) -> Iterator[Metric]:
        labels = ["account_id", "account"]
        sent = CounterMetricFamily(
            "lamplight_mail_messages_sent", "Messages accepted by the SMTP server.", labels=labels
        )
        failed = CounterMetricFamily(
            "lamplight_mail_messages_failed", "Messages that failed for good.", labels=labels
        )
        waiting = GaugeMetricFamily(
            "lamplight_mail_messages_waiting",
            "Messages not yet sent: queued (due now) or deferred (due later).",
            labels=[*labels, "state"],
        )
        ratio = GaugeMetricFamily(
            "lamplight_mail_limit_usage_ratio",
            "Recipients sent in the rolling daily window over the daily limit.",
            labels=labels,
        )
        remaining = GaugeMetricFamily(
            "lamplight_mail_limit_remaining",
            "Recipients the account may still send in the rolling window.",
            labels=labels,
        )
        flagged = GaugeMetricFamily(
            "lamplight_mail_flagged_sends", "Sends held for an admin.", labels=labels
        )
        paused = GaugeMetricFamily(
            "lamplight_mail_account_paused", "1 when the account is paused.", labels=labels
        )
        totals = usage.lifetime_totals()
        for figure in usage.account_figures(utcnow()):
            account = figure.account
            values = [str(account.id), account.from_email]
            sent_total, failed_total = totals.get(account.id, (0, 0))
            sent.add_metric(values, sent_total)
            failed.add_metric(values, failed_total)
            waiting.add_metric([*values, "queued"], figure.backlog.queued)
            waiting.add_metric([*values, "deferred"], figure.backlog.deferred)
            ratio.add_metric(values, figure.usage_ratio)
            remaining.add_metric(values, figure.remaining)
            flagged.add_metric(values, figure.flagged_sends)
            paused.add_metric(values, int(account.health == AccountHealth.PAUSED))
        yield from (sent, failed, waiting, ratio, remaining, flagged, paused)

    def _queue_metrics(self) -> Iterator[Metric]:
        status = usage.queue_status()
        age = status.oldest_due_age
        yield GaugeMetricFamily(
            "lamplight_mail_oldest_due_seconds",
            "How long the longest-waiting due message has waited (0 when none).",
            value=age.total_seconds() if age else 0,
        )
        yield GaugeMetricFamily(
            "lamplight_mail_redis_up", "1 when Redis answers.", value=int(status.redis_answered)
        )
        if not status.redis_answered:
            return
        yield GaugeMetricFamily(
            "lamplight_mail_queue_depth", "Jobs waiting on the mail queue.", value=status.depth
        )
        yield GaugeMetricFamily(
            "lamplight_mail_workers", "RQ workers alive on the mail queue.", value=status.workers
        )
        yield self._latency()

    def _latency(self) -> HistogramMetricFamily:
        stored = {
            key.decode(): float(value) for key, value in get_redis().hgetall(LATENCY_KEY).items()
        }
        buckets, running = [], 0.0
        for bound in (*map(str, LATENCY_BUCKETS), "+Inf"):
            running += stored.get(bound, 0.0)
            buckets.append((bound, running))
        return HistogramMetricFamily(
            "lamplight_mail_smtp_latency_seconds",
            "Time from MAIL FROM to the server's final answer, per message.",
            buckets=buckets,
            sum_value=stored.get(SUM_FIELD, 0.0),
        )


def metrics_text() -> bytes:
    """The Prometheus exposition of every metric, counted now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MailCollector())
    return generate_latest(registry)
