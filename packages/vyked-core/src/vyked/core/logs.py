"""Logging helpers shared by every vyked package."""

from __future__ import annotations

import logging
from typing import Any

LOG_EVERY = 1000


def log_count(logger: logging.Logger, count: int, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message`` for the first of a series of like events and then every 1000th, so that
    a flood (events dropped by a full buffer) is visible without drowning the log. ``count``
    is the series' running total, including this one."""
    if count == 1 or count % LOG_EVERY == 0:
        logger.log(level, message, *args)
