"""Senders that take their method's own arguments: :func:`forwarder`.

A client's ``@request`` method describes a request (it returns ``locals()``); the sender that
replaces it calls it and sends what it returns. Written as ``def sender(self, *args,
**kwargs)``, every call packs the arguments into a tuple and a dict and unpacks them again
into the method: about half a microsecond, as much as the rest of choosing the instance and
writing the frame. :func:`forwarder` writes the sender with the method's own parameter list
instead, as :mod:`dataclasses` writes ``__init__``: the arguments go straight through.

Most ``@request`` methods are nothing but ``return locals()``. For those
(:func:`returns_locals`) the sender need not call the method at all: :data:`LOCALS` in its
arguments is the dict ``locals()`` would return, built by the sender from its own parameters,
and :func:`parameter` takes one parameter out of that dict to pass it on its own.

The other way round, on the service side, :func:`keyword_caller` calls a handler with a
request's parameters (a dict): as keywords, Python matches each name to the handler's
parameters by comparing strings (the decoder's names are not the handler's own objects),
which costs more than the rest of calling it; the caller passes them by position when they
are exactly the handler's parameters.
"""

from __future__ import annotations

import builtins
import dis
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
LOCALS = _Placeholder("LOCALS")
"""In :func:`forwarder`'s ``arguments``, for a method that :func:`returns_locals`: what it would
return, less ``self`` and the parameters that :func:`parameter` takes out; the method itself is
not called."""


class _Parameter(_Placeholder):
    __slots__ = ("absent", "convert")

    def __init__(self, name: str, absent: Any, convert: Callable[[Any], Any] | None) -> None:
        super().__init__(name)
        self.absent = absent
        self.convert = convert

    def __repr__(self) -> str:
        return f"parameter({self.name!r})"


def parameter(name: str, absent: Any = None, convert: Callable[[Any], Any] | None = None) -> Any:
    """In :func:`forwarder`'s ``arguments`` beside :data:`LOCALS`: the argument of the method's
    parameter ``name`` (passed through ``convert``, if given), which :data:`LOCALS` then leaves
    out; ``absent`` when the method has no such parameter."""
    return _Parameter(name, absent, convert)


_LOCALS_BODY = [("LOAD_GLOBAL", "locals"), ("CALL", 0), ("RETURN_VALUE", None)]
_NOT_RUN = {"RESUME", "NOP", "CACHE", "PRECALL", "PUSH_NULL", "EXTENDED_ARG"}


def returns_locals(method: Callable[..., Any]) -> bool:
    """``method`` is a plain function whose body is ``return locals()`` and nothing else (a
    docstring aside), so what it returns is a dict of its arguments: :data:`LOCALS` may stand in
    for calling it."""
    code = getattr(method, "__code__", None)
    if code is None or not inspect.isfunction(method) or _forwardable_parameters(method) is None:
        return False
    if "__signature__" in vars(method):  # the sender's parameters would not be the code's
        return False
    if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
        return False
    if code.co_freevars or code.co_cellvars or method.__globals__.get("locals", builtins.locals) is not builtins.locals:
        return False
    body = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in _NOT_RUN]
    return body == _LOCALS_BODY


