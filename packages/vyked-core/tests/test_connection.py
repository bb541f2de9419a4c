"""Packet connections over real loopback sockets: handshake, validation, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from vyked.core.exceptions import ConnectionLost, ProtocolVersionMismatch
from vyked.core.protocol import FrameDecoder, encode_frame
from vyked.core.protocol.packets import PROTOCOL_VERSION, Hello, Packet, Ping, Request, Response, Welcome
from vyked.core.testing import RawClient, frame, free_port
from vyked.core.transport import Connection, PacketServer, open_connection


class Echo:
    """Answers every request with its params; remembers lost connections."""

    def __init__(self) -> None:
        self.lost: list[Connection] = []

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, Request):
            conn.send(Response(id=packet.id, result=packet.params))

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        self.lost.append(conn)


@pytest.fixture
async def server() -> AsyncIterator[tuple[PacketServer, int]]:
    srv = PacketServer(Echo(), node_id="srv", max_frame_size=1024)
    _, port = await srv.start("127.0.0.1", 0)
    yield srv, port
    await srv.close()


def request(i: int) -> dict[str, object]:
    return {"type": "request", "id": i, "service": "S", "endpoint": "e", "params": {"i": i}}


async def test_handshake_then_requests(server: tuple[PacketServer, int]) -> None:
    _, port = server
    client = await RawClient.connect(port, hello=False)  # raw: the test sees every packet
    client.send({"type": "hello", "protocol": 1, "node_id": "raw"})
    assert await client.receive() == {"type": "welcome", "protocol": 1, "node_id": "srv"}
    client.send(request(1))
    assert await client.receive() == {"type": "response", "id": 1, "result": {"i": 1}}
    client.send({"type": "ping", "nonce": 9})
    assert await client.receive() == {"type": "pong", "nonce": 9}
    await client.close()


async def test_wrong_protocol_version_is_refused(server: tuple[PacketServer, int]) -> None:
    _, port = server
    client = await RawClient.connect(port, hello=False)
    client.send({"type": "hello", "protocol": 99})
    error = await client.receive()
    assert error["type"] == "error" and error["code"] == "protocol_version"
    assert "99" in error["message"]
    assert await client.closed_by_peer()
    await client.close()


async def test_packet_before_hello_is_refused(server: tuple[PacketServer, int]) -> None:
    _, port = server
    client = await RawClient.connect(port, hello=False)
    client.send(request(1))
    error = await client.receive()
    assert error["code"] == "bad_frame" and "hello" in error["message"]
    assert await client.closed_by_peer()
    await client.close()


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (frame(b"{oops"), "bad_frame", "malformed"),
        (frame({"type": "request", "id": "x", "service": "S", "endpoint": "e"}), "bad_frame", "$.id"),
        (frame({"type": "launch_missiles"}), "bad_frame", "launch_missiles"),
        ((5000).to_bytes(4, "big") + b"{}", "frame_too_large", "5000"),
    ],
)
async def test_bad_frame_closes_only_that_connection(
    server: tuple[PacketServer, int], payload: bytes, code: str, fragment: str
) -> None:
    _, port = server
    bystander = await RawClient.connect(port)
    offender = await RawClient.connect(port)
    offender.send_bytes(payload)
    error = await offender.receive()
    assert error["type"] == "error" and error["code"] == code
    assert fragment in error["message"]
    assert await offender.closed_by_peer()
    # the process and the other connections carry on
    bystander.send(request(2))
    assert (await bystander.receive())["id"] == 2
    late = await RawClient.connect(port)
    late.send(request(3))
    assert (await late.receive())["id"] == 3
    for c in (bystander, late, offender):
        await c.close()


async def test_split_and_coalesced_frames_over_a_socket(server: tuple[PacketServer, int]) -> None:
    _, port = server
    client = await RawClient.connect(port)
    data = b"".join(frame(request(i)) for i in range(50))
    for offset in range(0, len(data), 7):
        client.send_bytes(data[offset : offset + 7])
        await client.writer.drain()
    ids = [(await client.receive())["id"] for _ in range(50)]
    assert ids == list(range(50))
    await client.close()


async def test_frames_sent_soon_leave_in_one_write_at_the_end_of_the_loop_pass() -> None:
    # The peer is a plain socket read without the event loop: what it can read right after a
    # call is exactly what the connection has written by then (loopback queues a send at once).
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    opening = asyncio.ensure_future(open_connection("127.0.0.1", listener.getsockname()[1], Echo(), node_id="me"))
    peer, _ = await asyncio.get_running_loop().sock_accept(listener)
    try:
        await asyncio.sleep(0.05)
        peer.setblocking(False)
        hello = FrameDecoder().feed(peer.recv(65536))
        assert [type(packet) for packet in hello] == [Hello]
        peer.sendall(encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id="peer")))
        conn = await asyncio.wait_for(opening, 5)

        first, second, third = (encode_frame(Request(id=i, service="S", endpoint="e")) for i in (1, 2, 3))
        conn.send_frame(first)  # nothing waits to go: written at once
        assert peer.recv(65536) == first
        conn.send_frame_soon(second)
        conn.send_frame(third)  # while a batch waits, frames join it, in order
        with pytest.raises(BlockingIOError):
            peer.recv(65536)  # nothing written yet
        await asyncio.sleep(0.05)
        assert peer.recv(65536) == second + third

        conn.close()
        with pytest.raises(ConnectionLost):
            conn.send_frame_soon(first)
    finally:
        peer.close()
        listener.close()


async def test_open_connection_and_loss_notification(server: tuple[PacketServer, int]) -> None:
    srv, port = server
    lost: list[Connection] = []

    class Client:
        def packet_received(self, conn: Connection, packet: Packet) -> None:
            pass

        def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
            lost.append(conn)

    conn = await open_connection("127.0.0.1", port, Client(), node_id="me")
    assert conn.ready and conn.peer_node_id == "srv"
    await srv.close()
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert lost == [conn]
    with pytest.raises(ConnectionLost):
        conn.send(Ping())


async def test_connect_to_nothing_is_connection_lost() -> None:
    class Nobody:
        def packet_received(self, conn: Connection, packet: Packet) -> None: ...
        def connection_lost(self, conn: Connection, exc: BaseException | None) -> None: ...

    with pytest.raises(ConnectionLost, match="cannot connect"):
        await open_connection("127.0.0.1", free_port(), Nobody())


async def test_client_sees_version_refusal() -> None:
    async def fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        writer.write(frame({"type": "error", "code": "protocol_version", "message": "speak 2"}))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(fake_server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]

    class Nobody:
        def packet_received(self, conn: Connection, packet: Packet) -> None: ...
        def connection_lost(self, conn: Connection, exc: BaseException | None) -> None: ...

    # a refused handshake is an unreachable peer to callers (they try another); the cause says why
    with pytest.raises(ConnectionLost, match="speak 2") as refused:
        await open_connection("127.0.0.1", port, Nobody())
    assert isinstance(refused.value.__cause__, ProtocolVersionMismatch)
    srv.close()
    await srv.wait_closed()


async def test_heartbeat_aborts_a_frozen_peer_and_spares_a_quiet_one(server: tuple[PacketServer, int]) -> None:
    _, port = server
    lost: list[BaseException | None] = []

    class Client:
        def packet_received(self, conn: Connection, packet: Packet) -> None: ...

        def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
            lost.append(exc)

    # a quiet but live peer answers pings (inside its Connection), so it stays connected
    quiet = await open_connection("127.0.0.1", port, Client())
    quiet.start_heartbeat(interval=0.05, timeout=0.3)
    await asyncio.sleep(0.6)
    assert not quiet.closed

    # a frozen peer: a raw socket that completed the handshake and then says nothing
    frozen_server = await asyncio.start_server(_frozen_peer, "127.0.0.1", 0)
    frozen_port = frozen_server.sockets[0].getsockname()[1]
    conn = await open_connection("127.0.0.1", frozen_port, Client())
    started = asyncio.get_running_loop().time()
    conn.start_heartbeat(interval=0.05, timeout=0.3)
    await asyncio.wait_for(conn.wait_closed(), 5)
    elapsed = asyncio.get_running_loop().time() - started
    assert 0.25 < elapsed < 1.0
    assert isinstance(lost[-1], ConnectionLost)
    assert "heartbeat timeout" in str(lost[-1])
    quiet.close()
    frozen_server.close()
    await frozen_server.wait_closed()


async def _frozen_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(4)
    writer.write(frame({"type": "welcome", "protocol": 1}))
    await reader.read()  # swallow pings, never answer
    writer.close()


async def test_memory_is_released_once_a_burst_of_connections_is_over(server: tuple[PacketServer, int]) -> None:
    srv, port = server
    srv.memory.after_closed, srv.memory.quiet = 5, 0.2
    for _ in range(4):
        await (await RawClient.connect(port)).close()
    await asyncio.sleep(0.4)
    assert srv.memory.releases == 0  # 4 closed: not a burst
    clients = [await RawClient.connect(port) for _ in range(6)]
    for client in clients:
        await client.close()
    await asyncio.sleep(0.1)
    assert srv.memory.releases == 0  # not quiet yet
    await asyncio.sleep(0.3)
    assert srv.memory.releases == 1  # one release for the burst, not one per connection


class Recorder:
    """Remembers each ``packet_received`` call (the ids of its packet); closes the connection
    on the packet whose id is ``close_at``."""

    def __init__(self, close_at: int | None = None) -> None:
        self.close_at = close_at
        self.single: list[int] = []

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        assert isinstance(packet, Response)
        self.single.append(packet.id)
        if packet.id == self.close_at:
            conn.close()

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


class BatchRecorder(Recorder):
    """Also takes the packets of one read at once: remembers each call's ids."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def packets_received(self, conn: Connection, packets: list[Packet]) -> None:
        self.batches.append([cast(Response, packet).id for packet in packets])


