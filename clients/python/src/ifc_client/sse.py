"""Following a Server-Sent Events stream of the service, across reconnects.

Every event's SSE id is a store revision. The follower remembers the last one
its consumer took and, when the connection drops (a server restart, a network
blip, or the server cutting a slow reader), reconnects with ``Last-Event-ID``
so nothing is lost or repeated. Failures that retrying cannot fix (a wrong
token, a revision outside the server's history) are raised.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable, Dict, Generic, Optional, TypeVar

import httpx
from httpx_sse import aconnect_sse

from .errors import (
    CompactedError,
    CoordinatorError,
    InternalError,
    UnavailableError,
    error_from_response,
)

T = TypeVar("T")

RETRY_FIRST = 0.05
RETRY_MAX = 2.0
# The server sends a keep-alive comment every 15 s: a read silent for longer
# than this is a dead connection.
READ_TIMEOUT = 45.0


class Follower(Generic[T]):
    """An async iterator over one stream's items, reconnecting as needed.

    ``after`` is where to start (``None``: the stream's own default).
    ``connected`` is set once the first connection is established, so a
    caller can wait until no later event can be missed.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        path: str,
        headers: Callable[[], Dict[str, str]],
        event: str,
        parse: Callable[[Dict[str, Any]], T],
        revision_of: Callable[[T], int],
        after: Optional[int] = None,
    ) -> None:
        self._http = http
        self._path = path
        self._headers = headers
        self._event = event
        self._parse = parse
        self._revision_of = revision_of
        self.last_revision: Optional[int] = after
        self.connected = asyncio.Event()
        self.reconnects = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._run()

    async def _run(self) -> AsyncIterator[T]:
        delay = RETRY_FIRST
        while True:
            headers = self._headers()
            if self.last_revision is not None:
                headers["Last-Event-ID"] = str(self.last_revision)
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    self._path,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=READ_TIMEOUT),
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        await response.aread()
                        error = _error(response)
                        if not _retryable(error):
                            raise error
                    else:
                        self.connected.set()
                        delay = RETRY_FIRST
                        async for sse in source.aiter_sse():
                            if sse.event == "error":
                                end = _json(sse.data)
                                if end.get("code") == "compacted":
                                    raise CompactedError(
                                        str(end.get("message", "")), code="compacted"
                                    )
                                break  # cut off or store hiccup: resume from our own point
                            if sse.event != self._event:
                                continue
                            item = self._parse(_json(sse.data))
                            yield item
                            # The consumer came back for more: it has handled it.
                            self.last_revision = self._revision_of(item)
            except (httpx.TransportError, httpx.StreamError):
                pass  # reconnect below
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


def _json(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(response: httpx.Response) -> CoordinatorError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_response(response.status_code, body)


def _retryable(error: CoordinatorError) -> bool:
    return isinstance(error, (UnavailableError, InternalError)) or (
        error.status is not None and error.status >= 502
    )
