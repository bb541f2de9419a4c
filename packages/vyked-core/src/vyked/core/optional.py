"""Importing optional dependencies, with the extra to install when one is missing.

Features that need a third-party package not every installation wants (``redis`` for the
registry's ``--redis`` and for Redis pub-sub) declare it as an extra of their distribution
(``pip install 'vyked-registry[redis]'``) and import it through :func:`require` at the point
of use, so that the rest of the distribution works without it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vyked.core.exceptions import MissingExtra

__all__ = ["require"]


def require(module_name: str, extra: str, *, dependency: str | None = None) -> ModuleType:
    """Import and return ``module_name``, or raise :class:`~vyked.core.exceptions.MissingExtra`
    naming the ``pip install`` command of ``extra`` when the optional dependency is missing.

    ``extra`` is the requirement that brings the dependency, such as ``"vyked-registry[redis]"``.
    ``dependency`` is the top-level module whose absence means the extra is not installed; it
    defaults to the top-level package of ``module_name``, and is given when ``module_name`` is
    a vyked module that imports the dependency (``require("vyked.tcp.pubsub.redis_transport",
    "vyked-tcp[redis]", dependency="redis")``).

    Only a :exc:`ModuleNotFoundError` for ``dependency`` itself or one of its submodules
    becomes :class:`~vyked.core.exceptions.MissingExtra` (raised from it); any other import
    error is a real bug and propagates unchanged.
    """
    dependency = dependency or module_name.partition(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (exc.name == dependency or exc.name.startswith(dependency + ".")):
            raise
        raise MissingExtra(
            f"the optional dependency {dependency!r} is not installed (no module named {exc.name!r}); "
            f"install it with: pip install '{extra}'",
            name=exc.name,
        ) from exc
