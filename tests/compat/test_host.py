"""vyked 2.x ``Host`` habits: stand-alone (ronin) services, the process title, the default
registry, and the names 2.x code imports."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from compat_support import script, served_ports, wait_for_line

import vyked
from vyked.core.testing import ProcessRunner

DEFAULT_REGISTRY_SERVICE = """
from vyked import Host, TCPService

class IdentityService(TCPService):
    def __init__(self):
        super(IdentityService, self).__init__("IdentityService", 1, "127.0.0.1", 0)

Host.configure("Identity")
Host.attach_service(IdentityService())
Host.run()
"""


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read().decode()


def test_ronin_host_serves_without_a_registry_and_its_clients_fail_fast(
    start_process: Callable[..., ProcessRunner],
) -> None:
    proc = start_process(script("ronin_service.py"))
    port = served_ports(proc, 1)["http"]
    assert fetch(f"http://127.0.0.1:{port}/users/bob") == (200, "Hello bob")

    started = time.monotonic()
    _, body = fetch(f"http://127.0.0.1:{port}/ask")
    assert time.monotonic() - started < 5.0
    error = json.loads(body)
    assert error["type"] == "RoninMode"
    assert "ronin mode" in error["message"]
    assert "'UserService'" in error["message"]
    assert "ronin mode" in proc.output()


def test_process_title_names_the_host(start_process: Callable[..., ProcessRunner]) -> None:
    proc = start_process(script("ronin_service.py"))
    served_ports(proc, 1)
    assert proc.process is not None
    title = Path(f"/proc/{proc.process.pid}/cmdline").read_bytes().decode(errors="replace")
    assert title.startswith("vyked_Ronin_"), title


def test_configure_with_only_a_name_uses_the_default_registry(start_process: Callable[..., ProcessRunner]) -> None:
    proc = start_process("-c", DEFAULT_REGISTRY_SERVICE, env={"VYKED_REGISTRY": ""})
    wait_for_line(proc, r"no registry configured \(VYKED_REGISTRY, Host\.registry_host\): using 127\.0\.0\.1:4500")


def test_names_2x_code_imports() -> None:
    from vyked import RemoteError, RequestException, VykedError, VykedServiceError, VykedServiceException

    assert issubclass(RequestException, RemoteError)
    assert issubclass(RequestException, VykedError)
    assert issubclass(VykedServiceException, Exception)
    assert issubclass(VykedServiceError, Exception)
    assert vyked.__version__ == vyked.core.__version__
    assert callable(vyked.log.setup_logging)
    vyked.log.setup_logging("UserService_4502")  # 2.x passed an identifier; harmless here
