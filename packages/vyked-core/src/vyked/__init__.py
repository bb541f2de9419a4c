"""vyked: an asyncio framework for service-oriented architectures.

``vyked`` is one import name shared by several distributions. ``vyked-core`` owns this
file; ``vyked-tcp``, ``vyked-http`` and ``vyked-registry`` each ship one subpackage
(``vyked.tcp``, ``vyked.http``, ``vyked.registry``). ``extend_path`` lets those
subpackages live in other ``site-packages`` entries or editable source trees, and the
module-level ``__getattr__`` re-exports their public names lazily, so::

    from vyked import Host, TCPService, api

works once ``vyked-tcp`` is installed, and names a missing distribution otherwise.
See ``docs/architecture.md`` for why this mechanism was chosen.
"""

from __future__ import annotations

import importlib
from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

__path__ = extend_path(__path__, __name__)

# public name -> (module that defines it, distribution that ships the module)
_EXPORTS: dict[str, tuple[str, str]] = {
    # vyked-core
    "Host": ("vyked.core.host", "vyked-core"),
    "ServiceHost": ("vyked.core.service_host", "vyked-core"),
    "VykedError": ("vyked.core.exceptions", "vyked-core"),
    "RemoteError": ("vyked.core.exceptions", "vyked-core"),
    "RequestException": ("vyked.core.exceptions", "vyked-core"),
    "RoninMode": ("vyked.core.exceptions", "vyked-core"),
    "VykedServiceException": ("vyked.core.service_errors", "vyked-core"),
    "VykedServiceError": ("vyked.core.service_errors", "vyked-core"),
    "RequestTimeout": ("vyked.core.exceptions", "vyked-core"),
    "ServiceUnavailable": ("vyked.core.exceptions", "vyked-core"),
    "UnknownEndpoint": ("vyked.core.exceptions", "vyked-core"),
    "InvalidParams": ("vyked.core.exceptions", "vyked-core"),
    "ConnectionLost": ("vyked.core.exceptions", "vyked-core"),
    "ProtocolError": ("vyked.core.exceptions", "vyked-core"),
    "RegistryUnavailable": ("vyked.core.exceptions", "vyked-core"),
    "HostNotRunning": ("vyked.core.exceptions", "vyked-core"),
    "DefinitionError": ("vyked.core.exceptions", "vyked-core"),
    "Overloaded": ("vyked.core.exceptions", "vyked-core"),
    "Draining": ("vyked.core.exceptions", "vyked-core"),
    "AuthenticationFailed": ("vyked.core.exceptions", "vyked-core"),
    # vyked-tcp
    "TCPService": ("vyked.tcp", "vyked-tcp"),
    "TCPServiceClient": ("vyked.tcp", "vyked-tcp"),
    "api": ("vyked.tcp", "vyked-tcp"),
    "apideprecated": ("vyked.tcp", "vyked-tcp"),
    "request": ("vyked.tcp", "vyked-tcp"),
    "publish": ("vyked.tcp", "vyked-tcp"),
    "subscribe": ("vyked.tcp", "vyked-tcp"),
    "xsubscribe": ("vyked.tcp", "vyked-tcp"),
    "SubscriptionStrategy": ("vyked.tcp", "vyked-tcp"),
    # vyked-http
    "HTTPService": ("vyked.http", "vyked-http"),
    "HTTPServiceClient": ("vyked.http", "vyked-http"),
    "Request": ("vyked.http", "vyked-http"),
    "Response": ("vyked.http", "vyked-http"),
    "get": ("vyked.http", "vyked-http"),
    "post": ("vyked.http", "vyked-http"),
    "put": ("vyked.http", "vyked-http"),
    "patch": ("vyked.http", "vyked-http"),
    "delete": ("vyked.http", "vyked-http"),
    "head": ("vyked.http", "vyked-http"),
    "options": ("vyked.http", "vyked-http"),
    "trace": ("vyked.http", "vyked-http"),
    "websocket": ("vyked.http", "vyked-http"),
    # vyked-registry
    "Registry": ("vyked.registry", "vyked-registry"),
}

# names of vyked 2.x kept for migrating code (docs/migrating.md): a module, and the version
_COMPAT: dict[str, tuple[str, str | None]] = {
    "log": ("vyked.log", None),
    "__version__": ("vyked.core.__about__", "__version__"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _COMPAT:
        module_name, attribute = _COMPAT[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    try:
        module_name, distribution = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'vyked' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the missing portion itself becomes an install hint; a missing transitive
        # dependency (say ``redis``) must still show as itself.
        if exc.name is not None and module_name.startswith(exc.name):
            raise ImportError(
                f"vyked.{name} is provided by the {distribution!r} distribution, "
                f"which is not installed: pip install {distribution}",
                name=module_name,
            ) from exc
        raise
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_COMPAT))


if TYPE_CHECKING:
    from vyked import log as log
    from vyked.core.__about__ import __version__ as __version__
    from vyked.core.exceptions import AuthenticationFailed as AuthenticationFailed
    from vyked.core.exceptions import ConnectionLost as ConnectionLost
    from vyked.core.exceptions import DefinitionError as DefinitionError
    from vyked.core.exceptions import Draining as Draining
    from vyked.core.exceptions import HostNotRunning as HostNotRunning
    from vyked.core.exceptions import InvalidParams as InvalidParams
    from vyked.core.exceptions import Overloaded as Overloaded
    from vyked.core.exceptions import ProtocolError as ProtocolError
    from vyked.core.exceptions import RegistryUnavailable as RegistryUnavailable
    from vyked.core.exceptions import RemoteError as RemoteError
    from vyked.core.exceptions import RequestException as RequestException
    from vyked.core.exceptions import RequestTimeout as RequestTimeout
    from vyked.core.exceptions import RoninMode as RoninMode
    from vyked.core.exceptions import ServiceUnavailable as ServiceUnavailable
    from vyked.core.exceptions import UnknownEndpoint as UnknownEndpoint
    from vyked.core.exceptions import VykedError as VykedError
    from vyked.core.host import Host as Host
    from vyked.core.service_errors import VykedServiceError as VykedServiceError
    from vyked.core.service_errors import VykedServiceException as VykedServiceException
    from vyked.core.service_host import ServiceHost as ServiceHost
    from vyked.http import HTTPService as HTTPService
    from vyked.http import HTTPServiceClient as HTTPServiceClient
    from vyked.http import Request as Request
    from vyked.http import Response as Response
    from vyked.http import delete as delete
    from vyked.http import get as get
    from vyked.http import head as head
    from vyked.http import options as options
    from vyked.http import patch as patch
    from vyked.http import post as post
    from vyked.http import put as put
    from vyked.http import trace as trace
    from vyked.http import websocket as websocket
    from vyked.registry import Registry as Registry
    from vyked.tcp import SubscriptionStrategy as SubscriptionStrategy
    from vyked.tcp import TCPService as TCPService
    from vyked.tcp import TCPServiceClient as TCPServiceClient
    from vyked.tcp import api as api
    from vyked.tcp import apideprecated as apideprecated
    from vyked.tcp import publish as publish
    from vyked.tcp import request as request
    from vyked.tcp import subscribe as subscribe
    from vyked.tcp import xsubscribe as xsubscribe
