"""/healthz answers for the database and Redis; /metrics parses with prometheus_client's own
parser, counts what the database holds and takes a bearer token when one is set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from lamplight_mail import create_app
from lamplight_mail.delivery import latency, outbox
from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db
from lamplight_mail.models import MessageStatus, SendStatus, utcnow
from tests.factories import add_daily, add_messages, make_account, make_send, make_user


def _use_redis(app, url: str) -> None:
    app.config["REDIS_URL"] = url
    app.extensions["lamplight_redis"] = None  # the next get_redis() connects to `url`


def test_healthz_is_public_and_reports_db_redis_and_workers(app, client):
    with app.app_context():
        worker = Worker([outbox.mail_queue()], connection=outbox.mail_queue().connection)
        worker.register_birth()
    try:
        response = client.get("/healthz")
    finally:
        worker.register_death()
    assert response.status_code == 200
    assert response.get_json() == {"db": "ok", "redis": "ok", "workers": 1}


def test_healthz_is_503_while_redis_is_stopped(app, client, own_redis):
    folder, url = own_redis
    _use_redis(app, url)
    assert client.get("/healthz").status_code == 200

    embedded_redis.stop(folder)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"db": "ok", "redis": "unavailable", "workers": 0}

    embedded_redis.ensure_running(folder, persist=False)
    assert client.get("/healthz").status_code == 200


def test_healthz_is_503_when_the_database_is_unreachable(app_config, tmp_path):
    if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        unreachable = f"sqlite:///{tmp_path}/no-such-folder/lamplight_mail.sqlite"
    else:
        unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/lamplight?connect_timeout=2"
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": unreachable})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"db": "unavailable", "redis": "ok", "workers": 0}
    assert "no-such-folder" not in response.get_data(as_text=True)


def _families(response) -> dict:
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        family.name: family
        for family in text_string_to_metric_families(response.get_data(as_text=True))
    }


def _value(families: dict, name: str, sample: str | None = None, **labels) -> float:
    for found in families[name].samples:
        if found.name == (sample or name) and all(
            found.labels.get(key) == str(value) for key, value in labels.items()
        ):
            return found.value
    raise AssertionError(f"no sample {sample or name} {labels}")


def test_metrics_count_what_the_database_holds(app, client):
    now = utcnow()
    with app.app_context():
        olive = make_user("olive@charity.example")
        account = make_account(owner=olive, daily_limit=200)
        quiet = make_account(daily_limit=1000)
        add_daily(account, now.date(), sent=40, failed=2)
        add_daily(account, now.date() - timedelta(days=30), sent=15, failed=1)
        send = make_send(olive, account)
        add_messages(send, 40, MessageStatus.SENT, sent_at=now - timedelta(hours=2))
        add_messages(send, 3, MessageStatus.QUEUED, due_at=now - timedelta(minutes=5))
        add_messages(send, 2, MessageStatus.DEFERRED, due_at=now + timedelta(minutes=30))
        make_send(olive, account, status=SendStatus.FLAGGED)
        ids = {"account": account.id, "quiet": quiet.id}
        db.session.commit()
        outbox.mail_queue().enqueue("lamplight_mail.delivery.job.deliver", account.id)
        for seconds in (0.03, 0.7, 45.0):
            latency.observe_smtp_latency(seconds)

    families = _families(client.get("/metrics"))
    mine = {"account_id": ids["account"], "account": "olive@charity.example"}
    assert (
        _value(
            families, "lamplight_mail_messages_sent", "lamplight_mail_messages_sent_total", **mine
        )
        == 55
    )
    assert (
        _value(
            families,
            "lamplight_mail_messages_failed",
            "lamplight_mail_messages_failed_total",
            **mine,
        )
        == 3
    )
    assert _value(families, "lamplight_mail_messages_waiting", state="queued", **mine) == 3
    assert _value(families, "lamplight_mail_messages_waiting", state="deferred", **mine) == 2
    assert _value(families, "lamplight_mail_limit_usage_ratio", **mine) == pytest.approx(0.2)
    assert _value(families, "lamplight_mail_limit_remaining", **mine) == 160
    assert _value(families, "lamplight_mail_flagged_sends", **mine) == 1
    assert _value(families, "lamplight_mail_account_paused", **mine) == 0
    assert (
        _value(
            families,
            "lamplight_mail_messages_sent",
            "lamplight_mail_messages_sent_total",
            account_id=ids["quiet"],
        )
        == 0
    )
    assert _value(families, "lamplight_mail_queue_depth") == 1
    assert _value(families, "lamplight_mail_workers") == 0
    assert _value(families, "lamplight_mail_redis_up") == 1
    assert 290 <= _value(families, "lamplight_mail_oldest_due_seconds") < 3600

    histogram = "lamplight_mail_smtp_latency_seconds"
    assert families[histogram].type == "histogram"
    assert _value(families, histogram, histogram + "_bucket", le="0.05") == 1
    assert _value(families, histogram, histogram + "_bucket", le="1.0") == 2
    assert _value(families, histogram, histogram + "_bucket", le="30.0") == 2
    assert _value(families, histogram, histogram + "_bucket", le="+Inf") == 3
    assert _value(families, histogram, histogram + "_count") == 3
    assert _value(families, histogram, histogram + "_sum") == pytest.approx(45.73)


def test_metrics_without_redis_still_report_the_database_figures(app, client, tmp_path):
    with app.app_context():
        account = make_account()
        add_daily(account, utcnow().date(), sent=7)
        account_id = account.id
        db.session.commit()
    _use_redis(app, f"unix://{tmp_path}/nothing-listens-here.sock")

    families = _families(client.get("/metrics"))
    assert _value(families, "lamplight_mail_redis_up") == 0
    assert "lamplight_mail_queue_depth" not in families
    sent = "lamplight_mail_messages_sent"
    assert _value(families, sent, sent + "_total", account_id=account_id) == 7


def test_metrics_token_is_required_when_configured(app, client):
    app.config["METRICS_TOKEN"] = "scrape-token-8d2f"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-token-8d2f"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "scrape-token-8d2f" not in response.get_data(as_text=True)
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-8d2f"})
    assert response.status_code == 200
    assert "lamplight_mail_redis_up" in response.get_data(as_text=True)


def test_metrics_are_open_without_a_token_and_need_no_login(app, client):
    assert app.config["METRICS_TOKEN"] is None
    assert client.get("/metrics").status_code == 200
