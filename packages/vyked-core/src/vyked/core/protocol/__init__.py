"""The vyked wire protocol, sans-IO: packets, length-prefixed JSON framing, and the session
state machine (handshake, ping, errors) that both ends of a connection run."""

from vyked.core.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    ENCODE_ERRORS,
    FrameDecoder,
    decode_packet,
    encode_frame,
    encode_payload,
    frame_header,
)
from vyked.core.protocol.packets import PROTOCOL_VERSION, Packet
from vyked.core.protocol.session import Session

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ENCODE_ERRORS",
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "Packet",
    "Session",
    "decode_packet",
    "encode_frame",
    "encode_payload",
    "frame_header",
]
