"""Every error vyked raises, under one root.

::

    VykedError
    ├── ProtocolError                 a peer broke the wire protocol
    │   ├── FrameTooLarge             a frame over the size limit
    │   ├── HandshakeTimeout          the peer did not complete the handshake in time
    │   └── ProtocolVersionMismatch   the peer speaks another protocol version
    ├── AuthenticationFailed          (PermissionError) the peer does not know the cluster secret,
    │                                 or its certificate does not name the service it claims
    │   └── NodeIdTaken               another live connection holds the node id registered
    ├── ConfigurationError            (ValueError) a setting (a VYKED_* variable...) is malformed
    ├── Overloaded                    (ConnectionError) the peer refused new work: at its limit
    ├── Draining                      (ConnectionError) the instance is shutting down; nothing ran
    ├── RegistryUnavailable           (ConnectionError) no registry could be reached or answered
    ├── ServiceUnavailable            (ConnectionError) no live instance of a service
    │   └── RoninMode                 the host runs without a registry (Host.ronin): it finds none
    ├── ConnectionLost                (ConnectionError) the connection died mid-request
    ├── HostNotRunning                (RuntimeError) the host a call needs is not started, or stopped
    ├── ListenError                   (OSError) a service or registry cannot listen on its address
    ├── DefinitionError               (TypeError) a service or client class is declared wrongly
    ├── MissingExtra                  (ImportError) an optional dependency is not installed
    ├── RequestTimeout                (TimeoutError) no answer within the timeout
    ├── UnknownEndpoint               (LookupError) the service has no such endpoint
    ├── InvalidParams                 (TypeError) the params do not fit the endpoint
    ├── PublishError                  (TypeError) an event payload cannot be sent
    └── RemoteError                   the remote handler raised; carries its type and message
        └── RequestException          ... a VykedServiceException (an expected failure, as in 2.x)

The bases vyked 2.x gave services for their own exceptions, ``VykedServiceException`` and
``VykedServiceError``, are not vyked's errors: they live in :mod:`vyked.core.service_errors`.

Foreign exceptions (``OSError``, ``TimeoutError``, a library's own errors) are translated
where vyked calls into I/O, with :func:`map_exceptions`; no other exception type reaches a
caller of vyked.

Errors that cross the wire travel as ``error`` packets whose ``code`` names one of these
classes (see ``docs/protocol.md``); :func:`error_from_code` rebuilds them on the caller's side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class VykedError(Exception):
    """Root of every vyked error."""

    code = "error"
    not_executed = False
    """True when the error proves the request did not run (safe to send elsewhere)."""


class ProtocolError(VykedError):
    """The peer sent something the wire protocol does not allow; the connection closes."""

    code = "bad_frame"


class FrameTooLarge(ProtocolError):
    """A frame announced a length over the configured maximum."""

    code = "frame_too_large"


class HandshakeTimeout(ProtocolError):
    """An accepted connection did not complete the handshake within the handshake timeout."""

    code = "handshake_timeout"


class AuthenticationFailed(VykedError, PermissionError):
    """The peer did not prove it knows the cluster secret (or this side has none and the peer
    requires one), or its certificate does not name the service it registers."""

    code = "auth_failed"


class Overloaded(VykedError, ConnectionError):
    """The peer refused a connection (or a request) because it is at its limit; nothing ran."""

    code = "overloaded"
    not_executed = True


class Draining(VykedError, ConnectionError):
    """The instance is shutting down (draining): it refused the request without running it,
    so the caller may safely send it to another instance."""

    code = "draining"
    not_executed = True


class NodeIdTaken(AuthenticationFailed):
    """A ``register`` for a node id that another live connection holds: a node id names one
    instance, so the registration stays with its holder and the newcomer is refused."""

    code = "node_id_taken"


class ConfigurationError(VykedError, ValueError):
    """A setting is malformed or names something that does not exist (a ``VYKED_*`` variable,
    a secret file, a certificate)."""

    code = "configuration"


class ProtocolVersionMismatch(ProtocolError):
    """The peer's ``hello`` carried a protocol version this side does not speak."""

    code = "protocol_version"


class RegistryUnavailable(VykedError, ConnectionError):
    """No registry could be reached at any configured address."""

    code = "registry_unavailable"


class ServiceUnavailable(VykedError, ConnectionError):
    """No live instance of the requested service (and version) is registered."""

    code = "service_unavailable"


