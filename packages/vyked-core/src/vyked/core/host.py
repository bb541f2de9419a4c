"""The process-wide host of the original vyked API: :class:`Host`.

Set ``Host.registry_host`` and friends, ``Host.attach_service(...)``, then ``Host.run()``, which
blocks until SIGINT or SIGTERM. :class:`Host` drives one process-wide
:class:`~vyked.core.service_host.ServiceHost`, which is also what clients created in plain
scripts use (see :meth:`Host.default`).

This module also re-exports :class:`ServiceHost`, :func:`parse_addresses` and
:func:`serve_until_signalled` from the modules that define them, where earlier releases had them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from vyked.core.addresses import DEFAULT_REGISTRY_PORT, Address, parse_addresses
from vyked.core.client import ServiceClient
from vyked.core.proctitle import set_process_title
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.serving import configure_logging, run_until_signalled, serve_until_signalled

__all__ = ["Host", "ServiceHost", "parse_addresses", "serve_until_signalled"]


class Host:
    """The process-wide host of the original vyked API.

    ::

        Host.registry_host = '127.0.0.1'
        Host.registry_port = 4500
        Host.attach_service(tcp_service)
        Host.run()
    """

    registry_host: ClassVar[str | Sequence[Address] | None] = None
    """One address (``"10.0.0.1"``), several (``"10.0.0.1:4500,10.0.0.2:4500"``), or a list of
    ``(host, port)`` pairs."""
    registry_port: ClassVar[int] = DEFAULT_REGISTRY_PORT
    pubsub_host: ClassVar[str | None] = None
    pubsub_port: ClassVar[int] = 6379
    pubsub_url: ClassVar[str | None] = None
    """A Redis URL (``redis://host:port/db``); takes precedence over pubsub_host/port."""
    name: ClassVar[str | None] = None
    secret: ClassVar[str | bytes | None] = None
    """The cluster secret (default: ``VYKED_SECRET`` / ``VYKED_SECRET_FILE``)."""
    drain_grace: ClassVar[float | None] = None
    """Seconds a stopping host lets requests in flight finish (default: ``VYKED_DRAIN_GRACE``,
    else 10; see :meth:`ServiceHost.stop`)."""
    metrics_port: ClassVar[int | None] = None
    """Serve ``/metrics``, ``/livez`` and ``/readyz`` on this port (0: a free one; default:
    ``VYKED_METRICS_PORT``, else none); needs ``pip install 'vyked-core[metrics]'``."""
    ronin: ClassVar[bool | None] = None
    """True: serve without a registry, as vyked 2.x's stand-alone mode (default: ``VYKED_RONIN``,
    else false). Nothing registers; the host's clients fail with
    :class:`~vyked.core.exceptions.RoninMode`."""

    _tcp_service: ClassVar[Service | None] = None
    _http_service: ClassVar[Service | None] = None
    _runtime: ClassVar[ServiceHost | None] = None

    @classmethod
    def configure(
        cls,
        name: str | None = None,
        registry_host: str | Sequence[Address] | None = None,
        registry_port: int | None = None,
        pubsub_host: str | None = None,
        pubsub_port: int | None = None,
        pubsub_url: str | None = None,
    ) -> None:
        """Set several class attributes at once; arguments left as None keep their value."""
        for attr, value in (
            ("name", name),
            ("registry_host", registry_host),
            ("registry_port", registry_port),
            ("pubsub_host", pubsub_host),
            ("pubsub_port", pubsub_port),
            ("pubsub_url", pubsub_url),
        ):
            if value is not None:
                setattr(cls, attr, value)

    @classmethod
    def attach_service(cls, service: Service) -> None:
        """Attach a TCP or HTTP service, by its kind."""
        if service.kind == "tcp":
            cls.attach_tcp_service(service)
        elif service.kind == "http":
            cls.attach_http_service(service)
        else:
            raise TypeError(f"cannot attach {service!r}: not a TCPService or HTTPService")

    @classmethod
    def attach_tcp_service(cls, service: Service) -> None:
        if cls._tcp_service is not None and cls._tcp_service is not service:
            raise ValueError(f"a TCP service is attached already ({cls._tcp_service!r}); a Host runs one")
        cls._tcp_service = service

    @classmethod
    def attach_http_service(cls, service: Service) -> None:
        if cls._http_service is not None and cls._http_service is not service:
            raise ValueError(f"an HTTP service is attached already ({cls._http_service!r}); a Host runs one")
        cls._http_service = service

    @classmethod
    def _pubsub(cls) -> str | None:
        if cls.pubsub_url:
            return cls.pubsub_url
        if cls.pubsub_host:
            return f"redis://{cls.pubsub_host}:{cls.pubsub_port}"
        return None

    @classmethod
    def default(cls) -> ServiceHost:
        """The process-wide :class:`ServiceHost`, built from the class attributes on first use.

        A host left from an event loop that has ended, with no service attached, is replaced,
        so scripts may call ``asyncio.run`` more than once.
        """
        runtime = cls._runtime
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if runtime is not None and runtime.loop is not None and runtime.loop is not loop and not runtime.services:
            runtime = None
        if runtime is None:
            runtime = ServiceHost(
                cls.registry_host,
                registry_port=cls.registry_port,
                pubsub=cls._pubsub(),
                name=cls.name or "",
                secret=cls.secret,
                drain_grace=cls.drain_grace,
                metrics_port=cls.metrics_port,
                ronin=cls.ronin,
            )
            cls._runtime = runtime
        return runtime

    @classmethod
    async def start(cls) -> ServiceHost:
        """Start the attached services in the running loop; returns the running host."""
        runtime = cls.default()
        for service in (cls._tcp_service, cls._http_service):
            if service is not None and service not in runtime.services:
                runtime.attach(service)
        await runtime.start()
        return runtime

    @classmethod
    async def stop(cls) -> None:
        """Stop the services and close every connection the process-wide host opened.

        Scripts that only call services end with ``await Host.stop()``.
        """
        runtime, cls._runtime = cls._runtime, None
        if runtime is not None:
            await runtime.stop()

    @classmethod
    def reset(cls) -> None:
        """Put the class back as new: every setting to its default, no service attached, no
        process-wide host. For test suites that use :class:`Host`, between tests (after
        ``await Host.stop()``; ``vyked.testing`` documents the ``vyked_clean_host`` fixture).

        Raises :class:`RuntimeError` while the process-wide host still runs in a running event
        loop (stop it first); one left from a loop that has ended is dropped.
        """
        runtime = cls._runtime
        if runtime is not None and runtime.running and runtime.loop is not None and runtime.loop.is_running():
            raise RuntimeError(f"Host.reset(): {runtime!r} is running: await Host.stop() first")
        cls.registry_host = None
        cls.registry_port = DEFAULT_REGISTRY_PORT
        cls.pubsub_host = None
        cls.pubsub_port = 6379
        cls.pubsub_url = None
        cls.name = None
        cls.secret = None
        cls.drain_grace = None
        cls.metrics_port = None
        cls.ronin = None
        cls._tcp_service = cls._http_service = None
        cls._runtime = None

    @classmethod
    def run(cls) -> None:
        """Start the attached services and serve until SIGINT or SIGTERM, on uvloop when it is
        installed (``VYKED_LOOP`` chooses: see :func:`~vyked.core.serving.loop_factory`).

        The process title becomes ``vyked_<name>_<node id>`` when ``setproctitle`` is installed
        (``vyked-core[proctitle]``), as in vyked 2.x."""
        configure_logging()
        services = [s.name for s in (cls._tcp_service, cls._http_service) if s is not None]
        set_process_title(cls.name or ",".join(dict.fromkeys(services)), cls.default().node_id)
        run_until_signalled(cls.start, cls.stop)


ServiceClient.default_host = Host.default
