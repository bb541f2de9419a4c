"""Hostile wire input from a seeded generator, and the checks a :class:`Session` must pass on it.

:class:`Hostile` makes byte strings of every kind a stranger may send (random bytes, malformed
and mistyped frames, huge lengths, deep nesting, long strings, floods, handshake abuse); fast
enough for a million in a few minutes. :func:`run_session_inputs` feeds them to sessions in
random chunkings and returns what went wrong. ``fuzz_wire.py`` uses both; so does its socket
phase, for what it writes to real servers.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vyked.core.exceptions import VykedError
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from vyked.core.protocol.packets import PROTOCOL_VERSION, Error, Hello, Packet, Ping, Pong, Welcome
from vyked.core.protocol.session import Session

SECRET = b"fuzz-cluster-secret"
ERROR_MESSAGE_LIMIT = 4096
"""Longest acceptable ``error`` message: it is logged and sent back to whoever caused it."""
INITIAL_BUFFER = 16 * 1024

HELLO = bytes(encode_frame(Hello(protocol=PROTOCOL_VERSION, node_id="fuzz-client", role="client")))
WELCOME = bytes(encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id="fuzz-server")))
PING = bytes(encode_frame(Ping(nonce=7)))

_INSTANCE = {"service": "S", "version": "1", "host": "127.0.0.1", "port": 1, "node_id": "n", "kind": "tcp"}
TEMPLATES: list[dict[str, Any]] = [
    {"type": "hello", "protocol": 1, "node_id": "n", "role": "host", "nonce": ""},
    {"type": "welcome", "protocol": 1, "node_id": "n"},
    {"type": "challenge", "nonce": "ab", "proof": "cd"},
    {"type": "auth", "proof": "cd"},
    {"type": "ping", "nonce": 1},
    {"type": "pong", "nonce": 1},
    {"type": "error", "code": "bad_frame", "message": "m", "id": None, "error_type": "", "args": []},
    {"type": "error", "code": "remote_error", "message": "m", "id": 3, "error_type": "ValueError", "args": [1]},
    {"type": "request", "id": 1, "service": "FuzzService", "endpoint": "echo", "params": {"value": 1}},
    {"type": "request", "id": 2, "service": "FuzzService", "endpoint": "blob", "params": {"size": 64}},
    {"type": "request", "id": 3, "service": "", "endpoint": "nope", "params": {}},
    {"type": "response", "id": 1, "result": [1, 2], "deprecation": None},
    {"type": "register", "instance": _INSTANCE, "dependencies": [{"service": "D", "version": "1"}]},
    {"type": "registered", "node_id": "n"},
    {"type": "watch", "services": ["S", "T"]},
    {"type": "instances", "service": "S", "instances": [_INSTANCE]},
    {"type": "instance_added", "instance": _INSTANCE},
    {"type": "instance_removed", "service": "S", "node_id": "n"},
    {"type": "service_state", "node_id": "n", "state": "active", "waiting_for": []},
    {"type": "status"},
    {"type": "status_report", "registry": "r", "instances": []},
    {"type": "subscribe", "service": "FuzzService", "subscriptions": [{"event": "e", "group": "g"}], "since": 1.0},
    {"type": "subscribed", "service": "S"},
    {"type": "event", "service": "S", "event": "e", "payload": {"a": 1}, "id": 0, "group": ""},
    {"type": "event_ack", "id": 1, "ok": False, "message": "m"},
]
STRINGS = ["", "x", "é", "\u2603", "\ud83d\ude00", "\x00", "\\", '"', "\n", "type", "request", "🙂" * 3, "a" * 100]
INTS = [0, -1, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
FLOATS = [0.0, -0.0, 1e308, -1e-308, 0.5, 1e-320]
ECHO_REQUEST = '{"type":"request","id":1,"service":"FuzzService","endpoint":"echo","params":{"value":'
STRUCTURES = {"list": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"k":', "}]")}


class Hostile(random.Random):
    """A seeded source of hostile inputs: ``next_input()`` returns ``(kind, bytes, frames)``."""

    KINDS = (
        ("random_bytes", 10),
        ("random_frame", 10),
        ("json_value", 10),
        ("packet", 12),
        ("mistyped", 14),
        ("mutated", 12),
        ("truncated", 5),
        ("huge_length", 6),
        ("deep", 4),
        ("long_string", 3),
        ("flood", 4),
        ("handshake", 10),
    )

    def __init__(self, seed: int, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(seed)
        self.max_frame_size = max_frame_size
        self._kinds = [k for k, _ in self.KINDS]
        self._weights = [w for _, w in self.KINDS]
        # Drawn once: building random strings per input would cost more than parsing them.
        self._texts = STRINGS * 20 + [self._random_text() for _ in range(400)]

    def next_input(self, kind: str | None = None) -> tuple[str, bytes, int]:
        kind = kind or self.choices(self._kinds, self._weights)[0]
        data, frames = getattr(self, f"_{kind}")()
        return kind, data, frames

    # -- pieces ------------------------------------------------------------------------------

    def frame(self, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + body

    def text(self) -> str:
        return self.choice(self._texts)

    def _random_text(self) -> str:
        length = self.choice((1, 4, 8, 32))
        return "".join(chr(self.choice((self.randrange(32, 127), self.randrange(0x80, 0xD800)))) for _ in range(length))

    def scalar(self) -> Any:
        pick = self.randrange(7)
        if pick == 0:
            return None
        if pick == 1:
            return self.random() < 0.5
        if pick == 2:
            return self.choice(INTS) if self.random() < 0.5 else self.randrange(-1000, 1000)
        if pick == 3:
            return self.choice(FLOATS)
        return self.text()

    def value(self, depth: int = 0) -> Any:
        roll = self.random()
        if depth >= 3 or roll < 0.6:
            return self.scalar()
        if roll < 0.8:
            return [self.value(depth + 1) for _ in range(self.randrange(4))]
        return {self.text(): self.value(depth + 1) for _ in range(self.randrange(4))}

    def dumps(self, obj: Any) -> bytes:
        if self.random() < 0.5:
            return json.dumps(obj).encode()
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")

    def packet_dict(self) -> dict[str, Any]:
        packet = dict(self.choice(TEMPLATES))
        for key in packet:
            if key != "type" and self.random() < 0.3:
                current = packet[key]
                if isinstance(current, str):
                    packet[key] = self.text()
                elif isinstance(current, int) and not isinstance(current, bool):
                    packet[key] = self.choice(INTS)
        return packet

    # -- kinds -------------------------------------------------------------------------------

    def _random_bytes(self) -> tuple[bytes, int]:
        return self.randbytes(self.randrange(65)), 0

    def _random_frame(self) -> tuple[bytes, int]:
        return self.frame(self.randbytes(self.randrange(200))), 1

    def _json_value(self) -> tuple[bytes, int]:
        return self.frame(self.dumps(self.value())), 1

    def _packet(self) -> tuple[bytes, int]:
        n = self.randrange(1, 4)
        return b"".join(self.frame(self.dumps(self.packet_dict())) for _ in range(n)), n

    def _mistyped(self) -> tuple[bytes, int]:
        packet = self.packet_dict()
        fields = [k for k in packet if k != "type"]
        if fields:
            packet[self.choice(fields)] = self.value()
        if self.random() < 0.2:
            packet["type"] = self.value()
        if self.random() < 0.1:
            del packet["type"]
        return self.frame(self.dumps(packet)), 1

    def _mutated(self) -> tuple[bytes, int]:
        data = bytearray(self.frame(self.dumps(self.packet_dict())))
        for _ in range(self.randrange(1, 4)):
            op = self.randrange(4)
            at = self.randrange(len(data))
            if op == 0:
                data[at] = self.randrange(256)
            elif op == 1:
                data.insert(at, self.randrange(256))
            elif op == 2 and len(data) > 1:
                del data[at : at + self.randrange(1, 8)]
            else:
                data[at:at] = data[at : at + self.randrange(1, 16)]
        return bytes(data), 1

    def _truncated(self) -> tuple[bytes, int]:
        data = self.frame(self.dumps(self.packet_dict()))
        return data[: self.randrange(len(data))], 1

    def _huge_length(self) -> tuple[bytes, int]:
        limit = self.max_frame_size
        roll = self.random()
        if roll < 0.5:
            size = self.choice((limit + 1, 2**32 - 1, 2**31, limit * 2))
        elif roll < 0.8:
            size = self.randrange(limit + 1, 2**32)
        else:  # within the limit: announced, never sent; must cost only what arrives
            size = self.randrange(INITIAL_BUFFER, limit + 1)
        return size.to_bytes(4, "big") + self.randbytes(self.randrange(100)), 1

    def _deep(self) -> tuple[bytes, int]:
        depth = int(10 ** self.uniform(2, 4.5))
        opening, closing = STRUCTURES[self.choice(list(STRUCTURES))]
        inner = opening * depth + ("1" + closing * depth if self.random() < 0.7 else "")
        where = self.randrange(4)
        if where == 0:
            body = inner
        elif where == 1:
            body = ECHO_REQUEST + inner + "}}"
        elif where == 2:
            body = '{"type":"ping","future":' + inner + "}"
        else:
            body = '{"type":"register","instance":' + inner + "}"
        return self.frame(body.encode()), 1

    def _long_string(self) -> tuple[bytes, int]:
        text = self.choice(("x", "\\n", "\\u00e9", "é", "\\\\")) * int(10 ** self.uniform(3, 5.3))
        where = self.randrange(6)
        if where == 0:
            body = '{"type":"' + text + '"}'
        elif where == 1:
            body = ECHO_REQUEST + '"' + text + '"}}'
        elif where == 2:
            body = '{"type":"pong","' + text + '":1}'
        elif where == 3:
            body = '{"type":"request","id":"' + text + '","service":"S","endpoint":"e"}'
        elif where == 4:
            body = '{"type":"hello","protocol":1,"node_id":"' + text
        else:
            body = '{"type":"hello","protocol":1,"node_id":"' + text + '","role":"' + text + '"}'
        return self.frame(body.encode()), 1

    def _flood(self) -> tuple[bytes, int]:
        n = self.randrange(50, 600)
        if self.random() < 0.7:
            return PING * n, n
        frames = [self.frame(self.dumps(self.packet_dict())) for _ in range(20)]
        return b"".join(self.choice(frames) for _ in range(n)), n

    def _handshake(self) -> tuple[bytes, int]:
        roll = self.randrange(5)
        if roll == 0:
            packet: dict[str, Any] = {"type": "hello", "protocol": self.choice((0, 1, 2, 2**70, -1, "1", None))}
            packet.update({k: self.choice((self.text(), self.scalar())) for k in ("node_id", "role", "nonce")})
        elif roll == 1:
            packet = {"type": "auth", "proof": self.choice((self.text(), "0" * 64, "é" * 64, self.scalar()))}
        elif roll == 2:
            packet = {"type": "challenge", "nonce": self.text(), "proof": self.choice((self.text(), "é" * 64))}
        elif roll == 3:
            packet = {"type": "welcome", "protocol": self.choice((1, 2, -5)), "node_id": self.text()}
        else:
            packet = {"type": "error", "code": self.text(), "message": self.text(), "error_type": self.text()}
        prefix = HELLO if self.random() < 0.3 else b""
        return prefix + self.frame(self.dumps(packet)), 1 + (prefix != b"")


# -- driving sessions ------------------------------------------------------------------------------


@dataclass
class SessionReport:
    """What a batch of inputs did: counts, and failures by check with a first example."""

    inputs: int = 0
    bytes: int = 0
    frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    longest_error_message: int = 0
    largest_buffer: int = 0
    seconds: float = 0.0

    def merge(self, other: SessionReport) -> None:
        self.inputs += other.inputs
        self.bytes += other.bytes
        self.frames += other.frames
        self.kinds.update(other.kinds)
        self.outcomes.update(other.outcomes)
        self.failures.update(other.failures)
        for key, example in other.examples.items():
            self.examples.setdefault(key, example)
        self.longest_error_message = max(self.longest_error_message, other.longest_error_message)
        self.largest_buffer = max(self.largest_buffer, other.largest_buffer)
        self.seconds = max(self.seconds, other.seconds)


SESSION_KINDS = ("accepting", "accepting+secret", "connecting", "connecting+secret")


def _new_session(kind: str, ready: bool) -> Session:
    accepting = kind.startswith("accepting")
    secret = SECRET if kind.endswith("secret") else None
    session = Session(accepting=accepting, node_id="fuzz-under-test", secret=secret)
    session.start()
    if not ready:
        return session
    if secret is None:
        session.receive_data(HELLO if accepting else WELCOME)
    else:  # a real peer proves the secret: the fuzz input then reaches the ready session
        peer = Session(accepting=not accepting, node_id="fuzz-peer", secret=secret)
        if accepting:
            session.receive_data(peer.start())
        else:
            peer.receive_data(session.start())
        for _ in range(3):
            peer.receive_data(session.data_to_send())
            session.receive_data(peer.data_to_send())
    session.data_to_send()
    assert session.ready, kind
    return session


def _feed(session: Session, data: bytes, rng: random.Random) -> list[Packet]:
    roll = rng.random()  # whole (40 %), byte by byte (5 %), chunks by receive_data or by buffer
    if roll < 0.4 or (roll < 0.45 and len(data) > 400):
        return session.receive_data(data)
    mode = 2 if roll < 0.7 else 3
    if roll < 0.45:
        sizes = [1]
    else:
        low = 1 if len(data) < 1000 else 512  # small reads of long data cost time, not coverage
        sizes = [rng.choice((rng.randrange(low, low + 16), rng.randrange(16, 65536))) for _ in range(3)]
    packets: list[Packet] = []
    offset, i = 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        i += 1
        if mode == 2:
            packets += session.receive_data(data[offset : offset + size])
            offset += size
            continue
        end = min(len(data), offset + size)
        while offset < end:  # the asyncio.BufferedProtocol path
            view = session.get_buffer()
            n = min(len(view), end - offset)
            view[:n] = data[offset : offset + n]
            offset += n
            packets += session.buffer_updated(n)
    return packets


def check_session(session: Session, data: bytes, kind: str, packets: list[Packet], report: SessionReport) -> None:
    """The invariants of any input; failures are counted in ``report``."""

    def failed(check: str) -> None:
        report.failures[check] += 1
        report.examples.setdefault(check, f"{kind}: {data[:300]!r}{'...' if len(data) > 300 else ''}")

    if not all(isinstance(p, Packet) for p in packets):  # type: ignore[arg-type]
        failed("a packet of an unknown class was returned")
    capacity = session._decoder.buffered_capacity  # peeking: the bound is the point
    report.largest_buffer = max(report.largest_buffer, capacity)
    if capacity > INITIAL_BUFFER + 2 * len(data) + 128 * 1024:
        failed(f"receive buffer of {capacity} bytes after {len(data)} bytes received")
    failure = session.failure
    if failure is None:
        report.outcomes["no failure"] += 1
        return
    report.outcomes[f"failure {failure.code}"] += 1
    if not isinstance(failure, VykedError):
        failed(f"failure is {type(failure).__name__}, not a VykedError")
        return
    goodbye = session.fail(failure)
    if session.refusal is not None:
        return
    decoder = FrameDecoder()
    answer = decoder.feed(goodbye)
    if len(answer) != 1 or not isinstance(answer[0], Error) or answer[0].code != failure.code:
        failed("the goodbye frame is not one error packet with the failure's code")
        return
    report.longest_error_message = max(report.longest_error_message, len(answer[0].message))
    if len(answer[0].message) > ERROR_MESSAGE_LIMIT:
        failed(f"error message over {ERROR_MESSAGE_LIMIT} characters (it repeats the input)")


def run_session_inputs(seed: int, count: int) -> SessionReport:
    """Drive ``count`` generated inputs through sessions of every kind; never raises."""
    started = time.monotonic()
    gen = Hostile(seed)
    report = SessionReport()
    for _ in range(count):
        kind, data, frames = gen.next_input()
        session_kind = SESSION_KINDS[gen.randrange(4)]
        ready = gen.random() < 0.5
        label = f"{kind}/{session_kind}/{'ready' if ready else 'new'}"
        report.inputs += 1
        report.bytes += len(data)
        report.frames += frames
        report.kinds[kind] += 1
        try:
            session = _new_session(session_kind, ready)
            packets = _feed(session, data, gen)
            pongs = session.data_to_send()
            check_session(session, data, label, packets, report)
            pings = len(data) // len(PING) if kind == "flood" and data == PING * (len(data) // len(PING)) else 0
            if pings and session.failure is None and FrameDecoder().feed(pongs) != [Pong(nonce=7)] * pings:
                report.failures["a ping flood was not answered pong for ping"] += 1
        except Exception as exc:
            check = f"raised {type(exc).__name__}: {str(exc)[:80]}"
            report.failures[check] += 1
            report.examples.setdefault(check, f"{label}: {data[:300]!r}")
    report.seconds = time.monotonic() - started
    return report
