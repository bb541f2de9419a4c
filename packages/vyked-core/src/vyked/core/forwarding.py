"""Senders that take their method's own arguments: :func:`forwarder`.

A client's ``@request`` method describes a request (it returns ``locals()``); the sender that
replaces it calls it and sends what it returns. Written as ``def sender(self, *args,
**kwargs)``, every call packs the arguments into a tuple and a dict and unpacks them again
into the method: about half a microsecond, as much as the rest of choosing the instance and
writing the frame. :func:`forwarder` writes the sender with the method's own parameter list
instead, as :mod:`dataclasses` writes ``__init__``: the arguments go straight through.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_PREFIX = "_vyked_"
"""Names the generated code uses for what it closes over; a method whose parameters start so
gets the generic sender."""

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Placeholder:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SELF = _Placeholder("SELF")
"""In :func:`forwarder`'s ``arguments``: the object the method is called on."""
RESULT = _Placeholder("RESULT")
"""In :func:`forwarder`'s ``arguments``: what the method returned."""


def forwarder(
    method: Callable[..., Any], then: Callable[..., Any] | str, arguments: tuple[Any, ...]
) -> Callable[..., Any]:
    """A function taking ``method``'s arguments (``self`` first) that calls ``method`` with
    them and returns ``then(*arguments)``, where :data:`SELF` in ``arguments`` stands for
    ``self`` and :data:`RESULT` for what ``method`` returned. A ``then`` given by name is a
    method of ``self``, looked up on every call (``self.<then>``: overrides apply).

    Falls back to ``def sender(self, *args, **kwargs)`` where ``method``'s signature cannot be
    read, does not start with a positional ``self``, or is a decorator's wrapper (it has
    ``__wrapped__``: the wrapper may take other arguments than what it wraps).
    """
    if isinstance(then, str) and not then.isidentifier():
        raise ValueError(f"not a method name: {then!r}")
    try:
        parameters = list(inspect.signature(method, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    if (
        hasattr(method, "__wrapped__")
        or not parameters
        or parameters[0].kind not in _POSITIONAL
        or any(p.name.startswith(_PREFIX) for p in parameters)
    ):
        return _generic(method, then, arguments)
    namespace: dict[str, Any] = {f"{_PREFIX}method": method, f"{_PREFIX}then": then}
    defined: list[str] = []
    passed: list[str] = []
    keyword_only_started = False
    last_positional_only = max(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.POSITIONAL_ONLY), default=-1
    )
    for index, parameter in enumerate(parameters):
        name, kind = parameter.name, parameter.kind
        default = ""
        if parameter.default is not inspect.Parameter.empty:
            namespace[f"{_PREFIX}default_{index}"] = parameter.default
            default = f"={_PREFIX}default_{index}"
        if kind in _POSITIONAL:
            defined.append(name + default)
            passed.append(name)
            if index == last_positional_only:
                defined.append("/")
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            defined.append(f"*{name}")
            passed.append(f"*{name}")
            keyword_only_started = True
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            if not keyword_only_started:
                defined.append("*")
                keyword_only_started = True
            defined.append(name + default)
            passed.append(f"{name}={name}")
        else:  # VAR_KEYWORD
            defined.append(f"**{name}")
            passed.append(f"**{name}")
    self_name = parameters[0].name
    result = f"{_PREFIX}method({', '.join(passed)})"
    given: list[str] = []
    for index, argument in enumerate(arguments):
        if argument is SELF:
            given.append(self_name)
        elif argument is RESULT:
            given.append(result)
        else:
            namespace[f"{_PREFIX}argument_{index}"] = argument
            given.append(f"{_PREFIX}argument_{index}")
    call = f"{self_name}.{then}" if isinstance(then, str) else f"{_PREFIX}then"
    source = f"def sender({', '.join(defined)}):\n    return {call}({', '.join(given)})\n"
    exec(source, namespace)  # names from the method's signature; values go in the namespace
    sender: Callable[..., Any] = namespace["sender"]
    return sender


def _generic(
    method: Callable[..., Any], then: Callable[..., Any] | str, arguments: tuple[Any, ...]
) -> Callable[..., Any]:
    def sender(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        call = getattr(self, then) if isinstance(then, str) else then
        return call(*(self if a is SELF else result if a is RESULT else a for a in arguments))

    return sender
