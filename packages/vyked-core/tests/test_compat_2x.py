"""vyked 2.x habits that vyked-core serves: which handler exceptions are answered, the error
codes of 2.x's exceptions, service names whatever their case, and ronin hosts."""

from __future__ import annotations

import asyncio

import pytest

from vyked.core.exceptions import RemoteError, RequestException, RoninMode, ServiceUnavailable, error_from_code
from vyked.core.handler_styles import is_handler_failure
from vyked.core.instances import InstanceDirectory
from vyked.core.names import same_service, service_key
from vyked.core.protocol.packets import InstanceInfo
from vyked.core.service_host import ServiceHost
from vyked.core.settings import HostSettings


class UserException(BaseException):
    pass


@pytest.mark.parametrize(
    ("exc", "answered"),
    [
        (ValueError("x"), True),
        (UserException("x"), True),
        (KeyboardInterrupt(), False),
        (SystemExit(1), False),
        (asyncio.CancelledError(), False),
        (GeneratorExit(), False),
    ],
)
def test_which_handler_exceptions_are_answered(exc: BaseException, answered: bool) -> None:
    assert is_handler_failure(exc) is answered


def test_request_exception_comes_back_from_its_code() -> None:
    error = error_from_code("request_exception", "no user ann", "users.UserNotFound")
    assert type(error) is RequestException
    assert isinstance(error, RemoteError)
    assert (error.error, error.remote_type) == ("no user ann", "users.UserNotFound")


def test_ronin_mode_is_a_service_unavailable_that_comes_back_from_its_code() -> None:
    error = error_from_code("ronin_mode", "no registry")
    assert type(error) is RoninMode
    assert isinstance(error, ServiceUnavailable)


def test_service_names_compare_without_case() -> None:
    assert service_key("UserService") == "userservice"
    assert same_service("UserService", "userservice")
    assert not same_service("UserService", "AccountService")


def test_the_directory_finds_instances_whatever_the_case() -> None:
    directory = InstanceDirectory()
    directory.replace("userservice", [InstanceInfo("UserService", "1", "127.0.0.1", 4000, "a")])
    directory.add(InstanceInfo("USERSERVICE", "1", "127.0.0.1", 4001, "b"))
    assert "userservice" in directory.known
    assert {i.node_id for i in directory.candidates("UserService", "1")} == {"a", "b"}
    directory.remove("userService", "a")
    assert [i.node_id for i in directory.candidates("UserService", "1")] == ["b"]
    assert [i.node_id for i in directory.instances("userservice")] == ["b"]


@pytest.mark.parametrize(("raw", "ronin"), [("", False), ("1", True), ("TRUE", True), ("off", False)])
def test_ronin_from_the_environment(raw: str, ronin: bool) -> None:
    assert HostSettings.load(environ={"VYKED_RONIN": raw}).ronin is ronin
    assert HostSettings.load(ronin=not ronin, environ={"VYKED_RONIN": raw}).ronin is not ronin


def test_a_malformed_ronin_variable_names_itself() -> None:
    with pytest.raises(ValueError, match="VYKED_RONIN='maybe'"):
        HostSettings.load(environ={"VYKED_RONIN": "maybe"})


async def test_a_ronin_host_starts_without_a_registry_and_refuses_to_look_services_up() -> None:
    host = ServiceHost("127.0.0.1:1", ronin=True)  # nobody listens there
    async with host:
        ready, report = host.readiness()
        assert ready, report
        with pytest.raises(RoninMode, match="ronin mode") as raised:
            await host.watch("UserService")
        assert "'UserService'" in str(raised.value)
