"""The vyked wire protocol, sans-IO: packet definitions and length-prefixed JSON framing."""

from vyked.core.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
    decode_packet,
    encode_frame,
    encode_payload,
)
from vyked.core.protocol.packets import PROTOCOL_VERSION, Packet

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "Packet",
    "decode_packet",
    "encode_frame",
    "encode_payload",
]
