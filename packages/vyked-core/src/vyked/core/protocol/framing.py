"""Length-prefixed framing of packets: bytes in, packets out, and back. No sockets here.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON
holding one packet. :class:`FrameDecoder` owns a preallocated buffer that an
``asyncio.BufferedProtocol`` reads into directly (see ``transport.connection``); tests feed
it plain bytes with :meth:`FrameDecoder.feed`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgspec

from vyked.core.exceptions import FrameTooLarge, ProtocolError
from vyked.core.protocol.packets import Event, Packet

HEADER_SIZE = 4
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
# Small, because a registry or service may hold thousands of mostly idle connections; the
# buffer grows for large frames (or bursts) and shrinks back once they are parsed.
_INITIAL_BUFFER_SIZE = 16 * 1024
# The buffer grows geometrically with the bytes actually received (at most twice the pending
# bytes plus this), never to the size a header announces: a peer dripping a 16 MiB frame must
# not make us hold 16 MiB, while a real 16 MiB frame still takes about ten reallocations.
_GROWTH_SLACK = 64 * 1024
# Below this much free space a read would be needlessly small, so make room first.
_MIN_READ_SIZE = 4 * 1024
_SHRINK_ABOVE = 1024 * 1024

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Packet)
_header = struct.Struct(">I")
_pack_header = _header.pack
_unpack_header = _header.unpack_from


ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
"""What the codec raises for a value JSON cannot carry: an unsupported type (``TypeError``), a
number out of range, or a value that contains itself or nests too deeply (``RecursionError``)."""
encode_payload: Callable[[Any], bytes] = _encoder.encode
"""Serialise a JSON value with the wire codec: a packet (a frame's body), or a user payload
to check. Raises one of :data:`ENCODE_ERRORS` if JSON cannot carry it."""
frame_header: Callable[[int], bytes] = _pack_header
"""The header of a frame whose body has this many bytes. ``frame_header(len(body)) + body``
with ``body = encode_payload(packet)`` is :func:`encode_frame`, written out where a call per
request counts (sending requests and answers)."""


def encode_frame(packet: Any) -> bytes:
    """Serialise ``packet`` into one frame, header included.

    Raises one of :data:`ENCODE_ERRORS` if the packet holds something JSON cannot carry.
    """
    # Encoding, then joining the header, costs half what encoding into a growing bytearray
    # behind a reserved header does for the small frames of requests and answers.
    body = _encoder.encode(packet)
    return _pack_header(len(body)) + body


def decode_packet(body: bytes | memoryview) -> Packet:
    """Decode and validate one frame body; raises :class:`ProtocolError` if it is not a packet."""
    try:
        packet: Packet = _decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise _malformed(exc) from None
    return packet


# msgspec.DecodeError (and ValidationError) are ValueErrors; deep nesting raises RecursionError.
_DECODE_ERRORS = (ValueError, RecursionError)
# msgspec quotes the offending value ("Invalid value 'xxx…' - at `$.type`"): the error is logged
# and sent back to the peer, so a 16 MiB string must not make a 16 MiB log line and answer.
_MAX_ERROR_TEXT = 4000


def _malformed(exc: Exception) -> ProtocolError:
    if isinstance(exc, RecursionError):
        return ProtocolError("malformed frame: JSON nested too deeply")
    text = str(exc)
    if len(text) > _MAX_ERROR_TEXT:
        text = f"{text[: _MAX_ERROR_TEXT - 200]} […] {text[-150:]}"  # the end names the JSON path
    return ProtocolError(f"malformed frame: {text}")


def feed_through(
    get_buffer: Callable[[], memoryview], buffer_updated: Callable[[int], list[Packet]], data: bytes
) -> list[Packet]:
    """Copy ``data`` in through a ``get_buffer`` / ``buffer_updated`` pair (a decoder's, or a
    session's) as a reading transport would, and collect the packets."""
    packets: list[Packet] = []
    offset = 0
    while offset < len(data):
        target = get_buffer()
        chunk = min(len(target), len(data) - offset)
        target[:chunk] = data[offset : offset + chunk]
        del target  # a live slice would keep the next get_buffer from growing in place
        offset += chunk
        parsed = buffer_updated(chunk)
        if offset < len(data):
            # An event's payload views the buffer, which the next round reuses: copy it.
            for packet in parsed:
                if isinstance(packet, Event):
                    packet.payload = packet.payload.copy()
        packets.extend(parsed)
    return packets


class FrameDecoder:
    """Incremental frame parser over a growable, reusable receive buffer.

    Handles frames split across reads and many frames in one read. After the first protocol
    error it stops parsing and keeps the error in :attr:`error`; the connection must close.
    """

    __slots__ = ("_buffer", "_end", "_needed", "_start", "_view", "error", "max_frame_size", "max_packets")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self.max_packets = 0
        """Packets parsed per call at most (0: all there are); the rest stay buffered for the next
        call, so that a caller may change :attr:`max_frame_size` between packets (a session
        after its handshake)."""
        self._buffer = bytearray(_INITIAL_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._start = 0  # first unparsed byte
        self._end = 0  # one past the last received byte
        self._needed = 0  # size of the frame being waited for, header included
        self.error: ProtocolError | None = None

    @property
    def partial_bytes(self) -> int:
        """Bytes received of the frame not yet complete (header included); 0 between frames.

        Complete frames are parsed as soon as they arrive, so these are only the bytes of the
        frame being received: a growing count without packets is a peer still sending, or
        dripping, one frame."""
        return self._end - self._start

    @property
    def buffered_capacity(self) -> int:
        """Bytes of memory the receive buffer holds now."""
        return len(self._buffer)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Writable space at the end of the received bytes (``sizehint``, asyncio's, is ignored)."""
        end = self._end
        if not end:  # nothing pending, the usual case between frames: the whole buffer
            return self._view
        if len(self._buffer) - end < _MIN_READ_SIZE:
            self._make_room()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Packet]:
        """Account for ``nbytes`` written into :meth:`get_buffer`; return complete packets."""
        end = self._end + nbytes
        if self.error is not None:
            self._start = self._end = 0  # nothing is parsed after an error: drop what arrives
            return []
        buffer, start, limit = self._buffer, self._start, self.max_frame_size
        if end - start > HEADER_SIZE:
            size = _unpack_header(buffer, start)[0]
            if start + HEADER_SIZE + size == end and size <= limit and len(buffer) <= _SHRINK_ABOVE:
                # Exactly one whole frame (a request or an answer per read): the common case.
                try:
                    packet = _decoder.decode(self._view[start + HEADER_SIZE : end])
                except _DECODE_ERRORS:
                    pass  # the general path below notes the error
                else:
                    self._start = self._end = self._needed = 0
                    return [packet]
        packets: list[Packet] = []
        # locals: this loop runs for every frame of a pipelined peer's reads
        view, decode, unpack, append, max_packets = (
            self._view,
            _decoder.decode,
            _unpack_header,
            packets.append,
            self.max_packets,
        )
        while end - start >= HEADER_SIZE:
            size = unpack(buffer, start)[0]
            if size > limit:
                self.error = FrameTooLarge(f"frame of {size} bytes exceeds the limit of {limit} bytes")
                break
            frame_end = start + HEADER_SIZE + size
            if frame_end > end:  # the rest of this frame is still to come
                self._start, self._end, self._needed = start, end, HEADER_SIZE + size
                return packets
            try:
                append(decode(view[start + HEADER_SIZE : frame_end]))
            except _DECODE_ERRORS as exc:
                self.error = _malformed(exc)
                break
            start = frame_end
            if max_packets and len(packets) >= max_packets:
                break
        if start == end or self.error is not None:
            # Nothing pending, or nothing more will be parsed: later bytes are discarded.
            self._start = self._end = self._needed = 0
            if len(buffer) > _SHRINK_ABOVE:
                self._buffer = bytearray(_INITIAL_BUFFER_SIZE)
                self._view = memoryview(self._buffer)
        else:  # part of a header, or packets left for the next call (max_packets)
            self._start, self._end, self._needed = start, end, 0
        return packets

    def feed(self, data: bytes) -> list[Packet]:
        """Copy ``data`` in and parse it: the sans-IO entry point for tests and tools."""
        return feed_through(self.get_buffer, self.buffer_updated, data)

    def _make_room(self) -> None:
        pending = self._end - self._start
        # The frame being received (plus a read's worth for what follows it) is the most
        # this buffer ever needs; short of that, grow only in proportion to what arrived.
        # Both bounds leave at least _MIN_READ_SIZE free after the pending bytes.
        limit = max(self._needed, pending) + _MIN_READ_SIZE
        wanted = max(_INITIAL_BUFFER_SIZE, min(limit, 2 * pending + _GROWTH_SLACK))
        size = len(self._buffer)
        if wanted > size and self._start == 0 and self._extend(wanted - size):
            return
        if wanted > size or (size > _SHRINK_ABOVE and 4 * wanted <= size):
            new = bytearray(wanted)
            new[:pending] = self._view[self._start : self._end]
            self._buffer = new
            self._view = memoryview(new)
        elif self._start:
            self._buffer[:pending] = self._view[self._start : self._end]
        self._start = 0
        self._end = pending

    def _extend(self, extra: int) -> bool:
        """Grow the buffer in place, which lets ``realloc`` move pages rather than copy them:
        a large frame then costs about what one allocation of its size did. Impossible while
        someone still holds a slice of the buffer; the caller then copies."""
        self._view.release()
        try:
            self._buffer += bytes(extra)
        except BufferError:
            return False
        finally:
            self._view = memoryview(self._buffer)
        return True
