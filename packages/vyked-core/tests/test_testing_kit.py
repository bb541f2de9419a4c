"""The public test kit (``vyked.testing``) as far as it needs nothing beyond vyked-core:
waiting for handlers, ``Host.reset()``, real processes and Redis to break."""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from vyked.core.handler_styles import Execution, as_coroutine_function, execution_of
from vyked.core.host import Host
from vyked.testing import Call, Inbox, ProcessRunner, RedisServer, find_redis_server, record

# -- Inbox and record ---------------------------------------------------------------------------


class Handlers:
    """One handler of each style vyked runs."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def coroutine(self, user_name: str) -> str:
        await asyncio.sleep(0)
        return user_name.upper()

    def plain(self, user_name: str) -> int:
        self.seen.append(threading.get_ident())
        return len(user_name)

    def generator(self, user_name: str) -> Any:
        yield from asyncio.sleep(0)  # type: ignore[misc]
        return user_name[::-1]

    async def failing(self, user_name: str) -> None:
        raise ValueError(user_name)


async def test_recorded_calls_keep_their_style_signature_and_answers() -> None:
    handlers = Handlers()
    inboxes = {name: record(handlers, name) for name in ("coroutine", "plain", "generator")}

    assert execution_of(handlers.coroutine) is Execution.LOOP
    assert execution_of(handlers.generator) is Execution.LOOP
    assert execution_of(handlers.plain) is Execution.THREAD
    assert str(inspect.signature(handlers.plain)) == "(user_name: 'str') -> 'int'"
    assert handlers.plain.__name__ == "plain"

    assert await as_coroutine_function(handlers.coroutine)(user_name="ann") == "ANN"
    assert await as_coroutine_function(handlers.generator)(user_name="ann") == "nna"
    assert await asyncio.to_thread(handlers.plain, user_name="ann") == 3

    assert inboxes["coroutine"].calls == [Call((), {"user_name": "ann"}, "ANN")]
    assert inboxes["generator"].kwargs == [{"user_name": "ann"}]
    assert inboxes["plain"].calls[0].result == 3
    assert handlers.seen[0] != threading.get_ident()  # it did run in another thread


async def test_wait_for_wakes_on_a_call_made_in_another_thread() -> None:
    handlers = Handlers()
    inbox = record(handlers, "plain")
    waiting = asyncio.ensure_future(inbox.wait_for(2, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()

    await asyncio.to_thread(handlers.plain, "ann")
    await asyncio.sleep(0.01)
    assert not waiting.done()  # one of two
    await asyncio.to_thread(handlers.plain, "bob")
    calls = await waiting
    assert [c.args for c in calls] == [("ann",), ("bob",)]


async def test_calls_made_before_waiting_count_and_clear_starts_over() -> None:
    inbox = Inbox()
    inbox.add(Call(kwargs={"n": 1}))
    assert (await inbox.wait_for(1, timeout=0.01))[0].kwargs == {"n": 1}
    inbox.clear()
    with pytest.raises(TimeoutError, match=r"waited 0.05 s for 1 call\(s\), 0 arrived"):
        await inbox.wait_for(1, timeout=0.05)


async def test_a_handler_error_is_recorded_and_raised() -> None:
    handlers = Handlers()
    inbox = record(handlers, "failing")
    with pytest.raises(ValueError, match="ann"):
        await handlers.failing("ann")
    [call] = await inbox.wait_for(1)
    assert isinstance(call.error, ValueError) and call.args == ("ann",)
    with pytest.raises(TypeError):
        await handlers.failing(colour="red")  # never reached the handler: not recorded
    assert len(inbox) == 1


def test_record_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not callable"):
        record(Handlers(), "seen")


# -- Host.reset -----------------------------------------------------------------------------------

RESET_CHECK = """
import inspect
from vyked.core.host import Host, ServiceHost

def settings():
    return {
        name: value
        for name, value in vars(Host).items()
        if not name.startswith("__") and not isinstance(value, (classmethod, staticmethod, property))
        and not inspect.isfunction(value)
    }

new = settings()
for name in new:
    if name != "_runtime":
        setattr(Host, name, object())
