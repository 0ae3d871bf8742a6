"""The gateway's HTTP/JSON face (FastAPI).

* ``POST /v1/score`` — ``{"id": "42"}`` (the label holder's own features
  looked up by id) or ``{"id": "42", "features": {"x0": 1.5, ...}}`` (its raw
  columns, as in its training data; the part's pipeline prepares them)
  answers ``{"id": "42", "score": 0.13, "version": "<model version id>"}``;
  ``{"ids": [...], "features": [{...}, ...]}`` (features optional) answers
  ``{"ids": [...], "scores": [...], "version": ...}``.
* ``GET /v1/versions`` — the routing table; ``POST /v1/versions`` with
  ``{"action": "serve" | "canary" | "promote" | "rollback", "version": ...,
  "percent": ...}`` changes it (admin: the bearer token given at start, or,
  without one, callers on the loopback interface only).
* ``GET /v1/health``.

Errors are one problem body ``{"title", "detail", "party", "step", "remedy"}``
with a status telling what happened: 422 bad request, 404 unknown id, 403 id
refused by a partner, 502 partner unreachable, 504 partner timeout, 503 no
version served. ``POST /v1/score`` has a fast path (:class:`ScoringFastPath`, what
``sharedml serve gateway`` runs): a bare ASGI handler in front of the app, so
a request costs no routing, validation or middleware.
"""

from __future__ import annotations

import hmac
import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sharedml.errors import (
    ChannelError,
    ConfigError,
    DataError,
    FrameError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    SharedMLError,
)
from sharedml.serving.gateway import Gateway, UnknownRecord
from sharedml.serving.wire import MAX_ROWS, check_ids

_STATUS: list[tuple[type[SharedMLError], int]] = [
    (UnknownRecord, 404), (PeerTimeout, 504), (PeerUnreachable, 502), (FrameError, 422),
    (ChannelError, 502), (PolicyDenied, 403), (DataError, 422), (ConfigError, 503),
]
_JSON, _PROBLEM = "application/json", "application/problem+json"
#: FastAPI >= 0.16x checks OpenTelemetry providers on every request unless told not to.
_NO_TELEMETRY: dict[str, Any] = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                 if "telemetry" in inspect.signature(FastAPI).parameters else {})


def problem(exc: SharedMLError) -> tuple[int, bytes, str]:
    """``(status, body, media type)`` of the problem body for ``exc``."""
    status = next((code for t, code in _STATUS if isinstance(exc, t)), 500)
    body = {"title": type(exc).__name__, "detail": str(exc), "party": exc.party,
            "step": exc.step, "remedy": exc.remedy}
    return status, json.dumps(body).encode(), _PROBLEM


def _problem(exc: SharedMLError) -> Response:
    status, body, media = problem(exc)
    return Response(body, status_code=status, media_type=media)


async def score_body(gateway: Gateway, body: bytes) -> tuple[int, bytes, str]:
    """One score request, from its body to ``(status, body, media type)``."""
    try:
        ids, features, single = _request(body)
        got = await gateway.score(ids, features)
    except SharedMLError as exc:
        return problem(exc)
    scores = got.scores.tolist()
    doc = ({"id": ids[0], "score": scores[0], "version": got.version} if single
           else {"ids": ids, "scores": scores, "version": got.version})
    return 200, json.dumps(doc).encode(), _JSON


class ScoringFastPath:
    """ASGI front of the app: ``POST /v1/score`` goes straight to :func:`score_body`
    (no routing, dependency solving or middleware per request); everything else,
    lifespan included, to the FastAPI app."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/score" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status, body, media = await score_body(self.gateway, b"".join(chunks))
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _request(body: bytes) -> tuple[list[str], Any, bool]:
    """``(ids, features or None, single)`` of a score request, or :class:`DataError`."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise DataError("the body is not JSON", step="serve: request") from None
    if not isinstance(doc, dict) or ("id" in doc) == ("ids" in doc):
        raise DataError("send {\"id\": ...} or {\"ids\": [...]}", step="serve: request")
    single = "id" in doc
    ids = [doc["id"]] if single else doc["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
        raise DataError("ids must be strings or integers", step="serve: request")
    ids = [str(i) for i in ids]
    if not 0 < len(ids) <= MAX_ROWS:
        raise DataError(f"a request scores 1 to {MAX_ROWS} ids", step="serve: request")
    try:
        check_ids(ids)
    except FrameError as exc:
        raise DataError(exc.message, step="serve: request") from None
    return ids, doc.get("features"), single


def create_app(
    gateway: Gateway,
    admin_token: str | None = None,
    initial: str | None = None,
    ready: Callable[[], None] | None = None,
) -> FastAPI:
    """The app; at start it restores the served versions (or serves ``initial``
    when none was served yet), then calls ``ready``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        if initial is not None and gateway.routing.stable is None:
            await gateway.change("serve", initial)
        if ready is not None:
            ready()
        yield
        await gateway.close()

    app = FastAPI(title="sharedml scoring gateway", lifespan=lifespan, **_NO_TELEMETRY)

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        status, body, media = await score_body(gateway, await request.body())
        return Response(body, status_code=status, media_type=media)

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "party": gateway.party, "versions": gateway.routing.versions()}

    @app.get("/v1/versions")
    async def versions() -> dict[str, Any]:
        return gateway.routing.__dict__

    @app.post("/v1/versions")
    async def change(request: Request) -> Response:
        denied = _admin_denied(request, admin_token)
        if denied:
            return _problem(PolicyDenied(denied, party=gateway.party, step="serve: versions"))
        try:
            doc = json.loads(await request.body())
            routing = await gateway.change(str(doc.get("action")), doc.get("version"),
                                           int(doc.get("percent") or 0))
        except SharedMLError as exc:
            return _problem(exc)
        except (ValueError, TypeError, AttributeError):
            return _problem(DataError("send {\"action\": ..., \"version\": ..., "
                                      "\"percent\": ...}", step="serve: versions"))
        return Response(json.dumps(routing.__dict__), media_type=_JSON)

    return app


def _admin_denied(request: Request, token: str | None) -> str | None:
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return None if hmac.compare_digest(given, token) else "a valid admin token is needed"
    host = request.client.host if request.client else ""
    return None if host in ("127.0.0.1", "::1") else "version changes are local-only"
