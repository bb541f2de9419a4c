"""vyked-http: HTTP services whose routes are declared by decorators, and HTTP clients that
find those services through the registry.

::

    from vyked import Host, HTTPService, HTTPServiceClient, get, post, Request, Response

See ``docs/http.md`` for routes, statistics, error bodies, CORS and client semantics.
"""

from aiohttp.web import Request, Response

from vyked.core.host import Host
from vyked.http.__about__ import __version__
from vyked.http.client import HTTPServiceClient
from vyked.http.decorators import RouteSpec, delete, get, head, options, patch, post, put, trace, websocket
from vyked.http.service import HTTPService

__all__ = [
    "HTTPService",
    "HTTPServiceClient",
    "Host",
    "Request",
    "Response",
    "RouteSpec",
    "__version__",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "trace",
    "websocket",
]
