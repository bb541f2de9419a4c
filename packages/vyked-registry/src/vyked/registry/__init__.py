"""vyked-registry: the service registry. Run it with ``python -m vyked.registry``."""

from vyked.registry.__about__ import __version__
from vyked.registry.server import Registry

__all__ = ["Registry", "__version__"]
