"""``TCPServiceClient``: the caller's stand-in for a remote TCP service."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from vyked.core.exceptions import ConnectionLost, RequestTimeout, ServiceUnavailable
from vyked.core.host import ServiceHost
from vyked.core.instances import Instance
from vyked.core.service import ServiceClient
from vyked.tcp.decorators import EndpointSpec, collect_specs
from vyked.tcp.pool import ConnectionPool
from vyked.tcp.pubsub.hub import attach_client


class TCPServiceClient(ServiceClient):
    """Subclass it, give it ``@request`` methods (and ``@subscribe`` handlers)::

        class IdentityClient(TCPServiceClient):
            def __init__(self):
                super().__init__("IdentityService", 1)

            @request
            def create(self, user_name, password):
                return locals()

    ``await client.create("ann", "secret")`` then calls ``create`` on an instance of
    IdentityService version 1, chosen by round-robin (or by ``entity``, if the method's dict
    holds one).
    """

    kind = "tcp"
    _subscriptions: ClassVar[dict[str, tuple[str, EndpointSpec]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._subscriptions = {**collect_specs(cls, "subscribe"), **collect_specs(cls, "xsubscribe")}

    def bind(self, host: ServiceHost) -> None:
        super().bind(host)
        if self._subscriptions:
            attach_client(host, self)

    def _send_request(self, endpoint: str, params: Any, timeout: float) -> asyncio.Future[Any]:
        if not isinstance(params, dict):
            raise TypeError(
                f"@request method {endpoint}() must return a dict of parameters (return locals()), "
                f"got {type(params).__name__}"
            )
        params.pop("self", None)
        entity = params.pop("entity", None)
        host = self.host
        instance: Instance | None = None
        if host is not None and host.running and self.name in host.directory.known:
            pool = host.extension(ConnectionPool.KEY, ConnectionPool)
            try:
                instance = host.directory.select(self.name, self.version, "tcp", entity, pool.usable_filter())
            except ServiceUnavailable as exc:
                failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                return failed
            ic = pool.ready(instance)
            if ic is not None:
                return ic.request(self.name, endpoint, params, timeout)
        return asyncio.ensure_future(self._send_after_setup(endpoint, params, entity, timeout, instance))

    async def _send_after_setup(
        self, endpoint: str, params: dict[str, Any], entity: Any, timeout: float, instance: Instance | None
    ) -> Any:
        """The slow path: start the host, learn the instances, or connect first."""
        try:
            async with asyncio.timeout(timeout) as scope:
                return await self._connect_and_send(endpoint, params, entity, timeout, instance)
        except TimeoutError:
            if scope.expired():
                raise RequestTimeout(f"{self.name}.{endpoint} got no answer within {timeout} s") from None
            raise

    async def _connect_and_send(
        self, endpoint: str, params: dict[str, Any], entity: Any, timeout: float, instance: Instance | None
    ) -> Any:
        host = await self.resolve_host()
        pool = host.extension(ConnectionPool.KEY, ConnectionPool)
        while True:
            if instance is None:
                instance = host.directory.select(self.name, self.version, "tcp", entity, pool.usable_filter())
            try:
                ic = await pool.connect(instance)
            except ConnectionLost:
                instance = None  # now marked unreachable: pick another, or fail with ServiceUnavailable
                continue
            return await ic.request(self.name, endpoint, params, timeout)
