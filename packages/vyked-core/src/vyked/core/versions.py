"""Version matching: which registered versions a client of a given version may reach.

A client of version ``1`` reaches instances registered as ``1``, ``1.0``, ``1.4.2``: an exact
match first, otherwise the highest version with the same major, never another major.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalize(version: object) -> str:
    """Versions are strings on the wire; ``1`` and ``"1"`` mean the same."""
    return str(version).strip()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: numeric parts compare as numbers, others as text after all numbers."""
    parts: list[tuple[int, int | str]] = []
    for part in version.split("."):
        parts.append((0, int(part)) if part.isdigit() else (1, part))
    return tuple(parts)


def major(version: str) -> str:
    return version.split(".", 1)[0]


def best_version(wanted: str, available: Iterable[str]) -> str | None:
    """The version a client asking for ``wanted`` should use among ``available``, if any."""
    candidates = set(available)
    if wanted in candidates:
        return wanted
    same_major = [v for v in candidates if major(v) == major(wanted)]
    if not same_major:
        return None
    return max(same_major, key=version_key)