def forwarder(
    method: Callable[..., Any], then: Callable[..., Any] | str, arguments: tuple[Any, ...]
) -> Callable[..., Any]:
    """A function taking ``method``'s arguments (``self`` first) that calls ``method`` with
    them and returns ``then(*arguments)``, where :data:`SELF` in ``arguments`` stands for
    ``self`` and :data:`RESULT` for what ``method`` returned. A ``then`` given by name is a
    method of ``self``, looked up on every call (``self.<then>``: overrides apply). With
    :data:`LOCALS` (and :func:`parameter`) instead of :data:`RESULT`, ``method`` is not called:
    a ``ValueError`` unless it :func:`returns_locals`.

    Falls back to ``def sender(self, *args, **kwargs)`` where ``method``'s signature cannot be
    read, does not start with a positional ``self``, or is a decorator's wrapper (it has
    ``__wrapped__``: the wrapper may take other arguments than what it wraps).
    """
    if isinstance(then, str) and not then.isidentifier():
        raise ValueError(f"not a method name: {then!r}")
    uses_locals = any(argument is LOCALS for argument in arguments)
    if uses_locals and not returns_locals(method):
        raise ValueError(f"LOCALS stands only for a method whose body is 'return locals()', not {method!r}")
    if not uses_locals and any(isinstance(argument, _Parameter) for argument in arguments):
        raise ValueError("parameter() goes with LOCALS")
    parameters = _forwardable_parameters(method)
    if parameters is None:
        return _generic(method, then, arguments)
    namespace: dict[str, Any] = {f"{_PREFIX}method": method, f"{_PREFIX}then": then}
    defined: list[str] = []
    passed: list[str] = []
    keyword_only_started = False
    last_positional_only = max(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.POSITIONAL_ONLY), default=-1
    )
    for index, param in enumerate(parameters):
        name, kind = param.name, param.kind
        default = ""
        if param.default is not inspect.Parameter.empty:
            namespace[f"{_PREFIX}default_{index}"] = param.default
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
    taken = {argument.name for argument in arguments if isinstance(argument, _Parameter)}
    code = method.__code__ if uses_locals else None
    given: list[str] = []
    for index, argument in enumerate(arguments):
        if argument is SELF:
            given.append(self_name)
        elif argument is RESULT:
            given.append(result)
        elif argument is LOCALS:
            assert code is not None
            names = code.co_varnames[: len(parameters)]  # locals() of a function that only returns it
            given.append("{" + ", ".join(f"{n!r}: {n}" for n in names if n != self_name and n not in taken) + "}")
        elif isinstance(argument, _Parameter):
            if argument.name not in (p.name for p in parameters[1:]):
                namespace[f"{_PREFIX}argument_{index}"] = argument.absent
                given.append(f"{_PREFIX}argument_{index}")
            elif argument.convert is not None:
                namespace[f"{_PREFIX}convert_{index}"] = argument.convert
                given.append(f"{_PREFIX}convert_{index}({argument.name})")
            else:
                given.append(argument.name)
        else:
            namespace[f"{_PREFIX}argument_{index}"] = argument
            given.append(f"{_PREFIX}argument_{index}")
    call = f"{self_name}.{then}" if isinstance(then, str) else f"{_PREFIX}then"
    source = f"def sender({', '.join(defined)}):\n    return {call}({', '.join(given)})\n"
    exec(source, namespace)  # names from the method's signature; values go in the namespace
    sender: Callable[..., Any] = namespace["sender"]
    return sender


def _forwardable_parameters(method: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """``method``'s parameters, if a sender can be written with them (see :func:`forwarder`)."""
    try:
        parameters = list(inspect.signature(method, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    if (
        hasattr(method, "__wrapped__")
        or not parameters
        or parameters[0].kind not in _POSITIONAL
        or any(p.name.startswith(_PREFIX) for p in parameters)
    ):
        return None
    return parameters


def _generic(
    method: Callable[..., Any], then: Callable[..., Any] | str, arguments: tuple[Any, ...]
) -> Callable[..., Any]:
    def sender(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        call = getattr(self, then) if isinstance(then, str) else then
        return call(*(self if a is SELF else result if a is RESULT else a for a in arguments))

    return sender


def keyword_caller(handler: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    """A function that calls ``handler`` with a dict of keyword arguments, as
    ``handler(**params)`` does, and with the same outcome: by position when the dict holds
    exactly the handler's parameters, all of which may be given by position or keyword; by
    keyword otherwise (where Python then says what does not fit). Only a plain function (or
    method) whose signature is its own is called by position: a decorator's wrapper, or a
    function dressed in another's signature, may look at the keywords it gets."""
    function = getattr(handler, "__func__", handler)
    parameters: list[inspect.Parameter] = []
    if inspect.isfunction(function) and not hasattr(function, "__wrapped__") and "__signature__" not in vars(function):
        parameters = list(inspect.signature(handler, follow_wrapped=False).parameters.values())
    names = [p.name for p in parameters]
    # the builtins the code uses go in under prefixed names: a parameter may be called ``len``
    namespace: dict[str, Any] = {f"{_PREFIX}handler": handler, f"{_PREFIX}len": len, f"{_PREFIX}KeyError": KeyError}
    source = f"def call({_PREFIX}params, /):\n"
    if (
        parameters
        and all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        and not any(name.startswith(_PREFIX) for name in names)
    ):
        fetch = "; ".join(f"{name} = {_PREFIX}params[{name!r}]" for name in names)
        source += (
            f"    if {_PREFIX}len({_PREFIX}params) == {len(names)}:\n"
            f"        try:\n"
            f"            {fetch}\n"
            f"        except {_PREFIX}KeyError:\n"
            f"            pass\n"
            f"        else:\n"
            f"            return {_PREFIX}handler({', '.join(names)})\n"
        )
    source += f"    return {_PREFIX}handler(**{_PREFIX}params)\n"
    exec(source, namespace)  # names from the handler's signature; the handler in the namespace
    call: Callable[[dict[str, Any]], Any] = namespace["call"]
    return call
