"""The registry's bookkeeping, free of I/O: who is registered, who watches whom, who waits.

Methods return the packets to send and to whom, as ``(watcher, packet)`` pairs; the server
(:mod:`vyked.registry.server`) delivers them. A *watcher* or *owner* is any hashable handle
for a local connection. An instance registered through another registry (Redis-backed mode)
has owner ``None``: this registry mirrors it and tells its own watchers about it, but does
not judge its health.

An instance is *pending* while one of its dependencies has no live instance of a matching
version, *active* otherwise. An instance its host withdraws (``deregister``: the host is
stopping) is *draining* until its host's connection closes: watchers are told it is gone at
once and it counts for no dependent, but status still lists it. Instances that go are kept
for a while as *down*, so that status can show downtime, and so that a node that comes back
keeps its history.

``on_change`` (if given) is called, with no arguments, after anything status shows has
changed: an instance added, withdrawn or gone, or a state recomputed. It is called in the
middle of an operation and must not touch the state; it may schedule work that reads it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from vyked.core.names import service_key
from vyked.core.protocol.packets import (
    Dependency,
    InstanceAdded,
    InstanceInfo,
    InstanceRemoved,
    Instances,
    InstanceStatus,
    Packet,
    ServiceState,
)
from vyked.core.versions import best_version

logger = logging.getLogger(__name__)

Outbox = list[tuple[Hashable, Packet]]

ACTIVE, PENDING, DRAINING, DOWN = "active", "pending", "draining", "down"
GONE_RETENTION = 3600.0
"""Seconds a departed instance is remembered (for status and for its downtime)."""
GONE_LIMIT = 10_000


@dataclass(slots=True)
class Registration:
    """One instance and what the registry knows of it. Times are Unix seconds."""

    instance: InstanceInfo
    dependencies: list[Dependency]
    owner: Hashable | None
    registry: str
    registered_at: float
    up_since: float
    down_since: float | None = None
    total_downtime: float = 0.0
    state: str = ACTIVE
    waiting_for: list[str] = field(default_factory=list)


class RegistryState:
    """Instances by service, watchers by service, and the dependency graph between them."""

    def __init__(
        self,
        registry_id: str = "registry",
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.registry_id = registry_id
        self._clock = clock
        self._on_change = on_change
        self._live: dict[str, Registration] = {}
        self._draining: dict[str, Registration] = {}
        self._by_service: dict[str, dict[str, Registration]] = {}
        self._by_owner: dict[Hashable, set[str]] = {}
        self._gone: dict[str, Registration] = {}
        self._watchers: dict[str, set[Hashable]] = {}
        self.counts: Counter[str] = Counter()
        """``registered`` and ``removed`` instances since start (metrics)."""
        self._watchers_peak = 0
        self._watching: dict[Hashable, set[str]] = {}

    # -- changes ------------------------------------------------------------------------------

    def register(
        self,
        instance: InstanceInfo,
        dependencies: list[Dependency],
        owner: Hashable | None,
        registry: str | None = None,
        registered_at: float | None = None,
    ) -> Outbox:
        """Record an instance; a known node id keeps its history and, if its description is
        unchanged (a host reconnecting), moves to the new owner without telling watchers."""
        now = self._clock()
        registry = registry or self.registry_id
        current = self._live.get(instance.node_id)
        if current is not None and current.instance == instance:
            self._set_owner(current, owner)
            current.registry = registry
            current.dependencies = dependencies
            self._changed()
            return self._update_states([current])
        outbox: Outbox = []
        if current is not None:
            outbox += self.unregister(instance.node_id)
        past = self._gone.pop(instance.node_id, None) or self._stop_draining(instance.node_id)
        reg = Registration(
            instance,
            dependencies,
            owner,
            registry,
            registered_at=past.registered_at if past else (registered_at or now),
            up_since=now,
            total_downtime=(past.total_downtime + now - (past.down_since or now)) if past else 0.0,
        )
        self._live[instance.node_id] = reg
        self.counts["registered"] += 1
        self._by_service.setdefault(service_key(instance.service), {})[instance.node_id] = reg
        self._set_owner(reg, owner)
        added = InstanceAdded(instance=instance)
        outbox += [(w, added) for w in self._watchers.get(service_key(instance.service), ())]
        reg.state = ""  # forces its first state to be sent
        outbox += self._update_states([reg, *self._dependents_of(instance.service)])
        self._changed()
        return outbox

    def unregister(self, node_id: str, registry: str | None = None) -> Outbox:
        """Forget a live instance. With ``registry``, only if that registry still holds it
        (a late removal from a registry the host has left must not undo its move)."""
        reg = self._withdraw(node_id, registry)
        if reg is None:
            return []
        self._set_owner(reg, None)
        self._go_down(reg)
        return self._removal(reg)

    def drain(self, node_id: str) -> Outbox:
        """Withdraw a live instance that its host is stopping: watchers are told it is gone and
        dependents stop counting on it, but it stays listed as *draining*, with its owner, until
        :meth:`drop_owner` (its host's connection closing) makes it *down*."""
        reg = self._withdraw(node_id)
        if reg is None:
            return []
        reg.state, reg.waiting_for = DRAINING, []
        self._draining[node_id] = reg
        if reg.owner is None:  # nobody here will close its connection
            self._stop_draining(node_id)
            self._go_down(reg)
        return self._removal(reg)

    def watch(self, watcher: Hashable, services: list[str]) -> Outbox:
        """Subscribe ``watcher`` to ``services``; answers with a snapshot of each, under the
        name as asked (names match whatever their case: :mod:`vyked.core.names`)."""
        outbox: Outbox = []
        watching = self._watching.get(watcher)
        if watching is None:
            watching = self._watching[watcher] = set()
        for service in services:
            key = service_key(service)
            # not setdefault(key, set()): that makes (and drops) a set for every name
            watchers = self._watchers.get(key)
            if watchers is None:
                watchers = self._watchers[key] = set()
            watchers.add(watcher)
            watching.add(key)
            outbox.append((watcher, Instances(service=service, instances=self.instances_of(service))))
        self._watchers_peak = max(self._watchers_peak, len(self._watchers))
        return outbox

    def drop_owner(self, owner: Hashable) -> Outbox:
        """Forget a connection: its instances are gone and it watches nothing more."""
        for service in self._watching.pop(owner, ()):
            watchers = self._watchers.get(service)
            if watchers is not None:
                watchers.discard(owner)
                if not watchers:
                    del self._watchers[service]
        if len(self._watchers) * 4 < self._watchers_peak:
            # a dict never shrinks its table by itself: after many watchers left, copy it
            self._watchers = dict(self._watchers)
            self._watchers_peak = len(self._watchers)
        outbox: Outbox = []
        for node_id in list(self._by_owner.get(owner, ())):
            if node_id in self._draining:
                reg = self._stop_draining(node_id)
                assert reg is not None
                self._go_down(reg)
                logger.info("%s finished draining: down", _name(reg))
            else:
                outbox += self.unregister(node_id)
        return outbox

    # -- queries ------------------------------------------------------------------------------

    def instances_of(self, service: str) -> list[InstanceInfo]:
        return [reg.instance for reg in self._by_service.get(service_key(service), {}).values()]

    def registrations(self) -> list[Registration]:
        return list(self._live.values())

    def get(self, node_id: str) -> Registration | None:
        return self._live.get(node_id)

    def watch_counts(self) -> tuple[int, int]:
        """``(watchers, watched services)``: connections watching something, and services
        somebody watches."""
        return len(self._watching), len(self._watchers)

    def draining(self, node_id: str) -> Registration | None:
        return self._draining.get(node_id)

    def owned_by(self, owner: Hashable) -> list[Registration]:
        """The live instances ``owner`` registered (not those it is draining)."""
        return [self._live[n] for n in self._by_owner.get(owner, ()) if n in self._live]

    def known(self) -> list[Registration]:
        """Every instance status lists: live, draining and remembered (down), by service,
        version and node id."""
        regs = [*self._live.values(), *self._draining.values(), *self._gone.values()]
        return sorted(regs, key=lambda r: (r.instance.service, r.instance.version, r.instance.node_id))

    def dependents_of(self, service: str) -> list[Registration]:
        """Live instances that declared ``service`` as a dependency."""
        return self._dependents_of(service)

    def status(self, last_seen: Callable[[Hashable], float | None]) -> list[InstanceStatus]:
        """Every live, draining and remembered instance; ``last_seen(owner)`` gives seconds
        since its host was last heard from."""
        now = self._clock()
        return [self.status_of(reg, last_seen, now) for reg in self.known()]

    def status_of(
        self, reg: Registration, last_seen: Callable[[Hashable], float | None], now: float | None = None
    ) -> InstanceStatus:
        now = self._clock() if now is None else now
        return InstanceStatus(
            instance=reg.instance,
            state=reg.state,
            waiting_for=list(reg.waiting_for),
            registered_at=reg.registered_at,
            uptime=0.0 if reg.down_since is not None else now - reg.up_since,
            downtime=reg.total_downtime + (now - reg.down_since if reg.down_since is not None else 0.0),
            last_heartbeat=last_seen(reg.owner) if reg.owner is not None else None,
            registry=reg.registry,
        )

    # -- internals ----------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _withdraw(self, node_id: str, registry: str | None = None) -> Registration | None:
        """Take a live instance out of routing (and out of its dependents' reckoning)."""
        reg = self._live.get(node_id)
        if reg is None or (registry is not None and reg.registry != registry):
            return None
        del self._live[node_id]
        self.counts["removed"] += 1
        service = service_key(reg.instance.service)
        instances = self._by_service[service]
        del instances[node_id]
        if not instances:
            del self._by_service[service]
        return reg

    def _removal(self, reg: Registration) -> Outbox:
        """Tell watchers a withdrawn instance is gone, and its dependents' owners their state."""
        service = reg.instance.service
        removed = InstanceRemoved(service=service, node_id=reg.instance.node_id)
        outbox: Outbox = [(w, removed) for w in self._watchers.get(service_key(service), ())]
        outbox += self._update_states(self._dependents_of(service))
        self._changed()
        return outbox

    def _stop_draining(self, node_id: str) -> Registration | None:
        reg = self._draining.pop(node_id, None)
        if reg is not None:
            self._set_owner(reg, None)
        return reg

    def _go_down(self, reg: Registration) -> None:
        reg.down_since = self._clock()
        reg.state = DOWN
        reg.waiting_for = []
        self._remember_gone(reg)
        self._changed()

    def _set_owner(self, reg: Registration, owner: Hashable | None) -> None:
        node_id = reg.instance.node_id
        if reg.owner is not None:
            owned = self._by_owner.get(reg.owner)
            if owned is not None:
                owned.discard(node_id)
                if not owned:
                    del self._by_owner[reg.owner]
        reg.owner = owner
        if owner is not None:
            self._by_owner.setdefault(owner, set()).add(node_id)

    def _dependents_of(self, service: str) -> list[Registration]:
        key = service_key(service)
        return [reg for reg in self._live.values() if any(service_key(d.service) == key for d in reg.dependencies)]

    def _missing(self, reg: Registration) -> list[str]:
        missing = []
        for dep in reg.dependencies:
            versions = (r.instance.version for r in self._by_service.get(service_key(dep.service), {}).values())
            if best_version(dep.version, versions) is None:
                missing.append(f"{dep.service} v{dep.version}")
        return missing

    def _update_states(self, regs: list[Registration]) -> Outbox:
        """Recompute pending/active; tell the local owners of those that changed."""
        outbox: Outbox = []
        changed = False
        for reg in regs:
            waiting = self._missing(reg)
            state = PENDING if waiting else ACTIVE
            if state == reg.state and waiting == reg.waiting_for:
                continue
            reg.state, reg.waiting_for = state, waiting
            changed = True
            if waiting:
                logger.info("%s is pending: waiting for %s", _name(reg), ", ".join(waiting))
            else:
                logger.info("%s is active", _name(reg))
            if reg.owner is not None:
                outbox.append((reg.owner, ServiceState(node_id=reg.instance.node_id, state=state, waiting_for=waiting)))
        if changed:
            self._changed()
        return outbox

    def _remember_gone(self, reg: Registration) -> None:
        self._gone[reg.instance.node_id] = reg
        cutoff = self._clock() - GONE_RETENTION
        while self._gone:  # oldest first: dicts keep insertion order
            node_id, oldest = next(iter(self._gone.items()))
            if len(self._gone) <= GONE_LIMIT and (oldest.down_since or 0.0) >= cutoff:
                break
            del self._gone[node_id]


def _name(reg: Registration) -> str:
    return f"{reg.instance.service} v{reg.instance.version} [{reg.instance.node_id[:8]}]"
