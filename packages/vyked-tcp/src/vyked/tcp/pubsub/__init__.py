"""Publish-subscribe for TCP services: ``@publish`` on services, ``@subscribe`` and
``@xsubscribe`` on clients.

- :mod:`.events`: payload checking and encoding, event keys, names in Redis
- :mod:`.subscriptions`: a host's subscriptions and running their handlers
- :mod:`.hub`: :class:`PubSub`, the per-host object that ties them to a transport
- :mod:`.transport`: the transport interface; :mod:`.embedded_transport` (vyked connections)
  and :mod:`.redis_transport` (Redis, imported only when a Redis URL is configured)

See ``docs/pubsub.md`` for the delivery modes and what each transport guarantees.
"""

from vyked.tcp.pubsub.events import EventKey
from vyked.tcp.pubsub.hub import PubSub
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.transport import EventTransport

__all__ = ["EventKey", "EventTransport", "PubSub", "PubSubSettings", "PubSubStats"]
