"""Routes: the ready connections a client's requests to one service version go over.

On the fast path a request needs an instance and a ready connection to it. Asking the host's
instance directory for the instance and then the pool for its connection costs more than the
rest of sending the request, so the :class:`~vyked.tcp.pool.ConnectionPool` keeps a
:class:`Route` per service version once every candidate instance is connected: the
connections themselves, balanced among as the directory balances among instances (same
round-robin state, same least-outstanding and rendezvous choices).

A route stands while nothing that decides the choice changes. The pool retires it
(:attr:`Route.current` turns false) when an instance comes or goes, a connection is lost or
drains, or the pool closes; while some circuit breaker has something to say
(:attr:`Route.breakers` not empty) requests go the directory's way, which skips unhealthy
instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vyked.core.balancing import RoundRobin, choose
from vyked.core.health import Breaker

if TYPE_CHECKING:
    from vyked.tcp.pool import InstanceConnection


class Route:
    """The connections to every instance a client of one service version may use."""

    __slots__ = ("balancer", "breakers", "connections", "current", "only")

    def __init__(
        self, connections: list[InstanceConnection], balancer: RoundRobin, breakers: dict[str, Breaker]
    ) -> None:
        self.connections = connections
        self.only = connections[0] if len(connections) == 1 else None
        """The connection, when there is one instance: no choice to make."""
        self.balancer = balancer
        """The directory's round-robin state for this route."""
        self.breakers = breakers
        """The host's circuit breakers (:attr:`~vyked.core.health.InstanceHealth.breakers`):
        while not empty, requests go the directory's way."""
        self.current = True
        """False once the pool has retired the route: ask it for a new one."""

    def pick(self, entity: object, load: Callable[[InstanceConnection], int] | None) -> InstanceConnection:
        """The connection for one request (see :func:`vyked.core.balancing.choose`; ``load``
        for least-outstanding balancing, else None); callers take :attr:`only` first, when set."""
        return choose(self.connections, entity, self.balancer, load, _node_id)


def in_flight(ic: InstanceConnection) -> int:
    """Requests in flight on ``ic``: a connection's load, for least-outstanding balancing."""
    return len(ic.pending)


def _node_id(ic: InstanceConnection) -> str:
    return ic.instance.node_id
