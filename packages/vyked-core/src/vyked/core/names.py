"""How service names compare: without regard to case, as in vyked 2.x.

vyked 2.x lowercased every service name it was given (``TCPService("UserService", 1)``
registered ``userservice``), so a client of ``"userService"`` found it. vyked keeps the name as
written, for logs, metrics and the registry's status, and compares names through
:func:`service_key` wherever a name is looked up: the registry's instance lists and watchers,
the instance directory of each host, and a TCP service checking that a request is meant for it.
Event keys of publish-subscribe are the exception: they are compared as written
(``docs/migrating.md``).
"""

from __future__ import annotations

__all__ = ["same_service", "service_key"]


def service_key(name: str) -> str:
    """The form service names are compared in (lower case)."""
    return name.lower()


def same_service(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same service (equal, or equal but for case)."""
    return a == b or a.lower() == b.lower()
