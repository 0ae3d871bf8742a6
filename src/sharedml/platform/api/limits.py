"""Request bounds at the ASGI layer, before routing and authentication (8.3-2).

:class:`RequestLimits` wraps the whole app, so every request — logged in or
not — is held to the same bounds before any route, dependency or JSON parser
sees it (issue 14 item 2: an unauthenticated 100 MiB body was read in full
before its 401; a 30 MiB JSON spec was stored; JSON nested 5,000 deep gave a
500):

1. A declared ``Content-Length`` above :data:`MAX_BODY` is refused with 413
   at once, without reading the body.
2. A body sent without a length (chunked) is read only up to
   :data:`MAX_BODY` bytes; one byte more and it is refused with 413.
3. A JSON body nested deeper than :data:`MAX_JSON_DEPTH` arrays/objects is
   refused with 422 before it is parsed (a byte scan, no recursion).

The refusals are :class:`~sharedml.platform.api.schemas.Problem` bodies that
never quote the input. Bounds on what a job spec may contain are the spec
parser's (:mod:`sharedml.components.spec_limits`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body accepted (a job spec is far smaller).
MAX_BODY = 1 << 20
#: Deepest nesting of JSON arrays/objects accepted in a body.
MAX_JSON_DEPTH = 64


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str, remedy: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.remedy = status, detail, remedy


def json_depth(body: bytes, limit: int) -> int:
    """The nesting depth of JSON text, stopping as soon as it passes ``limit``.

    Brackets inside strings (escapes included) do not count. The text need
    not be valid JSON: the parser judges that later.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class RequestLimits:
    """ASGI middleware: bounds every HTTP request's body before the app runs."""

    def __init__(
        self, app: ASGIApp, max_body: int = MAX_BODY, max_depth: int = MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_length(scope)
            body = await self._read(receive)
            if _is_json(scope) and json_depth(body, self.max_depth) > self.max_depth:
                raise BodyRefused(
                    422,
                    f"the JSON body nests deeper than {self.max_depth} levels",
                    "send a flatter document",
                )
        except BodyRefused as refused:
            await _problem(send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_length(self, scope: Scope) -> None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BodyRefused(400, "Content-Length is not a number",
                                      "send a valid Content-Length") from None
                if declared > self.max_body:
                    raise self._too_large()

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self) -> BodyRefused:
        return BodyRefused(
            413,
            f"the request body is larger than {self.max_body} bytes",
            "send a smaller request (a job spec is far smaller)",
        )


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def _replay(body: bytes, upstream: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the server's messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


async def _problem(send: Send, refused: BodyRefused) -> None:
    body = json.dumps(
        {"error": "RequestRefused", "detail": refused.detail, "remedy": refused.remedy}
    ).encode()
    await send({
        "type": "http.response.start",
        "status": refused.status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
