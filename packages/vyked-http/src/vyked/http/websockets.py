"""Tracking a service's open websockets: a handler that fails after the handshake has its
socket closed (code 1011, by :func:`~vyked.http.endpoint_wrapper.wrap_endpoint`), and the
service's shutdown closes the others (code 1001)."""

from __future__ import annotations

from aiohttp import WSCloseCode, web


class WebsocketTracker:
    """The service's open websockets, so that a failing handler or the shutdown can close them."""

    def __init__(self) -> None:
        self._open: dict[int, web.WebSocketResponse] = {}

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """``app.on_response_prepare`` hook: remember websockets as they are accepted."""
        if isinstance(response, web.WebSocketResponse):
            self._open[id(request)] = response

    def pop(self, request: web.Request) -> web.WebSocketResponse | None:
        return self._open.pop(id(request), None)

    def __len__(self) -> int:
        return len(self._open)

    async def close_all(self, app: web.Application) -> None:
        """``app.on_shutdown`` hook: tell every open websocket the server is going away."""
        for ws in list(self._open.values()):
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
