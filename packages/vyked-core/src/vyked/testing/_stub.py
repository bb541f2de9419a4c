"""A stand-in for a service client in unit tests: :class:`ClientStub`.

Code under test that calls another service through a client (``await self.identity.create(...)``)
can be tested without that service, a registry or a socket: give it a client whose
``@request`` methods (or HTTP verb methods) answer from canned values or raise given errors,
and check what it sent. The stub keeps the real client object, so ``isinstance`` checks and
type hints hold, and runs the client's own methods to build each request, so a call that the
real client would refuse (wrong arguments) fails the same way.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from vyked.core.client import ServiceClient
from vyked.core.endpoints import SENDER_ATTRIBUTE
from vyked.testing._inbox import Call, Inbox

__all__ = ["ClientStub"]

C = TypeVar("C", bound=ServiceClient)


class ClientStub(Generic[C]):
    """Replace the senders of ``client`` (an instance, or a client class taking no arguments)
    with canned answers, given by method name::

        identity = ClientStub(IdentityClient, create={"user_name": "ann"}, exists=ServiceUnavailable("down"))
        service = IdentityHTTPService("127.0.0.1", 0, identity=identity.client)
        ...
        assert identity.calls == [("create", {"user_name": "ann", "password": "pw"})]

    An answer is one of:

    - an exception instance or class: the call raises it (``ServiceUnavailable``,
      ``RequestTimeout``, ``RemoteError``... as the real client would);
    - a callable: called with the request's parameters as keyword arguments, its result (or
      awaited result) is the answer, and what it raises the call raises;
    - anything else: the answer itself (a fresh deep copy per call, as a decoded reply would be).

    Calling a method that has no answer raises :class:`LookupError` naming it. Calls never
    touch a host, registry or socket; the client must not be used for real afterwards.
    """

    def __init__(self, client: C | type[C], /, **answers: object) -> None:
        self.client: C = cast(Callable[[], C], client)() if isinstance(client, type) else client
        """The stand-in: the client object, whose senders now answer from this stub."""
        self.calls: list[tuple[str, Any]] = []
        """``(method name, parameters)`` of every call, in the order they were made."""
        self._answers: dict[str, object] = {}
        self._inboxes: dict[str, Inbox] = {}
        self._methods = _senders(type(self.client))
        for attr, method in self._methods.items():
            self._inboxes[attr] = Inbox()
            setattr(self.client, attr, self._sender(attr, method))
        for attr, answer in answers.items():
            self.answer(attr, answer)

    def answer(self, method: str, answer: object) -> None:
        """Set (or replace) what ``method`` answers from now on."""
        if method not in self._methods:
            known = ", ".join(sorted(self._methods)) or "none"
            raise TypeError(f"{type(self.client).__name__} has no request method {method!r} (it has: {known})")
        self._answers[method] = answer

    def inbox(self, method: str) -> Inbox:
        """The calls of ``method`` once answered (``kwargs``: the parameters; ``result`` or
        ``error``): ``await stub.inbox("create").wait_for(1)`` waits for a call made in the
        background."""
        if method not in self._inboxes:
            raise TypeError(f"{type(self.client).__name__} has no request method {method!r}")
        return self._inboxes[method]

    def _sender(self, attr: str, method: Callable[..., Any]) -> Callable[..., asyncio.Future[Any]]:
        def sender(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            params = method(self.client, *args, **kwargs)  # what the real client would send
            if isinstance(params, dict):
                params = {k: v for k, v in params.items() if k != "self"}
            self.calls.append((attr, params))
            return asyncio.ensure_future(self._reply(attr, params))

        sender.__name__ = sender.__qualname__ = attr
        sender.__doc__ = method.__doc__
        return sender

    async def _reply(self, attr: str, params: Any) -> Any:
        kwargs = params if isinstance(params, dict) else {}
        try:
            result = await self._answer(attr, params)
        except Exception as exc:
            self._inboxes[attr].add(Call(kwargs=kwargs, error=exc))
            raise
        self._inboxes[attr].add(Call(kwargs=kwargs, result=result))
        return result

    async def _answer(self, attr: str, params: Any) -> Any:
        if attr not in self._answers:
            raise LookupError(
                f"{type(self.client).__name__}.{attr}() has no canned answer: "
                f"ClientStub(..., {attr}=...) or stub.answer({attr!r}, ...)"
            )
        answer = self._answers[attr]
        if isinstance(answer, BaseException) or (isinstance(answer, type) and issubclass(answer, BaseException)):
            raise answer
        if callable(answer):
            result = answer(**params) if isinstance(params, dict) else answer(params)
            return await result if inspect.isawaitable(result) else result
        return copy.deepcopy(answer)

    def __repr__(self) -> str:
        return f"<ClientStub of {self.client!r}: {len(self.calls)} call(s)>"


def _senders(cls: type) -> dict[str, Callable[..., Any]]:
    """The methods of ``cls`` that send requests (``@request``, HTTP verbs), as the user wrote
    them (before the class replaced them by senders)."""
    found: dict[str, Callable[..., Any]] = {}
    for attr in dir(cls):
        value = inspect.getattr_static(cls, attr, None)
        if callable(value) and getattr(value, SENDER_ATTRIBUTE, False):
            found[attr] = getattr(value, "__wrapped__", value)
    return found
