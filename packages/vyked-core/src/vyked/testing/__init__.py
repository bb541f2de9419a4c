"""vyked's test kit for applications: what ``docs/testing.md`` documents, kept stable.

In the test's own event loop (with the pytest fixtures of the ``vyked`` plugin, or directly):

- :func:`started_hosts`: started :class:`~vyked.core.service_host.ServiceHost` objects on a
  registry, stopped afterwards (the ``vyked_host`` fixture);
- :func:`serve_http`: an ``HTTPService`` on a free loopback port without a registry, and its
  base URL (the ``vyked_http`` fixture);
- :class:`Inbox`, :func:`record`: wait until a handler (``@subscribe``, ``@api``...) has run;
- :class:`ClientStub`: a client whose requests answer canned values or raise given errors,
  recording what was sent, to replace a dependency in a unit test.

Real processes, for fault injection (SIGKILL, SIGSTOP, restart):

- :class:`ProcessRunner` (any Python program), :class:`RegistryProcess`
  (``python -m vyked.registry``), :class:`ServiceProcess` (a host finding the registry through
  ``VYKED_REGISTRY``), :class:`RedisServer` (a throwaway ``redis-server``);
- :func:`free_port`, :func:`wait_for_port`.

The pytest plugin (:mod:`vyked.core.pytest_plugin`, registered as ``vyked`` under the
``pytest11`` entry point) builds its fixtures on these. ``Host.reset()`` puts the
process-wide :class:`~vyked.core.host.Host` back to new between tests.
"""

from vyked.testing._hosts import HostFactory, ServeHTTP, serve_http, started_hosts
from vyked.testing._inbox import Call, Inbox, record
from vyked.testing._net import free_port, wait_for_port
from vyked.testing._processes import ProcessRunner, RegistryProcess, ServiceProcess
from vyked.testing._redis import RedisServer, find_redis_server, redis_supports_tls
from vyked.testing._stub import ClientStub

__all__ = [
    "Call",
    "ClientStub",
    "HostFactory",
    "Inbox",
    "ProcessRunner",
    "RedisServer",
    "RegistryProcess",
    "ServeHTTP",
    "ServiceProcess",
    "find_redis_server",
    "free_port",
    "record",
    "redis_supports_tls",
    "serve_http",
    "started_hosts",
    "wait_for_port",
]
