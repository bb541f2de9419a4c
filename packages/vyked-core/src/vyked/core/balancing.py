"""Choosing one instance among many: round-robin, least outstanding requests, or rendezvous
hashing for entities.

Rendezvous (highest random weight) hashing gives every caller in every process the same
instance for an entity, and when an instance goes only the entities it owned move.

Least outstanding requests uses the power of two choices: compare two candidates, keep the
less loaded. One of the two is the round-robin pick and wins ties, so that while every
instance is equally loaded (sequential calls) the order is plain round-robin, and a slow
instance, whose requests pile up, gets fewer.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

BALANCING = ("least_outstanding", "round_robin")
"""The balancing strategies a client may name (the first is the default)."""


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


def choose(
    candidates: Sequence[T],
    entity: object,
    balancer: RoundRobin,
    load: Callable[[T], int] | None,
    node_id: Callable[[T], str],
) -> T:
    """The candidate for one request: the owner of ``entity`` by rendezvous hashing when there
    is one, else ``balancer``'s round-robin pick, or (given ``load``) the less loaded of that
    pick and one other. ``candidates`` is not empty."""
    if entity is not None:
        return rendezvous_pick(str(entity), candidates, node_id)
    chosen = balancer.pick(candidates)
    if load is not None and len(candidates) > 1:
        chosen = least_loaded_of_two(chosen, candidates, load)
    return chosen


def least_loaded_of_two(preferred: T, candidates: Sequence[T], load: Callable[[T], int]) -> T:
    """``preferred`` or another candidate drawn at random, whichever has the lower ``load``
    (``preferred`` on a tie). ``candidates`` holds ``preferred`` and at least one other."""
    other = candidates[random.randrange(len(candidates) - 1)]
    if other is preferred:
        other = candidates[-1]
    return other if load(other) < load(preferred) else preferred
