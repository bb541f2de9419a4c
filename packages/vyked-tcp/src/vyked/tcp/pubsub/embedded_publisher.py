"""Embedded transport, publishing side: push events to the hosts that subscribed.

Subscribing hosts connect to a publishing service's TCP port and send ``subscribe``. Broadcast
events are framed once and written to every subscribed connection. An exclusive event goes to
one member of each subscribing group, chosen by the group's strategy, and stays in flight
until that member answers ``event_ack``. A failed handler (``ok`` false), a lost connection or
an ack overdue by ``ack_timeout`` sends it to another live member (the ones that failed it are
avoided while others exist), up to ``max_attempts`` deliveries; then it is a dead letter,
kept in a list of the last ``dead_letter_maxlen`` with its last error, which
:meth:`EmbeddedPublisher.replay_dead_letters` delivers again. A group with no member
keeps its events (up to ``max_buffer``) until a member subscribes again, for at most
``empty_group_ttl`` seconds: then the group is dropped with its events. An event has at most
``max_groups`` groups, so subscribers that make up group names cannot make a publisher hold
without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from vyked.core.exceptions import ConnectionLost
from vyked.core.logs import log_count
from vyked.core.protocol import encode_frame
from vyked.core.protocol.packets import Event, EventAck, Packet, Subscribe, Subscribed
from vyked.core.transport import Connection
from vyked.tcp.pubsub.dead_letters import DeadLetter, now, truncate, unknown_error
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats

logger = logging.getLogger(__name__)

_Topic = tuple[str, str]
"""(service, event) on this publishing host."""


@dataclass(slots=True, eq=False)
class _Member:
    conn: Connection
    node_id: str
    since: float
    leader: bool


@dataclass(slots=True, eq=False)
class _Group:
    name: str
    members: dict[Connection, _Member] = field(default_factory=dict)
    backlog: deque[_Delivery] = field(default_factory=deque)
    empty_since: float | None = None
    """Loop time the last member left; None while it has members."""
    expiry: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class _Delivery:
    topic: _Topic
    group: str
    payload: bytes
    trace: Mapping[str, str] | None = None
    attempts: int = 0
    failed: set[str] = field(default_factory=set)
    conn: Connection | None = None
    timer: asyncio.TimerHandle | None = None
    error: str = ""
    """Why the last attempt failed, if known."""


class EmbeddedPublisher:
    """Subscribers and exclusive deliveries in flight, for every service of one host."""

    def __init__(self, settings: PubSubSettings, stats: PubSubStats) -> None:
        self.settings = settings
        self.stats = stats
        self._broadcast: dict[_Topic, dict[Connection, None]] = {}
        self._groups: dict[_Topic, dict[str, _Group]] = {}
        self._subscribed: dict[Connection, dict[str, Subscribe]] = {}
        self._in_flight: dict[int, _Delivery] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._groups_dropped = 0
        self._groups_refused = 0
        self.dead_letters: deque[DeadLetter] = deque(maxlen=settings.dead_letter_maxlen)
        """Exclusive events given up after ``max_attempts``, oldest first (the oldest are
        forgotten beyond ``dead_letter_maxlen``)."""
        self._dead_ids = itertools.count(1)

    @property
    def pending(self) -> int:
        """Exclusive events in flight or waiting for a member."""
        waiting = sum(len(g.backlog) for groups in self._groups.values() for g in groups.values())
        return len(self._in_flight) + waiting

    @property
    def unsent(self) -> int:
        """Bytes of broadcast events still in the subscribers' connection write buffers."""
        connections = {conn for targets in self._broadcast.values() for conn in targets}
        return sum(conn.write_buffer_size for conn in connections if not conn.closed)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, service: str, event: str, payload: bytes, trace: Mapping[str, str] | None = None) -> None:
        topic = (service, event)
        sent = False
        targets = self._broadcast.get(topic)
        if targets:
            if trace:
                packet = Event(service=service, event=event, payload=msgspec.Raw(payload), trace=dict(trace))
            else:
                packet = Event(service=service, event=event, payload=msgspec.Raw(payload))
            frame = encode_frame(packet)
            for conn in targets:
                if not conn.closed:
                    conn.send_frame(frame)
                    sent = True
        for group in self._groups.get(topic, {}).values():
            self._dispatch(_Delivery(topic, group.name, payload, trace), group)
            sent = True
        if sent:
            self.stats.sent += 1

    def _dispatch(self, delivery: _Delivery, group: _Group) -> None:
        member = self._choose(group, delivery)
        if member is None:
            self._hold(delivery, group)
            return
        delivery_id = next(self._ids)
        delivery.attempts += 1
        delivery.conn = member.conn
        delivery.timer = asyncio.get_running_loop().call_later(self.settings.ack_timeout, self._overdue, delivery_id)
        self._in_flight[delivery_id] = delivery
        service, event = delivery.topic
        packet = Event(
            service=service, event=event, payload=msgspec.Raw(delivery.payload), id=delivery_id, group=group.name,
            trace=dict(delivery.trace) if delivery.trace else {},
        )  # fmt: skip
        try:
            member.conn.send(packet)
        except ConnectionLost:
            self._settle(delivery_id)
            self._retry(delivery, member.node_id, 0.0, "the subscriber's connection was lost before acknowledging")

    def _choose(self, group: _Group, delivery: _Delivery) -> _Member | None:
        live = [m for m in group.members.values() if not m.conn.closed]
        if not live:
            return None
        fresh = [m for m in live if m.node_id not in delivery.failed] or live
        if any(m.leader for m in fresh):
            return min(fresh, key=lambda m: (m.since, m.node_id))
        return random.choice(fresh)

    def _hold(self, delivery: _Delivery, group: _Group) -> None:
        if self._closed or len(group.backlog) >= self.settings.max_buffer:
            self._lose(delivery, f"no live subscriber and {len(group.backlog)} events waiting already")
            return
        group.backlog.append(delivery)

    def _lose(self, delivery: _Delivery, why: str) -> None:
        self.stats.dropped += 1
        log_count(
            logger,
            self.stats.dropped,
            "dropped an exclusive %s event for group %r: %s (%d dropped so far)",
            ".".join(delivery.topic),
            delivery.group,
            why,
            self.stats.dropped,
        )

    # -- answers and failures ------------------------------------------------------------------

    def _settle(self, delivery_id: int) -> _Delivery | None:
        delivery = self._in_flight.pop(delivery_id, None)
        if delivery is not None and delivery.timer is not None:
            delivery.timer.cancel()
            delivery.timer = None
        return delivery

    def _acked(self, conn: Connection, ack: EventAck) -> None:
        delivery = self._in_flight.get(ack.id)
        if delivery is None or delivery.conn is not conn:
            return  # answered after it was given to someone else
        self._settle(ack.id)
        if not ack.ok:
            self._retry(delivery, conn.peer_node_id, self.settings.retry_delay, truncate(ack.message))

    def _overdue(self, delivery_id: int) -> None:
        delivery = self._settle(delivery_id)
        if delivery is not None and delivery.conn is not None:
            logger.warning(
                "%s not acknowledged within %s s; redelivering", ".".join(delivery.topic), self.settings.ack_timeout
            )
            why = f"not acknowledged within {self.settings.ack_timeout:g} s"
            self._retry(delivery, delivery.conn.peer_node_id, 0.0, why)

    def _retry(self, delivery: _Delivery, failed_node: str, delay: float, error: str) -> None:
        delivery.failed.add(failed_node)
        delivery.conn = None
        delivery.error = error
        if delivery.attempts >= self.settings.max_attempts:
            self._give_up(delivery)
            return
        self.stats.redelivered += 1
        if delay:
            asyncio.get_running_loop().call_later(delay, self._redispatch, delivery)
        else:
            self._redispatch(delivery)

    def _give_up(self, delivery: _Delivery) -> None:
        service, event = delivery.topic
        letter = DeadLetter(
            service=service,
            event=event,
            group=delivery.group,
            payload=delivery.payload,
            handler="",  # the subscriber's event_ack does not name it
            attempts=delivery.attempts,
            error=delivery.error or unknown_error(delivery.attempts),
            time=now(),
            id=str(next(self._dead_ids)),
        )
        self.dead_letters.append(letter)
        self.stats.dead_lettered += 1
        logger.error(
            "gave up exclusive %s event for group %r after %d attempts (last error: %s); kept as dead letter %s "
            "(%d kept): %s",
            ".".join(delivery.topic),
            delivery.group,
            delivery.attempts,
            letter.error,
            letter.id,
            len(self.dead_letters),
            delivery.payload[:200],
        )

    def replay_dead_letters(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Deliver these dead letters again (with fresh attempts) to their groups, and forget
        them; those whose group is gone from this publisher stay. Returns those replayed."""
        wanted = {letter.id for letter in letters}
        kept: deque[DeadLetter] = deque(maxlen=self.dead_letters.maxlen)
        replayed: list[tuple[DeadLetter, _Group]] = []
        for letter in self.dead_letters:
            group = self._groups.get((letter.service, letter.event), {}).get(letter.group)
            if letter.id in wanted and group is not None:
                replayed.append((letter, group))
            else:
                kept.append(letter)
        self.dead_letters = kept
        for letter, group in replayed:
            self._dispatch(_Delivery((letter.service, letter.event), letter.group, letter.payload), group)
        return [letter for letter, _ in replayed]

    def _redispatch(self, delivery: _Delivery) -> None:
        group = self._groups.get(delivery.topic, {}).get(delivery.group)
        if group is None:  # dropped meanwhile (no member for too long), or the publisher closed
            self._lose(delivery, "its group is gone")
            return
        self._dispatch(delivery, group)

    # -- subscriber connections ------------------------------------------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, EventAck):
            self._acked(conn, packet)
        elif isinstance(packet, Subscribe):
            self._subscribe(conn, packet)

    def _subscribe(self, conn: Connection, packet: Subscribe) -> None:
        self._unsubscribe(conn, packet.service)
        self._subscribed.setdefault(conn, {})[packet.service] = packet
        joined: list[tuple[_Topic, _Group]] = []
        for sub in packet.subscriptions:
            topic = (packet.service, sub.event)
            if not sub.group:
                self._broadcast.setdefault(topic, {})[conn] = None
                continue
            group = self._join(topic, sub.group)
            if group is None:
                continue
            group.members[conn] = _Member(conn, conn.peer_node_id, packet.since, sub.strategy == "leader")
            joined.append((topic, group))
        conn.send(Subscribed(service=packet.service))
        for _, group in joined:
            backlog, group.backlog = group.backlog, deque()
            for delivery in backlog:
                self._dispatch(delivery, group)

    def _unsubscribe(self, conn: Connection, service: str) -> None:
        old = self._subscribed.get(conn, {}).pop(service, None)
        if old is None:
            return
        for sub in old.subscriptions:
            topic = (service, sub.event)
            if sub.group:
                group = self._groups.get(topic, {}).get(sub.group)
                if group is not None and group.members.pop(conn, None) is not None and not group.members:
                    self._emptied(topic, group)
            else:
                self._broadcast.get(topic, {}).pop(conn, None)

    # -- groups: bounded in number, dropped once empty for too long ------------------------

    def _join(self, topic: _Topic, name: str) -> _Group | None:
        """The group ``name`` of ``topic``, made if new and there is room; None if not."""
        groups = self._groups.setdefault(topic, {})
        group = groups.get(name)
        if group is not None:
            if group.expiry is not None:
                group.expiry.cancel()
            group.expiry = group.empty_since = None
            return group
        if len(groups) >= self.settings.max_groups:
            empty = [g for g in groups.values() if g.empty_since is not None]
            if not empty:
                self._groups_refused += 1
                log_count(
                    logger,
                    self._groups_refused,
                    "ignored a subscription of group %r to %s: the event has %d groups with members already "
                    "(max_groups; %d subscriptions ignored so far)",
                    name,
                    ".".join(topic),
                    len(groups),
                    self._groups_refused,
                )
                return None
            # Make room by dropping the group that has been empty the longest.
            self._drop_group(topic, min(empty, key=lambda g: g.empty_since or 0.0), f"to make room for {name!r}")
            groups = self._groups.setdefault(topic, {})
        group = groups[name] = _Group(name)
        return group

    def _emptied(self, topic: _Topic, group: _Group) -> None:
        """The group's last member left: it keeps its events for ``empty_group_ttl``."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        group.empty_since = loop.time()
        group.expiry = loop.call_later(self.settings.empty_group_ttl, self._expire, topic, group)

    def _expire(self, topic: _Topic, group: _Group) -> None:
        group.expiry = None
        if not group.members and self._groups.get(topic, {}).get(group.name) is group:
            self._drop_group(topic, group, f"no member for {self.settings.empty_group_ttl:g} s")

    def _drop_group(self, topic: _Topic, group: _Group, why: str) -> None:
        groups = self._groups.get(topic, {})
        if groups.get(group.name) is group:
            del groups[group.name]
            if not groups:
                del self._groups[topic]
        if group.expiry is not None:
            group.expiry.cancel()
            group.expiry = None
        lost = len(group.backlog)
        group.backlog.clear()
        self.stats.dropped += lost
        self._groups_dropped += 1
        log_count(
            logger,
            self._groups_dropped,
            "dropped exclusive group %r of %s (%s) with the %d events it held (%d groups dropped so far)",
            group.name,
            ".".join(topic),
            why,
            lost,
            self._groups_dropped,
            level=logging.WARNING if lost else logging.INFO,
        )

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        for service in list(self._subscribed.get(conn, {})):
            self._unsubscribe(conn, service)
        self._subscribed.pop(conn, None)
        for delivery_id in [i for i, d in self._in_flight.items() if d.conn is conn]:
            delivery = self._settle(delivery_id)
            if delivery is not None:
                self._retry(
                    delivery, conn.peer_node_id, 0.0, "the subscriber's connection was lost before acknowledging"
                )

    def close(self) -> None:
        """Forget everything; exclusive events not yet acknowledged are lost (and counted)."""
        self._closed = True
        lost = self.pending
        for delivery_id in list(self._in_flight):
            self._settle(delivery_id)
        for groups in self._groups.values():
            for group in groups.values():
                if group.expiry is not None:
                    group.expiry.cancel()
        self._groups.clear()
        self._broadcast.clear()
        if lost:
            self.stats.dropped += lost
            logger.warning("%d exclusive events were still unacknowledged when the publisher stopped", lost)
