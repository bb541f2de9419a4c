"""Logging setup under the name vyked 2.x gave it: ``vyked.log.setup_logging``.

New code calls :func:`vyked.core.logs.configure_logging`; ``Host.run()`` calls it already.
"""

from __future__ import annotations

from vyked.core.logs import configure_logging

__all__ = ["configure_logging", "setup_logging"]


def setup_logging(identifier: str | None = None) -> None:
    """Log to stderr at ``$VYKED_LOG_LEVEL`` (default INFO) in ``$VYKED_LOG_FORMAT`` (``text``
    or ``json``), unless the application configured logging itself.

    2.x's ``setup_logging(identifier)`` read ``config_log.json`` and wrote files under
    ``logs/``; here ``identifier`` is accepted and ignored: JSON lines name the service and
    node themselves, and where logs go is the process manager's business (stderr).
    """
    del identifier
    configure_logging()