class RoninMode(ServiceUnavailable):
    """A client of a host in ronin mode (``Host.ronin = True``, ``VYKED_RONIN``) called a
    service: a ronin host has no registry, so it cannot find any instance."""

    code = "ronin_mode"


class ConnectionLost(VykedError, ConnectionError):
    """The connection carrying a request closed before its answer arrived."""

    code = "connection_lost"


class RequestTimeout(VykedError, TimeoutError):
    """The request (or the remote handler) ran past its timeout."""

    code = "timeout"


class UnknownEndpoint(VykedError, LookupError):
    """The remote service has no endpoint of that name."""

    code = "unknown_endpoint"


class InvalidParams(VykedError, TypeError):
    """The request's parameters do not match the endpoint's signature."""

    code = "invalid_params"


class HostNotRunning(VykedError, RuntimeError):
    """The host a call needs has not been started yet, or has stopped."""

    code = "host_not_running"


class ListenError(VykedError, OSError):
    """A service or the registry cannot listen on its address (in use, not local, no permission)."""

    code = "listen_error"


class DefinitionError(VykedError, TypeError):
    """A service or client class declares something vyked cannot serve (a reserved name...)."""

    code = "definition_error"


class MissingExtra(VykedError, ImportError):
    """A feature needs an optional dependency that is not installed; the message says which
    extra to install."""

    code = "missing_extra"


class PublishError(VykedError, TypeError):
    """An event payload could not be serialised for publishing."""

    code = "publish_error"


class RemoteError(VykedError):
    """The remote handler raised an exception.

    ``remote_type`` is the qualified name of the remote exception's class, ``message`` its
    message and ``remote_args`` its JSON-serialisable arguments.
    """

    code = "remote_error"

    def __init__(self, remote_type: str, message: str, remote_args: list[Any] | None = None):
        super().__init__(f"{remote_type}: {message}" if message else remote_type)
        self.remote_type = remote_type
        self.message = message
        self.remote_args = remote_args or []


class RequestException(RemoteError):
    """The remote handler raised a :class:`~vyked.core.service_errors.VykedServiceException`:
    a failure it expects (record not found, invalid parameter...). As in vyked 2.x,
    :attr:`error` is its message."""

    code = "request_exception"

    @property
    def error(self) -> str:
        """The remote exception's message (2.x callers read ``exc.error``)."""
        return self.message


_BY_CODE: dict[str, type[VykedError]] = {
    cls.code: cls
    for cls in (
        ProtocolError,
        FrameTooLarge,
        HandshakeTimeout,
        ProtocolVersionMismatch,
        AuthenticationFailed,
        NodeIdTaken,
        Overloaded,
        Draining,
        ServiceUnavailable,
        RoninMode,
        ConnectionLost,
        RequestTimeout,
        UnknownEndpoint,
        InvalidParams,
    )
}


def error_from_code(code: str, message: str, error_type: str = "", args: list[Any] | None = None) -> VykedError:
    """Rebuild the exception an ``error`` packet describes."""
    if code == RemoteError.code:
        return RemoteError(error_type or "Exception", message, args)
    if code == RequestException.code:
        return RequestException(error_type or "VykedServiceException", message, args)
    cls = _BY_CODE.get(code)
    if cls is None:
        return RemoteError(error_type or code, message, args)
    return cls(message)


ExceptionMap = Mapping[type[BaseException], type[VykedError]]


class map_exceptions:
    """Translate foreign exceptions raised in a ``with`` block into vyked errors.

    ``mapping`` is ordered, most specific first (``{TimeoutError: RegistryUnavailable, OSError:
    ConnectionLost}``); the new error's message is ``"{context}: {original}"`` and its cause the
    original. vyked errors and exceptions not in ``mapping`` pass through unchanged. A plain
    class rather than ``@contextmanager``, so that entering it costs next to nothing.
    """

    __slots__ = ("context", "mapping")

    def __init__(self, mapping: ExceptionMap, context: str) -> None:
        self.mapping = mapping
        self.context = context

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, VykedError) or not isinstance(exc, Exception):
            return
        for foreign, ours in self.mapping.items():
            if isinstance(exc, foreign):
                detail = str(exc) or type(exc).__name__
                raise ours(f"{self.context}: {detail}") from exc
