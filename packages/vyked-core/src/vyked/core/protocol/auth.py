"""Proving knowledge of the cluster secret, both ways, without sending it.

The connecting side sends a fresh nonce in ``hello``; the accepting side answers with its own
nonce and a proof over both (``challenge``); the connecting side checks it and sends its own
proof (``auth``). Each proof is HMAC-SHA256 keyed by the secret over a side label and both
nonces, so neither proof can be replayed on another connection (the other side's nonce is new
each time) nor reflected back (the labels differ). See ``docs/protocol.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 16

SERVER = b"vyked-server"
CLIENT = b"vyked-client"


def new_nonce() -> str:
    """A fresh random nonce, hex."""
    return secrets.token_hex(NONCE_BYTES)


def proof(secret: bytes, side: bytes, client_nonce: str, server_nonce: str) -> str:
    """The proof ``side`` sends for this pair of nonces, hex."""
    message = b"|".join((side, client_nonce.encode(), server_nonce.encode()))
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(secret: bytes, side: bytes, client_nonce: str, server_nonce: str, given: str) -> bool:
    """Whether ``given`` is ``side``'s proof for these nonces (compared in constant time)."""
    if not given.isascii():  # compare_digest refuses non-ASCII str; such a proof is wrong anyway
        return False
    return hmac.compare_digest(proof(secret, side, client_nonce, server_nonce), given)
