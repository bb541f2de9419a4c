"""vyked-core: what every vyked distribution shares.

- :mod:`vyked.core.protocol`: the wire protocol, sans-IO (packets, framing, the session)
- :mod:`vyked.core.transport`: packet connections over asyncio TCP
- :mod:`vyked.core.registry_client`, :mod:`vyked.core.instances`: finding instances
- :mod:`vyked.core.endpoints`: how decorators mark methods and base classes read the marks
- :mod:`vyked.core.service`, :mod:`vyked.core.client`: service and client bases, the client path
- :mod:`vyked.core.service_host`, :mod:`vyked.core.host`: ServiceHost and the seed's Host
- :mod:`vyked.core.backoff`, :mod:`vyked.core.tasks`: reconnect loops, background tasks
- :mod:`vyked.core.exceptions`: every error vyked raises
"""

from vyked.core.__about__ import __version__
from vyked.core.client import ServiceClient
from vyked.core.exceptions import (
    ConnectionLost,
    DefinitionError,
    HostNotRunning,
    InvalidParams,
    ProtocolError,
    RegistryUnavailable,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    UnknownEndpoint,
    VykedError,
)
from vyked.core.host import Host
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost

__all__ = [
    "ConnectionLost",
    "DefinitionError",
    "Host",
    "HostNotRunning",
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
