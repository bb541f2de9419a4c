"""vyked-core: what every vyked distribution shares.

- :mod:`vyked.core.protocol`: the wire protocol, sans-IO (packets, framing)
- :mod:`vyked.core.transport`: packet connections over asyncio TCP
- :mod:`vyked.core.registry_client`, :mod:`vyked.core.instances`: finding instances
- :mod:`vyked.core.service`, :mod:`vyked.core.host`: service bases and the Host
- :mod:`vyked.core.exceptions`: every error vyked raises
"""

from vyked.core.__about__ import __version__
from vyked.core.exceptions import (
    ConnectionLost,
    InvalidParams,
    ProtocolError,
    RegistryUnavailable,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    UnknownEndpoint,
    VykedError,
)
from vyked.core.host import Host, ServiceHost
from vyked.core.service import Service, ServiceClient

__all__ = [
    "ConnectionLost",
    "Host",
    "InvalidParams",
    "ProtocolError",
    "RegistryUnavailable",
    "RemoteError",
    "RequestTimeout",
    "Service",
    "ServiceClient",
    "ServiceHost",
    "ServiceUnavailable",
    "UnknownEndpoint",
    "VykedError",
    "__version__",
]
