"""How healthy each remote instance looks from this process: one circuit breaker per instance.

::

    closed ──(``failure_threshold`` failures in a row)──▶ open ──(``cool_off`` s)──▶ half-open
      ▲                                                   ▲                             │
      └────────────────(the probe succeeds)───────────────┼──────(the probe fails)──────┘

- *closed*: the instance takes requests; consecutive failures (timeouts, lost connections,
  ``overloaded`` refusals) are counted, and any answer resets the count. A remote error
  raised by the handler is an answer: the instance is healthy, the request was not.
- *open*: balancing skips the instance until the cool-off ends.
- *half-open*: one request (the probe) may go; the others still skip the instance.
- An instance that could not be reached at all opens at once, for :data:`UNREACHABLE_FOR`
  seconds; one that announced it is *draining* is skipped until the registry removes it
  (or for :data:`DRAINING_FOR` seconds, should no removal come).

Only instances with something to remember have an entry, so that with every instance healthy
the per-request cost is one empty-dict test.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from vyked.core.observe import Family
from vyked.core.protocol.packets import InstanceInfo

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN, DRAINING = "closed", "open", "half_open", "draining"

DEFAULT_FAILURE_THRESHOLD = 5
"""Consecutive failures that open an instance's circuit."""
DEFAULT_COOL_OFF = 5.0
"""Seconds an open circuit skips its instance before one probe may go."""
UNREACHABLE_FOR = 1.0
"""Seconds an instance that could not be reached is skipped before it is probed: the registry
only forgets an instance when its host's registry connection drops, which lags a crash."""
DRAINING_FOR = 30.0
"""Seconds a draining instance is skipped if the registry never says it is gone."""


@dataclass(slots=True)
class Breaker:
    """What is known of one instance that is not plainly healthy."""

    description: str
    state: str = CLOSED
    failures: int = 0
    until: float = 0.0
    """Monotonic time at which an open (or draining) circuit may be probed."""
    probing: bool = False


class InstanceHealth:
    """Circuit breakers of the instances this process calls, by node id."""

    def __init__(self, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD, cool_off: float = DEFAULT_COOL_OFF) -> None:
        self.failure_threshold = failure_threshold
        self.cool_off = cool_off
        self.transitions: Counter[str] = Counter()
        """How many times circuits moved to each state (``open``, ``half_open``, ``closed``,
        ``draining``), for metrics and tests."""
        self.breakers: dict[str, Breaker] = {}
        """The instances not plainly healthy, by node id: empty while every circuit is closed,
        which the hot paths test directly (a plain dict, no method call)."""

    def __bool__(self) -> bool:
        """True when some instance is not plainly healthy (balancing must then look)."""
        return bool(self.breakers)

    def state(self, node_id: str) -> str:
        breaker = self.breakers.get(node_id)
        return CLOSED if breaker is None else breaker.state

    # -- what requests report -----------------------------------------------------------------

    def succeeded(self, instance: InstanceInfo) -> None:
        """An answer came back: the instance is healthy (a draining one stays skipped)."""
        breaker = self.breakers.get(instance.node_id)
        if breaker is None or breaker.state == DRAINING:
            return
        del self.breakers[instance.node_id]
        if breaker.state in (OPEN, HALF_OPEN):
            self._moved(breaker, CLOSED, "a request succeeded")

    def failed(self, instance: InstanceInfo, reason: object) -> None:
        """A request to the instance failed for a reason that says something of its health."""
        breaker = self._breaker(instance)
        if breaker.state == DRAINING:
            return
        breaker.failures += 1
        breaker.probing = False
        if breaker.state == HALF_OPEN or (breaker.state == CLOSED and breaker.failures >= self.failure_threshold):
            breaker.until = time.monotonic() + self.cool_off
            self._moved(
                breaker,
                OPEN,
                f"{breaker.failures} failures in a row, the last: {reason}; skipped for {self.cool_off} s",
            )

    def unreachable(self, instance: InstanceInfo, reason: object = "") -> None:
        """Nothing could be sent to the instance: skip it for :data:`UNREACHABLE_FOR` seconds."""
        breaker = self._breaker(instance)
        if breaker.state == DRAINING:
            return
        breaker.failures += 1
        breaker.probing = False
        breaker.until = time.monotonic() + max(UNREACHABLE_FOR, self.cool_off if breaker.state == HALF_OPEN else 0)
        if breaker.state != OPEN:
            self._moved(breaker, OPEN, f"unreachable{f': {reason}' if reason else ''}", level=logging.INFO)

    def draining(self, instance: InstanceInfo) -> None:
        """The instance said it is shutting down: send it nothing more."""
        breaker = self._breaker(instance)
        breaker.until = time.monotonic() + DRAINING_FOR
        if breaker.state != DRAINING:
            self._moved(breaker, DRAINING, "it is shutting down", level=logging.INFO)

    def forget(self, node_id: str) -> None:
        """The registry removed the instance: nothing to remember any more."""
        self.breakers.pop(node_id, None)

    # -- what balancing asks -------------------------------------------------------------------

    def usable(self, node_id: str, now: float) -> bool:
        """May a request go to this instance now? (An open circuit past its cool-off turns
        half-open and lets one probe through: see :meth:`picked`.)"""
        breaker = self.breakers.get(node_id)
        if breaker is None or breaker.state == CLOSED:
            return True
        if breaker.state == HALF_OPEN:
            return not breaker.probing
        if now < breaker.until:
            return False
        if breaker.state == DRAINING:
            del self.breakers[node_id]  # no removal came: take it back
            return True
        self._moved(breaker, HALF_OPEN, "cool-off over; the next request probes it", level=logging.INFO)
        return True

    def picked(self, node_id: str) -> None:
        """Balancing chose the instance; a half-open one is now being probed."""
        breaker = self.breakers.get(node_id)
        if breaker is not None and breaker.state == HALF_OPEN:
            breaker.probing = True

    def metric_families(self) -> list[Family]:
        """Transitions so far, and the instances not plainly healthy now, by state."""
        moved = Family(
            "vyked_circuit_transitions_total", "Circuit breaker transitions, by the state entered", "counter", ["state"]
        )
        for state in (OPEN, HALF_OPEN, CLOSED, DRAINING):
            moved.add([state], self.transitions[state])
        now = Counter(breaker.state for breaker in list(self.breakers.values()))
        current = Family("vyked_circuits", "Instances called whose circuit is not closed, by state", "gauge", ["state"])
        for state in (OPEN, HALF_OPEN, DRAINING):
            current.add([state], now[state])
        return [moved, current]

    # -- internals -----------------------------------------------------------------------------

    def _breaker(self, instance: InstanceInfo) -> Breaker:
        breaker = self.breakers.get(instance.node_id)
        if breaker is None:
            breaker = self.breakers[instance.node_id] = Breaker(instance.describe())
        return breaker

    def _moved(self, breaker: Breaker, state: str, why: str, level: int = logging.WARNING) -> None:
        breaker.state = state
        self.transitions[state] += 1
        if state == CLOSED:
            level = logging.INFO
        logger.log(level, "circuit of %s is %s: %s", breaker.description, state.replace("_", "-"), why)
