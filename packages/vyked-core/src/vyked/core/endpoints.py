"""Endpoints declared by decorators: marking methods, and reading the marks of a class.

Every vyked decorator (``@api``, ``@request``, ``@publish``, ``@subscribe``, ``@get``...) only
calls :func:`mark`: it attaches a spec to the function and returns the function itself, so a
decorated method can still be called directly on an object that no host runs. The service
and client base classes do the rest once per class, in ``__init_subclass__``:

- :func:`collect` finds the specs of a class, its bases included;
- :func:`check_reserved` refuses an endpoint whose name the base class uses itself (an
  ``@api def stop`` would replace the service's own ``stop``);
- :func:`install_senders` replaces the marked methods of a client (and ``@publish`` methods
  of a service) by ones that send what the method returns: the method describes the request,
  the sender does the I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from vyked.core.exceptions import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")

MARKS_ATTRIBUTE = "__vyked_marks__"
"""The tuple of specs a function carries, in the order its decorators ran (innermost first)."""
SENDER_ATTRIBUTE = "__vyked_sender__"
"""Set on a method that :func:`install_senders` made, so that subclasses do not wrap it again."""


def mark(func: F, spec: object) -> F:
    """Attach ``spec`` to ``func`` and return ``func`` unchanged."""
    if not callable(func):
        raise DefinitionError(f"a vyked decorator decorates a function, not {func!r}")
    setattr(func, MARKS_ATTRIBUTE, (*marks_of(func), spec))
    return func


def marks_of(obj: object) -> tuple[object, ...]:
    """Every spec attached to ``obj``."""
    marks: tuple[object, ...] = getattr(obj, MARKS_ATTRIBUTE, ())
    return marks


def specs_of(obj: object, spec_type: type[S], where: Callable[[S], bool] | None = None) -> tuple[S, ...]:
    """The specs of ``spec_type`` (and satisfying ``where``) attached to ``obj``."""
    return tuple(s for s in marks_of(obj) if isinstance(s, spec_type) and (where is None or where(s)))


def collect(cls: type, spec_type: type[S], where: Callable[[S], bool] | None = None) -> dict[str, tuple[S, ...]]:
    """``{attribute name: specs}`` for the marked methods of ``cls`` and its bases.

    A subclass that overrides a marked method without decorating it keeps the base's specs
    (and the override serves them); decorating the override replaces them.
    """
    found: dict[str, tuple[S, ...]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            specs = specs_of(value, spec_type, where)
            if specs:
                found[attr] = specs
    return found


def check_reserved(
    cls: type,
    base: type,
    attributes: Iterable[str],
    instance_attributes: Iterable[str] = (),
    *,
    allowed: Iterable[str] = (),
) -> None:
    """Raise :class:`DefinitionError` if an endpoint of ``cls`` is named like something
    ``base`` uses: its methods and properties, or the ``instance_attributes`` its
    ``__init__`` sets. ``allowed`` names may be replaced on purpose."""
    reserved = {n for n in dir(base) if not n.startswith("__")} | set(instance_attributes)
    reserved -= set(allowed)
    for attr in attributes:
        if attr in reserved:
            raise DefinitionError(
                f"{cls.__qualname__}.{attr}: {base.__name__} uses the name {attr!r} itself; "
                f"give the method another name"
            )


def install_senders(
    cls: type,
    spec_type: type[S],
    make_sender: Callable[[Callable[..., Any], S], Callable[..., Any]],
    *,
    where: Callable[[S], bool] | None = None,
    what: str = "decorator",
) -> None:
    """Replace each method of ``cls``'s own namespace marked with one ``spec_type`` spec by
    ``make_sender(method, spec)``. The sender keeps the method's name, docstring and marks."""
    for attr, value in list(vars(cls).items()):
        if getattr(value, SENDER_ATTRIBUTE, False):
            continue
        specs = specs_of(value, spec_type, where)
        if not specs:
            continue
        if len(specs) > 1:
            raise DefinitionError(f"{cls.__qualname__}.{attr}: a client method takes exactly one {what}")
        sender = functools.update_wrapper(make_sender(value, specs[0]), value)
        setattr(sender, SENDER_ATTRIBUTE, True)
        setattr(cls, attr, sender)
