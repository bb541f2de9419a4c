"""What this process knows of the instances of the services it calls, and choosing one.

The registry client fills an :class:`InstanceDirectory` from ``instances``,
``instance_added`` and ``instance_removed`` packets; clients ask it for an instance per
request. Candidate lists are cached per (service, version, kind) and rebuilt on change, so
the per-request cost is a dict look-up and a round-robin step.

Service names match whatever their case, as in vyked 2.x (:mod:`vyked.core.names`): instances
are kept under :func:`~vyked.core.names.service_key`, caches under the name as asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable

from vyked.core.balancing import RoundRobin, choose
from vyked.core.exceptions import ServiceUnavailable
from vyked.core.health import UNREACHABLE_FOR, InstanceHealth
from vyked.core.names import service_key
from vyked.core.protocol.packets import InstanceInfo
from vyked.core.versions import best_version

logger = logging.getLogger(__name__)

Instance = InstanceInfo
"""One live instance of a service: the registry's ``InstanceInfo`` packet struct itself."""


InstanceListener = Callable[[str, Instance], None]
"""Called with ``"added"`` or ``"removed"`` and the instance."""

Load = Callable[[Instance], int]
"""Requests a client has outstanding at an instance (for least-outstanding balancing)."""

_RouteKey = tuple[str, str, str]