@contextlib.asynccontextmanager
async def plain_socket_peer(handler: Recorder) -> AsyncIterator[tuple[Connection, socket.socket]]:
    """A connection to a plain socket that has done the handshake by hand: what the peer sends
    in one ``sendall`` after that arrives in one read (loopback, a few small frames)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    opening = asyncio.ensure_future(open_connection("127.0.0.1", listener.getsockname()[1], handler, node_id="me"))
    loop = asyncio.get_running_loop()
    peer, _ = await loop.sock_accept(listener)
    try:
        peer.setblocking(False)
        hello = FrameDecoder().feed(await asyncio.wait_for(loop.sock_recv(peer, 65536), 5))
        assert [type(packet) for packet in hello] == [Hello]
        peer.sendall(encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id="peer")))
        conn = await asyncio.wait_for(opening, 5)
        yield conn, peer
        conn.close()
    finally:
        peer.close()
        listener.close()


def answers(*ids: int) -> bytes:
    return b"".join(encode_frame(Response(id=i, result=i)) for i in ids)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_handler_with_packets_received_gets_the_packets_of_one_read_in_one_call() -> None:
    handler = BatchRecorder()
    async with plain_socket_peer(handler) as (_, peer):
        peer.sendall(answers(1, 2, 3, 4, 5))  # one write: one read at the other end
        await until(lambda: bool(handler.batches))
        peer.sendall(answers(6))  # a read of one packet goes the same way
        await until(lambda: len(handler.batches) == 2)
    assert handler.batches == [[1, 2, 3, 4, 5], [6]]
    assert handler.single == []  # never one by one


async def test_a_handler_without_it_gets_each_packet_and_nothing_after_one_that_closes() -> None:
    handler = Recorder()
    async with plain_socket_peer(handler) as (conn, peer):
        peer.sendall(answers(1, 2, 3))
        await until(lambda: len(handler.single) == 3)
        assert handler.single == [1, 2, 3]

        handler.close_at = 5
        peer.sendall(answers(4, 5, 6, 7))  # one read: the handler closes the connection at 5
        await until(lambda: conn.closed)
        await asyncio.wait_for(conn.wait_closed(), 5)
    assert handler.single == [1, 2, 3, 4, 5]  # 6 and 7 came in the same read, after the close


async def test_a_packet_server_hands_a_read_to_its_handlers_packets_received() -> None:
    batches: list[list[int]] = []

    class BatchEcho(Echo):
        def packets_received(self, conn: Connection, packets: list[Packet]) -> None:
            batches.append([cast(Request, packet).id for packet in packets])
            for packet in packets:
                self.packet_received(conn, packet)

    srv = PacketServer(BatchEcho(), node_id="srv")
    _, port = await srv.start("127.0.0.1", 0)
    client = await RawClient.connect(port)
    try:
        client.send_bytes(b"".join(frame(request(i)) for i in range(1, 5)))
        assert [(await client.receive())["id"] for _ in range(4)] == [1, 2, 3, 4]
        assert batches == [[1, 2, 3, 4]]
    finally:
        await client.close()
        await srv.close()
