"""Registry addresses as users write them, and as vyked uses them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Address = tuple[str, int]
"""``(host, port)``."""

DEFAULT_REGISTRY_PORT = 4500

RegistrySpec = str | Sequence[Address] | Sequence[str] | None
"""What ``ServiceHost(registry=...)`` and ``Host.registry_host`` accept."""


def parse_addresses(spec: RegistrySpec, default_port: int = DEFAULT_REGISTRY_PORT) -> list[Address]:
    """``"a:4500,b:4501"``, ``"a"``, ``[("a", 4500)]`` or ``["a:4500"]`` → ``[("a", 4500), ...]``."""
    if spec is None:
        return []
    items: list[Any] = spec.split(",") if isinstance(spec, str) else list(spec)
    addresses: list[Address] = []
    for item in items:
        if isinstance(item, tuple):
            addresses.append((str(item[0]), int(item[1])))
            continue
        text = str(item).strip()
        if not text:
            continue
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit():
            addresses.append((host.strip("[]"), int(port)))
        else:
            addresses.append((text, default_port))
    return addresses