class InstanceDirectory:
    """Live instances by service name, with per-route balancing."""

    def __init__(self, health: InstanceHealth | None = None) -> None:
        self.health = health if health is not None else InstanceHealth()
        """Circuit breakers: which instances balancing skips for now."""
        self._instances: dict[str, dict[str, Instance]] = {}
        self._routes: dict[_RouteKey, list[Instance]] = {}
        self._round_robin: dict[_RouteKey, RoundRobin] = {}
        self._listeners: list[InstanceListener] = []
        self._stale: set[tuple[str, str]] = set()
        self.known: set[str] = set()
        """Services whose full instance list has arrived at least once (names as asked)."""
        self._case_noted: set[tuple[str, str]] = set()

    def add_listener(self, listener: InstanceListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: InstanceListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- updates from the registry ------------------------------------------------------------

    def replace(self, service: str, infos: Iterable[InstanceInfo], grace: float | None = None) -> None:
        """Install a full snapshot of ``service``'s instances.

        With ``grace``, instances missing from the snapshot stay for that many seconds and go
        only if no ``add`` brings them back: after a registry restart the snapshot may come
        before the instances have re-registered, and they still answer meanwhile.
        """
        new = {info.node_id: info for info in infos}
        key = service_key(service)
        old = self._instances.get(key, {})
        self.known.add(service)
        missing = [node_id for node_id in old if node_id not in new]
        if grace is not None and missing:
            self._stale.update((key, node_id) for node_id in missing)
            asyncio.get_running_loop().call_later(grace, self._drop_stale, key, missing)
            new.update((node_id, old[node_id]) for node_id in missing)
        self._instances[key] = new
        self._invalidate(key)
        for info in new.values():
            if info.service != service:
                self._note_case(service, info.service)
        # An instance whose node id stays but whose address or version changed is another one.
        for node_id, instance in old.items():
            if node_id not in new:
                self._notify("removed", instance)
            elif new[node_id] != instance:
                self._superseded(instance)
        for node_id, instance in new.items():
            if old.get(node_id) != instance:
                self._notify("added", instance)

    def _drop_stale(self, service: str, node_ids: list[str]) -> None:
        for node_id in node_ids:
            if (service, node_id) in self._stale:
                self._stale.discard((service, node_id))
                self.remove(service, node_id)

    def add(self, info: InstanceInfo) -> None:
        key = service_key(info.service)
        self._stale.discard((key, info.node_id))
        instance = info
        instances = self._instances.setdefault(key, {})
        previous = instances.get(info.node_id)
        instances[info.node_id] = instance
        self._invalidate(key)
        if previous is not None and previous != instance:
            self._superseded(previous)
        self._notify("added", instance)

    def _superseded(self, previous: Instance) -> None:
        """Another instance took ``previous``'s node id (another address or version): the
        old one is gone, and what was known of its health with it."""
        self.health.forget(previous.node_id)
        self._notify("removed", previous)

    def remove(self, service: str, node_id: str) -> None:
        key = service_key(service)
        self._stale.discard((key, node_id))
        instance = self._instances.get(key, {}).pop(node_id, None)
        self.health.forget(node_id)
        if instance is not None:
            self._invalidate(key)
            self._notify("removed", instance)

    def _note_case(self, asked: str, registered: str) -> None:
        """Say once that ``asked`` found ``registered`` only because case does not matter."""
        if (asked, registered) in self._case_noted:
            return
        self._case_noted.add((asked, registered))
        logger.warning(
            "service %r is registered as %r: requests reach it (names match whatever their case, as "
            "in vyked 2.x), but its events reach only subscribers whose client names it exactly; "
            "write %r in the client to receive them",
            asked,
            registered,
            registered,
        )

    # -- queries -------------------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        return list(self._instances.get(service_key(service), {}).values())

    def candidates(self, service: str, version: str, kind: str = "tcp") -> list[Instance]:
        """Instances a client of ``version`` may use: exact version, else highest same major."""
        key = (service, version, kind)
        route = self._routes.get(key)
        if route is None:
            of_kind = [i for i in self._instances.get(service_key(service), {}).values() if i.kind == kind]
            chosen = best_version(version, (i.version for i in of_kind))
            route = sorted((i for i in of_kind if i.version == chosen), key=lambda i: i.node_id)
            self._routes[key] = route
        return route

    def select(
        self,
        service: str,
        version: str,
        kind: str = "tcp",
        entity: object = None,
        tried: Collection[str] = (),
        load: Load | None = None,
    ) -> Instance:
        """Pick the instance for one request, or raise :class:`ServiceUnavailable`.

        With ``entity``, rendezvous hashing picks the same instance in every process. Without,
        round-robin; or, given ``load``, the less loaded of the round-robin pick and one other
        instance drawn at random (least outstanding requests by the power of two choices,
        which is round-robin again while loads are equal). Instances whose circuit is open
        (:mod:`vyked.core.health`), and the node ids in ``tried`` (those this request tried
        already), are skipped.
        """
        route = self._routes.get((service, version, kind))
        if route is None:
            route = self.candidates(service, version, kind)
        health = self.health
        unhealthy = health.breakers
        if len(route) == 1 and not unhealthy and not tried and entity is None:
            return route[0]  # the one instance, and nothing to skip: no balancing to do
        if (unhealthy or tried) and route:
            now = time.monotonic()
            usable = [i for i in route if i.node_id not in tried and health.usable(i.node_id, now)]
            if not usable:
                raise ServiceUnavailable(
                    f"no usable {kind} instance of {service!r} (version {version!r}): {len(route)} registered, "
                    f"none usable now ({len(tried)} tried by this request; the others unreachable, draining "
                    f"or failing, skipped for {UNREACHABLE_FOR} s or more)"
                )
            route = usable
        if not route:
            raise ServiceUnavailable(self._unavailable_reason(service, version, kind))
        chosen = choose(route, entity, self.balancer(service, version, kind), load, _node_id)
        if unhealthy:
            health.picked(chosen.node_id)
        return chosen

    def balancer(self, service: str, version: str, kind: str = "tcp") -> RoundRobin:
        """The round-robin state of a route, shared by whatever picks among its instances."""
        key = (service, version, kind)
        balancer = self._round_robin.get(key)
        if balancer is None:
            balancer = self._round_robin[key] = RoundRobin()
        return balancer

    def mark_unreachable(self, instance: Instance) -> None:
        """Nothing could be sent to ``instance``: skip it for a while (see :mod:`vyked.core.health`)."""
        self.health.unreachable(instance)

    def _unavailable_reason(self, service: str, version: str, kind: str) -> str:
        present = sorted({f"{i.version} ({i.kind})" for i in self._instances.get(service_key(service), {}).values()})
        if present:
            return (
                f"no live {kind} instance of {service!r} matches version {version!r}; registered: {', '.join(present)}"
            )
        return f"no live instance of {service!r} (version {version!r}, {kind}) is registered"

    def _invalidate(self, key: str) -> None:
        """Forget the cached routes of the service whose :func:`service_key` is ``key``."""
        for route in [k for k in self._routes if service_key(k[0]) == key]:
            del self._routes[route]

    def _notify(self, event: str, instance: Instance) -> None:
        for listener in list(self._listeners):
            listener(event, instance)


def _node_id(instance: Instance) -> str:
    return instance.node_id
