"""The process title of a host process, so that operators find vyked processes with ``ps``.

``Host.run()`` sets it to ``vyked_<name>_<node id>``, as vyked 2.x did, when the optional
``setproctitle`` package is installed (``pip install 'vyked-core[proctitle]'``); without it
nothing happens.
"""

from __future__ import annotations

import importlib
import logging

__all__ = ["process_title", "set_process_title"]

logger = logging.getLogger(__name__)


def process_title(name: str, node_id: str) -> str:
    """``vyked_<name>_<node id>``; spaces in ``name`` become ``-`` so the title stays one word."""
    return f"vyked_{'-'.join(name.split()) or 'host'}_{node_id}"


def set_process_title(name: str, node_id: str) -> bool:
    """Set the process title to :func:`process_title`; False (and nothing done) when
    ``setproctitle`` is not installed."""
    try:
        module = importlib.import_module("setproctitle")
    except ModuleNotFoundError as exc:
        if exc.name != "setproctitle":
            raise
        return False
    title = process_title(name, node_id)
    module.setproctitle(title)
    logger.debug("process title: %s", title)
    return True
