"""Helpers shared by the cross-package tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vyked.core.testing import ProcessRunner

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


async def wait_output(proc: ProcessRunner, text: str, timeout: float = 15.0) -> None:
    """Wait, without blocking the loop, until ``proc`` has printed ``text``."""
    await asyncio.to_thread(proc.wait_for_output, text, timeout)
