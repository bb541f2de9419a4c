"""Translating foreign exceptions at the boundary, and the shape of the exception tree."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vyked.core import exceptions
from vyked.core.exceptions import (
    ConnectionLost,
    DefinitionError,
    FrameTooLarge,
    HostNotRunning,
    InvalidParams,
    MissingExtra,
    ProtocolError,
    ProtocolVersionMismatch,
    PublishError,
    RegistryUnavailable,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    UnknownEndpoint,
    VykedError,
    error_from_code,
    map_exceptions,
)

MAPPING = {TimeoutError: RegistryUnavailable, OSError: ConnectionLost}


def raised_by(mapping: dict[type[BaseException], type[VykedError]], error: BaseException) -> BaseException:
    try:
        with map_exceptions(mapping, "connecting to 10.0.0.1:4500"):
            raise error
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError("timed out"), RegistryUnavailable),  # TimeoutError is an OSError: order decides
        (ConnectionRefusedError(111, "Connection refused"), ConnectionLost),
        (OSError("no route to host"), ConnectionLost),
        (socket.gaierror(-2, "Name or service not known"), ConnectionLost),
    ],
)
def test_mapped_errors_become_vyked_errors(error: BaseException, expected: type[VykedError]) -> None:
    result = raised_by(MAPPING, error)
    assert type(result) is expected
    assert str(result) == f"connecting to 10.0.0.1:4500: {error}"
    assert result.__cause__ is error


def test_the_first_matching_entry_wins() -> None:
    reversed_mapping = {OSError: ConnectionLost, TimeoutError: RegistryUnavailable}
    assert type(raised_by(reversed_mapping, TimeoutError("late"))) is ConnectionLost
    assert type(raised_by(MAPPING, TimeoutError("late"))) is RegistryUnavailable


def test_a_message_less_original_is_named_by_its_type() -> None:
    original = TimeoutError()
    result = raised_by(MAPPING, original)
    assert str(result) == "connecting to 10.0.0.1:4500: TimeoutError"
    assert result.__cause__ is original


@pytest.mark.parametrize(
    "error",
    [
        ConnectionLost("already ours"),  # a ConnectionError, hence an OSError: still not re-mapped
        RequestTimeout("already ours"),  # a TimeoutError
        ServiceUnavailable("already ours"),
        ProtocolError("already ours"),
    ],
)
def test_vyked_errors_pass_through_unchanged(error: VykedError) -> None:
    assert raised_by(MAPPING, error) is error
    assert error.__cause__ is None


@pytest.mark.parametrize("error", [ValueError("v"), KeyError("k"), RuntimeError("r")])
def test_unmapped_exceptions_pass_through_unchanged(error: Exception) -> None:
    assert raised_by(MAPPING, error) is error


def test_cancellation_is_never_translated() -> None:
    cancelled = asyncio.CancelledError()
    assert raised_by({BaseException: ConnectionLost}, cancelled) is cancelled
    interrupt = KeyboardInterrupt()
    assert raised_by({BaseException: ConnectionLost}, interrupt) is interrupt


def test_nothing_raised_means_nothing_happens() -> None:
    with map_exceptions(MAPPING, "ctx"):
        value = 1 + 1
    assert value == 2


async def test_around_real_io() -> None:
    # a real refused connection and a real asyncio timeout, translated
    from vyked.core.testing import free_port

    async def dial() -> None:
        with map_exceptions(MAPPING, "dialling"):
            await asyncio.open_connection("127.0.0.1", free_port())

    async def wait() -> None:
        with map_exceptions(MAPPING, "waiting"):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)

    with pytest.raises(ConnectionLost, match=r"^dialling: .*") as info:
        await dial()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    with pytest.raises(RegistryUnavailable, match="^waiting: TimeoutError$") as timeout_info:
        await wait()
    assert isinstance(timeout_info.value.__cause__, TimeoutError)


# -- the tree -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (RegistryUnavailable, ConnectionError),
        (ServiceUnavailable, ConnectionError),
        (ConnectionLost, ConnectionError),
        (HostNotRunning, RuntimeError),
        (DefinitionError, TypeError),
        (MissingExtra, ImportError),
        (RequestTimeout, TimeoutError),
        (UnknownEndpoint, LookupError),
        (InvalidParams, TypeError),
        (PublishError, TypeError),
        (FrameTooLarge, ProtocolError),
        (ProtocolVersionMismatch, ProtocolError),
    ],
)
def test_builtin_mixins_match_the_documented_tree(cls: type[VykedError], builtin: type[BaseException]) -> None:
    assert issubclass(cls, VykedError)
    assert issubclass(cls, builtin)


def test_every_exception_of_the_module_is_a_vyked_error_with_a_unique_code() -> None:
    classes = [
        value
        for value in vars(exceptions).values()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == exceptions.__name__
    ]
    assert len(classes) >= 15
    assert all(issubclass(cls, VykedError) for cls in classes)
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes


@pytest.mark.parametrize(
    "cls",
    [ProtocolError, FrameTooLarge, ProtocolVersionMismatch, ServiceUnavailable, ConnectionLost, RequestTimeout,
     UnknownEndpoint, InvalidParams],
)  # fmt: skip
def test_error_from_code_rebuilds_wire_errors(cls: type[VykedError]) -> None:
    rebuilt = error_from_code(cls.code, "the message")
    assert type(rebuilt) is cls
    assert str(rebuilt) == "the message"


def test_error_from_code_rebuilds_remote_errors() -> None:
    rebuilt = error_from_code("remote_error", "('boom', 42)", "ValueError", ["boom", 42])
    assert isinstance(rebuilt, RemoteError)
    assert (rebuilt.remote_type, rebuilt.message, rebuilt.remote_args) == ("ValueError", "('boom', 42)", ["boom", 42])
    unknown = error_from_code("from_the_future", "msg")
    assert isinstance(unknown, RemoteError)
    assert unknown.remote_type == "from_the_future"
