"""What the registry exposes on ``--metrics-port``, as :class:`~vyked.core.observe.Family`
objects (vyked-core's metrics server turns them into Prometheus metrics; this module does not
import prometheus-client)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from vyked.core.observe import Family
from vyked.core.transport.connection import COUNTS

if TYPE_CHECKING:
    from vyked.registry.server import Registry


def registry_families(registry: Registry) -> list[Family]:
    """Instances by service, version, kind and state; registrations and removals; watchers;
    with ``--redis``, the change feed's state and lag; the process's connections. Called in
    the event loop's thread."""
    instances = Family(
        "vyked_registry_instances",
        "Instances the registry lists, by state (active, pending, draining, down)",
        "gauge",
        ["service", "version", "kind", "state"],
    )
    by_labels: Counter[tuple[str, str, str, str]] = Counter()
    for reg in registry.state.known():
        info = reg.instance
        by_labels[(info.service, info.version, info.kind, reg.state)] += 1
    for labels, count in sorted(by_labels.items()):
        instances.add(list(labels), count)
    registered = Family("vyked_registry_registrations_total", "Instances registered", "counter")
    registered.add([], registry.state.counts["registered"])
    removed = Family("vyked_registry_removals_total", "Instances withdrawn or gone", "counter")
    removed.add([], registry.state.counts["removed"])
    watchers, watched = registry.state.watch_counts()
    watching = Family("vyked_registry_watchers", "Connections watching at least one service", "gauge")
    watching.add([], watchers)
    services = Family("vyked_registry_watched_services", "Services somebody watches", "gauge")
    services.add([], watched)
    replication = registry.replication.metric_families() if registry.replication is not None else []
    return [instances, registered, removed, watching, services, *replication, *COUNTS.metric_families()]
