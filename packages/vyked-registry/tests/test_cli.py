"""``python -m vyked.registry`` and the ``vyked-registry`` script as real processes."""

from __future__ import annotations

import asyncio
import shutil
import signal

import pytest

from vyked.core.exceptions import ConfigurationError
from vyked.core.testing import ProcessRunner, RawClient, free_port
from vyked.registry.cli import build_parser, build_status_parser


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_module_serves_and_stops_cleanly_on_signal(signum: int) -> None:
    port = free_port()
    proc = ProcessRunner("-m", "vyked.registry", "--port", str(port), "--log-level", "debug").start()
    try:
        # the registry's own line, not a connection that anyone listening on the port would accept
        await asyncio.to_thread(proc.wait_for_output, f"listening on 127.0.0.1:{port}, ")
        client = await RawClient.connect(port)
        client.send({"type": "watch", "services": ["S"]})
        assert (await client.receive())["type"] == "instances"
        await client.close()
        proc.send_signal(signum)
        assert proc.process is not None
        assert await asyncio.to_thread(proc.process.wait, 10) == 0
        assert f"listening on 127.0.0.1:{port}, " in proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def test_console_script_is_installed() -> None:
    assert shutil.which("vyked-registry") is not None


def test_flags_and_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.log_level) == ("127.0.0.1", 4500, "INFO")
    args = build_parser().parse_args(["--host", "0.0.0.0", "--port", "1", "--log-level", "debug"])
    assert (args.host, args.port, args.log_level) == ("0.0.0.0", 1, "DEBUG")


def test_options_default_to_their_vyked_variables() -> None:
    env = {
        "VYKED_REGISTRY_HOST": "0.0.0.0",
        "VYKED_REGISTRY_PORT": "4600",
        "VYKED_DASHBOARD_PORT": "8080",
        "VYKED_DASHBOARD_HOST": "::1",
        "VYKED_HEARTBEAT_TIMEOUT": "3.5",
        "VYKED_REQUIRE_IDENTITY": "yes",
        "VYKED_LOG_LEVEL": "debug",
        "VYKED_MAX_CONNECTIONS": "",  # empty: unset
    }
    args = build_parser(env).parse_args([])
    assert (args.host, args.port, args.dashboard_port, args.dashboard_host) == ("0.0.0.0", 4600, 8080, "::1")
    assert (args.heartbeat_timeout, args.require_identity, args.log_level) == (3.5, True, "DEBUG")
    assert args.max_connections == 10_000
    args = build_parser(env).parse_args(["--port", "1", "--dashboard-port", "2", "--no-require-identity"])
    assert (args.port, args.dashboard_port, args.require_identity) == (1, 2, False)
    assert build_parser({}).parse_args([]).dashboard_port is None


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("VYKED_DASHBOARD_PORT", "70000", "expected a port number, 0 to 65535"),
        ("VYKED_HEARTBEAT_INTERVAL", "-1", "expected a number of seconds, more than 0"),
        ("VYKED_REQUIRE_IDENTITY", "maybe", "expected 1, true, yes, on or 0, false, no, off"),
        ("VYKED_LOG_LEVEL", "loud", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ],
)
def test_a_malformed_variable_is_a_configuration_error_naming_it(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as failure:
        build_parser({variable: value})
    assert str(failure.value) == f"{variable}={value!r}: {problem}"


def test_the_status_command_reads_vyked_registry() -> None:
    assert build_status_parser({"VYKED_REGISTRY": "10.0.0.1:4501"}).parse_args([]).registry == "10.0.0.1:4501"
