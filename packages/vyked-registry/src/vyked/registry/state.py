"""The registry's bookkeeping, free of I/O: who is registered, who watches whom.

Methods return the packets to send and to whom, as ``(watcher, packet)`` pairs; the server
(:mod:`vyked.registry.server`) delivers them. A *watcher* or *owner* is any hashable handle
for a connection.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from vyked.core.protocol.packets import (
    Dependency,
    InstanceAdded,
    InstanceInfo,
    InstanceRemoved,
    Instances,
    Packet,
)

Outbox = list[tuple[Hashable, Packet]]


@dataclass(slots=True)
class Registration:
    """One registered instance and what the registry knows of it."""

    instance: InstanceInfo
    dependencies: list[Dependency]
    owner: Hashable
    registered_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)


class RegistryState:
    """Instances by service, watchers by service, and the dependency graph between them."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, Registration]] = {}
        self._by_node: dict[str, Registration] = {}
        self._by_owner: dict[Hashable, set[str]] = {}
        self._watchers: dict[str, set[Hashable]] = {}
        self._watching: dict[Hashable, set[str]] = {}

    # -- changes ------------------------------------------------------------------------------

    def register(self, instance: InstanceInfo, dependencies: list[Dependency], owner: Hashable) -> Outbox:
        """Record an instance (replacing an earlier registration of the same node id)."""
        outbox: Outbox = []
        if instance.node_id in self._by_node:
            outbox += self.unregister(instance.node_id)
        reg = Registration(instance, dependencies, owner)
        self._by_service.setdefault(instance.service, {})[instance.node_id] = reg
        self._by_node[instance.node_id] = reg
        self._by_owner.setdefault(owner, set()).add(instance.node_id)
        added = InstanceAdded(instance=instance)
        outbox += [(w, added) for w in self._watchers.get(instance.service, ())]
        return outbox

    def unregister(self, node_id: str) -> Outbox:
        reg = self._by_node.pop(node_id, None)
        if reg is None:
            return []
        service = reg.instance.service
        instances = self._by_service.get(service, {})
        instances.pop(node_id, None)
        if not instances:
            self._by_service.pop(service, None)
        owned = self._by_owner.get(reg.owner)
        if owned is not None:
            owned.discard(node_id)
            if not owned:
                del self._by_owner[reg.owner]
        removed = InstanceRemoved(service=service, node_id=node_id)
        return [(w, removed) for w in self._watchers.get(service, ())]

    def watch(self, watcher: Hashable, services: list[str]) -> Outbox:
        """Subscribe ``watcher`` to ``services``; answers with a snapshot of each."""
        outbox: Outbox = []
        for service in services:
            self._watchers.setdefault(service, set()).add(watcher)
            self._watching.setdefault(watcher, set()).add(service)
            outbox.append((watcher, Instances(service=service, instances=self.instances_of(service))))
        return outbox

    def drop_owner(self, owner: Hashable) -> Outbox:
        """Forget a connection: its instances are gone and it watches nothing more."""
        for service in self._watching.pop(owner, ()):
            watchers = self._watchers.get(service)
            if watchers is not None:
                watchers.discard(owner)
                if not watchers:
                    del self._watchers[service]
        outbox: Outbox = []
        for node_id in list(self._by_owner.get(owner, ())):
            outbox += self.unregister(node_id)
        return outbox

    def touch(self, owner: Hashable, now: float | None = None) -> None:
        """Note that ``owner``'s connection is alive."""
        now = time.time() if now is None else now
        for node_id in self._by_owner.get(owner, ()):
            self._by_node[node_id].last_seen = now

    # -- queries ------------------------------------------------------------------------------

    def instances_of(self, service: str) -> list[InstanceInfo]:
        return [reg.instance for reg in self._by_service.get(service, {}).values()]

    def registrations(self) -> list[Registration]:
        return list(self._by_node.values())

    def dependents_of(self, service: str) -> list[Registration]:
        """Registered instances that declared ``service`` as a dependency."""
        return [reg for reg in self._by_node.values() if any(d.service == service for d in reg.dependencies)]
