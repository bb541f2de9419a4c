"""Choosing one instance among many: round-robin, or rendezvous hashing for entities.

Rendezvous (highest random weight) hashing gives every caller in every process the same
instance for an entity, and when an instance goes only the entities it owned move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def rendezvous_weight(entity: str, node_id: str) -> int:
    digest = hashlib.blake2b(f"{entity}\x00{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_pick(entity: str, candidates: Sequence[T], node_id: Callable[[T], str]) -> T:
    """The candidate whose ``node_id`` weighs most for ``entity``."""
    return max(candidates, key=lambda c: rendezvous_weight(entity, node_id(c)))


class RoundRobin:
    """Cycles through a list that may change between calls."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[T]) -> T:
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]
