"""vyked-tcp: TCP services with request-response RPC and publish-subscribe.

::

    from vyked import Host, TCPService, TCPServiceClient, api, request
"""

from vyked.core.host import Host
from vyked.tcp.__about__ import __version__
from vyked.tcp.client import TCPServiceClient
from vyked.tcp.decorators import (
    SubscriptionStrategy,
    api,
    apideprecated,
    publish,
    request,
    subscribe,
    xsubscribe,
)
from vyked.tcp.service import TCPService

__all__ = [
    "Host",
    "SubscriptionStrategy",
    "TCPService",
    "TCPServiceClient",
    "__version__",
    "api",
    "apideprecated",
    "publish",
    "request",
    "subscribe",
    "xsubscribe",
]
