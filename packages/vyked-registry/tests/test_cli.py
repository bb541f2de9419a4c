"""``python -m vyked.registry`` and the ``vyked-registry`` script as real processes."""

from __future__ import annotations

import asyncio
import shutil
import signal

import pytest

from vyked.core.testing import ProcessRunner, RawClient, free_port
from vyked.registry.cli import build_parser


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
