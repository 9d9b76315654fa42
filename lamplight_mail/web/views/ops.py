"""For machines: /healthz for load balancers and /metrics for Prometheus (both public routes,
see auth.PUBLIC_ENDPOINTS; /metrics takes a bearer token when one is configured)."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Response

from lamplight_mail.ops import monitoring

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    health = monitoring.check_health()
    return jsonify(health.as_json()), 200 if health.ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if token and not _bearer_matches(token):
        return Response(
            "A valid bearer token is required.\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    return Response(monitoring.metrics_text(), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time, so the response time does not reveal how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