Host._runtime = ServiceHost()  # a process-wide host, never started
Host.reset()
after = settings()
changed = {name: (new[name], after[name]) for name in new if after[name] is not new[name] and after[name] != new[name]}
print("settings", sorted(new))
assert not changed, changed
print("ok")
"""


def test_reset_puts_every_class_attribute_back_as_new() -> None:
    """Run in a fresh interpreter, where ``Host`` is as new: any attribute added to the class
    and forgotten by ``reset`` fails this test."""
    result = subprocess.run([sys.executable, "-c", RESET_CHECK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'registry_host'" in result.stdout and "'_runtime'" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


def test_reset_drops_a_host_left_from_an_ended_loop() -> None:
    async def leave_a_host() -> None:
        Host.registry_port = 1
        Host.default()

    asyncio.run(leave_a_host())
    assert Host._runtime is not None
    Host.reset()
    assert Host._runtime is None and Host.registry_port == 4500


# -- processes ---------------------------------------------------------------------------------

CHILD = """
import os, sys, time
print("ready", os.getpid(), flush=True)
n = 0
while True:
    n += 1
    print("tick", n, flush=True)
    time.sleep(0.02)
"""


def _state(pid: int) -> str:
    """The process state letter from /proc: R, S (running, sleeping), T (stopped), Z..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_process_runner_pauses_resumes_kills_and_restarts(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    with ProcessRunner(str(script), ready=r"ready (\d+)") as proc:
        assert proc.ready_match is not None and int(proc.ready_match.group(1)) == proc.pid
        assert proc.pid is not None
        proc.wait_for_line(r"tick 2")

        proc.pause()
        assert _state(proc.pid) == "T"
        frozen = proc.output().count("tick")
        threading.Event().wait(0.2)
        assert proc.output().count("tick") == frozen  # a paused process prints nothing
        proc.resume()
        proc.wait_for_line(rf"tick {frozen + 2}\b")

        first = proc.pid
        since = proc.mark()
        proc.restart(kill=True)
        assert proc.process is not None and proc.pid != first
        assert proc.ready_match is not None and int(proc.ready_match.group(1)) == proc.pid
        assert "ready" in proc.output()[:since]  # the log keeps the earlier run

        proc.kill()
        assert not proc.running and proc.process.returncode == -signal.SIGKILL
        with pytest.raises(RuntimeError, match="exited with -9"):
            proc.wait_for_line("never printed", since=proc.mark())


def test_process_runner_stop_ends_a_paused_process(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    proc = ProcessRunner(str(script), ready="ready").start()
    proc.pause()
    assert proc.stop(timeout=5) == -signal.SIGTERM


def _redis_ping(port: int, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


@pytest.fixture
def redis() -> Any:
    try:
        find_redis_server()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with RedisServer() as server:
        yield server


def test_redis_server_pauses_and_restarts_on_its_port(redis: RedisServer) -> None:
    assert _redis_ping(redis.port) == b"+PONG\r\n"
    redis.pause()
    with pytest.raises(TimeoutError):
        _redis_ping(redis.port, timeout=0.2)  # connected by the kernel, answered by nobody
    redis.resume()
    assert _redis_ping(redis.port) == b"+PONG\r\n"

    port, pid = redis.port, redis.process.pid if redis.process else None
    redis.restart()
    assert redis.port == port and redis.process is not None and redis.process.pid != pid
    assert _redis_ping(redis.port) == b"+PONG\r\n"
    assert redis.url == f"redis://127.0.0.1:{port}/0"


def test_the_kit_is_public_and_ships_with_vyked_core() -> None:
    import vyked
    import vyked.testing

    assert {"ClientStub", "Inbox", "record", "serve_http", "started_hosts", "RegistryProcess"} <= set(
        vyked.testing.__all__
    )
    assert all(hasattr(vyked.testing, name) for name in vyked.testing.__all__)
    # the same source tree as vyked/__init__.py, which only vyked-core ships
    assert vyked.__file__ is not None and vyked.testing.__file__ is not None
    assert Path(vyked.testing.__file__).parent.parent == Path(vyked.__file__).parent
    assert (Path(vyked.testing.__file__).parent / "py.typed").exists()
