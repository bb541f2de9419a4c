"""HostSettings: explicit arguments, then VYKED_* variables, then defaults; malformed values
name their variable. ServiceHost takes its defaults from them."""

from __future__ import annotations

import logging

import pytest

from vyked.core.exceptions import ConfigurationError, RegistryUnavailable
from vyked.core.service_host import ServiceHost
from vyked.core.settings import DEFAULT_REGISTRY, HostSettings, parse_pubsub, parse_registry
from vyked.core.testing import free_port


def test_nothing_set_gives_the_defaults() -> None:
    settings = HostSettings.load(environ={})
    assert settings.registry == DEFAULT_REGISTRY == (("127.0.0.1", 4500),)
    assert settings.registry_source == "default"
    assert (settings.pubsub, settings.name) == (None, "")
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (0.5, 2.0)


def test_the_environment_gives_every_setting() -> None:
    env = {
        "VYKED_REGISTRY": " 10.0.0.1:4501, 10.0.0.2 ,[::1]:4502",
        "VYKED_PUBSUB": "redis://10.0.0.9:6379/1",
        "VYKED_NAME": "billing",
        "VYKED_HEARTBEAT_INTERVAL": "0.25",
        "VYKED_HEARTBEAT_TIMEOUT": "3",
    }
    settings = HostSettings.load(environ=env)
    assert settings.registry == (("10.0.0.1", 4501), ("10.0.0.2", 4500), ("::1", 4502))
    assert settings.registry_source == "environment"
    assert settings.describe_registry() == "10.0.0.1:4501,10.0.0.2:4500,[::1]:4502"
    assert settings.pubsub == "redis://10.0.0.9:6379/1"
    assert settings.name == "billing"
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (0.25, 3.0)


def test_explicit_arguments_win_and_empty_variables_count_as_unset() -> None:
    env = {
        "VYKED_REGISTRY": "10.0.0.1:4501",
        "VYKED_PUBSUB": "redis://a/0",
        "VYKED_NAME": "env",
        "VYKED_HEARTBEAT_TIMEOUT": "",
    }
    settings = HostSettings.load(
        registry="10.0.0.3", registry_port=4600, pubsub="redis://b/0", name="arg", heartbeat_interval=1.0, environ=env
    )
    assert settings.registry == (("10.0.0.3", 4600),) and settings.registry_source == "argument"
    assert (settings.pubsub, settings.name, settings.heartbeat_interval) == ("redis://b/0", "arg", 1.0)
    assert settings.heartbeat_timeout == 2.0  # empty: the default
    # registry_port also applies to the entries of VYKED_REGISTRY that give no port
    assert HostSettings.load(registry_port=4700, environ={"VYKED_REGISTRY": "a,b:1"}).registry == (
        ("a", 4700),
        ("b", 1),
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("VYKED_REGISTRY", "host:port", "expected HOST:PORT"),
        ("VYKED_REGISTRY", "a:4500,b:99999", "'b:99999'"),
        ("VYKED_REGISTRY", "a:", "'a:'"),
        ("VYKED_REGISTRY", ":4500", "':4500'"),
        ("VYKED_REGISTRY", ",,", "expected HOST:PORT"),
        ("VYKED_REGISTRY", "[::1]4500", "is not [IPv6 address]:port"),
        ("VYKED_PUBSUB", "localhost:6379", "expected a Redis URL"),
        ("VYKED_HEARTBEAT_INTERVAL", "fast", "expected a number of seconds"),
        ("VYKED_HEARTBEAT_TIMEOUT", "0", "more than 0"),
        ("VYKED_HEARTBEAT_TIMEOUT", "inf", "more than 0"),
    ],
)
def test_a_malformed_variable_is_an_error_naming_it(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HostSettings.load(environ={variable: value})
    assert str(caught.value).startswith(f"{variable}={value!r}: ")
    assert expected in str(caught.value)


def test_the_parsers_name_the_option_they_check() -> None:
    assert parse_registry("a:1", variable="--registry") == (("a", 1),)
    with pytest.raises(ConfigurationError, match=r"^--registry='a:b': "):
        parse_registry("a:b", variable="--registry")
    assert parse_pubsub(" rediss://user:pw@h:6380/0 ", variable="--pubsub") == "rediss://user:pw@h:6380/0"
    with pytest.raises(ConfigurationError, match=r"^--pubsub='h:6379': "):
        parse_pubsub("h:6379", variable="--pubsub")


def test_service_host_takes_its_defaults_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VYKED_REGISTRY", "10.0.0.1:4501,10.0.0.2:4502")
    monkeypatch.setenv("VYKED_PUBSUB", "redis://10.0.0.9:6379/0")
    monkeypatch.setenv("VYKED_NAME", "from-env")
    monkeypatch.setenv("VYKED_HEARTBEAT_INTERVAL", "0.3")
    monkeypatch.setenv("VYKED_HEARTBEAT_TIMEOUT", "1.5")
    host = ServiceHost()
    assert host.registry_addresses == [("10.0.0.1", 4501), ("10.0.0.2", 4502)]
    assert (host.pubsub, host.name, host.heartbeat) == ("redis://10.0.0.9:6379/0", "from-env", (0.3, 1.5))
    explicit = ServiceHost("127.0.0.1:4600", pubsub="redis://h/0", name="explicit", heartbeat_interval=0.1)
    assert explicit.registry_addresses == [("127.0.0.1", 4600)]
    assert (explicit.pubsub, explicit.name, explicit.heartbeat) == ("redis://h/0", "explicit", (0.1, 1.5))
    monkeypatch.setenv("VYKED_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="VYKED_HEARTBEAT_TIMEOUT='soon'"):
        ServiceHost()


async def test_with_no_registry_configured_a_host_tries_the_default_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("VYKED_REGISTRY", raising=False)
    host = ServiceHost()
    assert host.registry_addresses == [("127.0.0.1", 4500)]
    # Start it against the default's shape on a port nobody listens on: it must try that
    # address, say it was the default, and fail as a missing registry does.
    port = free_port()
    host.registry_addresses = [("127.0.0.1", port)]
    with caplog.at_level(logging.INFO, logger="vyked.core.service_host"), pytest.raises(RegistryUnavailable) as caught:
        await host.start()
    assert "no registry configured (VYKED_REGISTRY, Host.registry_host): using 127.0.0.1:4500" in caplog.text
    assert f"127.0.0.1:{port}" in str(caught.value)
