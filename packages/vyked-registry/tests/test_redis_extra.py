"""Without the ``redis`` extra: ``--redis`` says what to install, everything else still works.

Each test runs a real Python subprocess in which ``redis`` cannot be imported: a
``sitecustomize`` on ``PYTHONPATH`` puts a meta path finder in front that refuses ``redis`` and
its submodules, as if the distribution were not installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vyked.core.testing import ProcessRunner, free_port

HINT = "pip install 'vyked-registry[redis]'"
UNUSED_REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to: the import fails first

BLOCK_REDIS = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder


    class _NoRedis(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "redis" or name.startswith("redis."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _NoRedis())
    """
)


@pytest.fixture
def no_redis_env(tmp_path: Path) -> dict[str, str]:
    """Environment variables for a subprocess in which ``import redis`` fails."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_REDIS)
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    probe = subprocess.run([sys.executable, "-c", "import redis"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0, "the sitecustomize did not hide redis"
    assert "No module named 'redis'" in probe.stderr
    return env


def test_cli_with_redis_but_without_the_extra_exits_2_with_the_hint(no_redis_env: dict[str, str]) -> None:
    args = ["--redis", UNUSED_REDIS_URL, "--port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "-m", "vyked.registry", *args], env=no_redis_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vyked-registry: --redis: ")
    assert HINT in lines[0]


def test_registry_with_redis_url_raises_missing_extra_naming_the_extra(no_redis_env: dict[str, str]) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio
        from vyked.core.exceptions import MissingExtra, VykedError
        from vyked.registry import Registry

        async def main():
            async with Registry("127.0.0.1", 0, redis_url={UNUSED_REDIS_URL!r}):
                pass

        try:
            asyncio.run(main())
        except MissingExtra as exc:
            assert isinstance(exc, ImportError) and isinstance(exc, VykedError)
            assert isinstance(exc.__cause__, ModuleNotFoundError)
            print("name:", exc.name)
            print("message:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], env=no_redis_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "name: redis" in result.stdout
    assert HINT in result.stdout


async def test_registry_without_redis_serves_when_redis_is_not_installed(no_redis_env: dict[str, str]) -> None:
    proc = ProcessRunner("-m", "vyked.registry", "--port", "0", env=no_redis_env).start()
    try:
        # the port it bound, from the line that says it listens (complete up to "state")
        await asyncio.to_thread(proc.wait_for_output, "state in memory")
        listening = re.search(r"listening on 127\.0\.0\.1:(\d+), state in memory", proc.output())
        assert listening is not None, proc.output()
        port = int(listening.group(1))
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "vyked.registry", "status", "--registry", f"127.0.0.1:{port}", "--json"],
            env=no_redis_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert '"instances": []' in status.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.process is not None
        assert await asyncio.to_thread(proc.process.wait, 10) == 0
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()
