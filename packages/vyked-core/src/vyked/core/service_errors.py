"""The bases vyked 2.x gave services for their own exceptions, importable from ``vyked``.

They are not vyked's errors (those derive from :class:`~vyked.core.exceptions.VykedError`):
a service raises them, and the caller sees them as remote errors.
"""

from __future__ import annotations

__all__ = ["VykedServiceError", "VykedServiceException"]


class VykedServiceException(Exception):
    """Base of a service's expected failures (record not found, invalid parameter...). A TCP
    handler raising one answers its caller with a
    :class:`~vyked.core.exceptions.RequestException` carrying the message (a ``RemoteError``
    whose ``error`` is the message, as in 2.x), and logs it at INFO, without a traceback."""


class VykedServiceError(Exception):
    """Base of failures a service cannot handle at its level (a database gone...). Like any
    other exception a handler raises, it reaches the caller as a
    :class:`~vyked.core.exceptions.RemoteError`, logged with its traceback."""
