"""``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus) beside ``/api/v1`` (issue 13 item 7).

Outside ``/api/v1`` and without a login, as probes and scrapers call them:
they say whether the process serves and is ready, and the counts and states
of :mod:`sharedml.platform.metrics` — no dataset, model or user data.
``/metrics`` asks for the operator's bearer token when the platform has one,
and answers 404 here when it is served on a listener of its own
(:mod:`sharedml.telemetry.access`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sharedml.telemetry.access import CHALLENGE, bearer_ok

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="the process serves")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="the database answers and the scheduler ticks")
def readyz(request: Request) -> JSONResponse:
    ok, reason = request.app.state.metrics.ready()
    return JSONResponse({"status": "ok" if ok else reason}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    state = request.app.state
    if state.metrics_elsewhere:
        return JSONResponse({"status": "served on the metrics listener"}, status_code=404)
    if not bearer_ok(request.headers.get("authorization"), state.metrics_token):
        return JSONResponse({"status": "a bearer token is required"}, status_code=401,
                            headers={"WWW-Authenticate": CHALLENGE})
    body, kind = state.metrics.exposition()
    return Response(body, media_type=kind)
