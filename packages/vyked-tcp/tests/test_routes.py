"""Client routes (:mod:`vyked.tcp.routes`) over a real registry and real sockets: the pool's
route to a service is made once every instance is connected, requests go over it, and it is
retired when the instances or the connections change; circuit breakers send requests the
directory's way, around the unhealthy instance."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import pytest
from tcp_testservices import Calculator, CalculatorClient

from vyked import request
from vyked.core.instances import Instance
from vyked.core.pytest_plugin import HostFactory
from vyked.core.service_host import ServiceHost
from vyked.tcp.pool import POOL, ConnectionPool
from vyked.tcp.routes import Route


def pool_of(host: ServiceHost) -> ConnectionPool:
    return host.extension(POOL)


def route_of(host: ServiceHost, client: CalculatorClient) -> Route | None:
    return pool_of(host).route(client.name, client.version)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def who_answers(client: CalculatorClient, calls: int) -> collections.Counter[str]:
    return collections.Counter([await client.whoami() for _ in range(calls)])


async def connected_route(host: ServiceHost, client: CalculatorClient, instances: int) -> Route:
    """Call until every instance is connected; the route the pool then has."""
    for _ in range(2 * instances):
        await client.whoami()
    route = route_of(host, client)
    assert route is not None and len(route.connections) == instances
    return route


async def test_the_route_appears_once_connected_and_carries_the_requests(vyked_host: HostFactory) -> None:
    service = Calculator()
    await vyked_host(service)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    pool = pool_of(host)
    assert pool.route(client.name, client.version) is None  # known, but nothing connected yet
    assert pool.route("Nobody", "1") is None

    assert await client.whoami() == service.node_id  # opens the connection
    route = route_of(host, client)
    assert route is not None and route.current
    (ic,) = pool.connections.values()
    assert route.connections == [ic] and route.only is ic
    assert ic.instance.node_id == service.node_id
    assert route_of(host, client) is route  # kept while nothing changes

    call = client.whoami()  # sent at once, over the route's connection
    assert client._route is route
    assert len(ic.pending) == 1
    assert await call == service.node_id
    assert route.current

    await host.stop()  # the pool closes: its routes with it
    assert not route.current


async def test_a_new_instance_retires_the_route_and_then_takes_calls(vyked_host: HostFactory) -> None:
    first, second = Calculator(), Calculator()
    await vyked_host(first)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    old = await connected_route(host, client, 1)
    assert (await who_answers(client, 4)) == {first.node_id: 4}
    assert client._route is old

    await vyked_host(second)  # pushed by the registry
    await until(lambda: len(host.directory.instances("Calculator")) == 2)
    assert not old.current  # retired as soon as the instance was added

    answers = await who_answers(client, 10)
    assert answers == {first.node_id: 5, second.node_id: 5}
    new = route_of(host, client)
    assert new is not None and new is not old and new.current and new.only is None
    assert {ic.instance.node_id for ic in new.connections} == {first.node_id, second.node_id}
    assert client._route is new  # the calls went over it
    assert (await who_answers(client, 10)) == {first.node_id: 5, second.node_id: 5}


async def test_a_stopped_instance_retires_the_route_and_calls_go_to_the_other(vyked_host: HostFactory) -> None:
    staying, leaving = Calculator(), Calculator()
    await vyked_host(staying)
    leaving_host = await vyked_host(leaving)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    old = await connected_route(host, client, 2)
    assert (await who_answers(client, 4)) == {staying.node_id: 2, leaving.node_id: 2}

    await leaving_host.stop()
    await until(lambda: len(host.directory.instances("Calculator")) == 1)
    assert not old.current

    assert (await who_answers(client, 6)) == {staying.node_id: 6}
    new = route_of(host, client)
    assert new is not None and new.current
    assert [ic.instance.node_id for ic in new.connections] == [staying.node_id]
    assert client._route is new


@pytest.mark.parametrize("breaker", ["unreachable", "draining"])
async def test_while_a_breaker_is_set_calls_skip_the_unhealthy_instance(vyked_host: HostFactory, breaker: str) -> None:
    healthy, sick = Calculator(), Calculator()
    await vyked_host(healthy)
    await vyked_host(sick)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    route = await connected_route(host, client, 2)
    assert (await who_answers(client, 4)) == {healthy.node_id: 2, sick.node_id: 2}

    health = host.directory.health
    (sick_instance,) = [i for i in host.directory.instances("Calculator") if i.node_id == sick.node_id]
    getattr(health, breaker)(sick_instance)
    assert route.breakers  # the route sees the host's breakers: requests go the directory's way
    assert (await who_answers(client, 6)) == {healthy.node_id: 6}
    assert route_of(host, client) is route  # nothing about the connections changed

    health.forget(sick.node_id)  # healthy again: the route takes the calls, to both
    assert (await who_answers(client, 6)) == {healthy.node_id: 3, sick.node_id: 3}
    assert client._route is route and route.current


async def test_no_route_is_made_while_a_breaker_is_set(vyked_host: HostFactory) -> None:
    healthy, sick, newcomer = Calculator(), Calculator(), Calculator()
    await vyked_host(healthy)
    await vyked_host(sick)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    old = await connected_route(host, client, 2)
    (sick_instance,) = [i for i in host.directory.instances("Calculator") if i.node_id == sick.node_id]
    host.directory.health.draining(sick_instance)

    await vyked_host(newcomer)  # retires the route while the breaker is set
    await until(lambda: len(host.directory.instances("Calculator")) == 3)
    assert not old.current
    answers = await who_answers(client, 8)
    assert set(answers) == {healthy.node_id, newcomer.node_id}
    assert len(pool_of(host).connections) == 3  # every instance connected, yet:
    assert route_of(host, client) is None
    assert client._route is None

    host.directory.health.forget(sick.node_id)
    assert set(await who_answers(client, 6)) == {healthy.node_id, sick.node_id, newcomer.node_id}
    route = route_of(host, client)
    assert route is not None and len(route.connections) == 3 and client._route is route


async def test_a_call_right_after_the_routes_connection_closed_goes_through_a_new_one(
    vyked_host: HostFactory,
) -> None:
    service = Calculator()
    await vyked_host(service)
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    route = await connected_route(host, client, 1)
    assert client._route is route and route.current
    old = route.only
    assert old is not None and old.connection is not None

    old.connection.close()  # the pool hears of it only in a later pass of the loop
    assert route.current
    call = client.add(2, 2)  # in the same pass: must not use the closed connection
    assert await asyncio.wait_for(call, 5) == 4
    assert not route.current

    (new,) = pool_of(host).connections.values()
    assert new is not old and new.connection is not None and new.connection.ready
    assert await client.add(3, 3) == 6
    renewed = route_of(host, client)
    assert renewed is not None and renewed.only is new
    assert client._route is renewed

    assert new.connection is not None
    new.connection.close()
    await asyncio.wait_for(new.connection.wait_closed(), 5)  # the pool is told: no route now
    assert not renewed.current
    assert route_of(host, client) is None
    assert await client.add(4, 4) == 8


class SteeredClient(CalculatorClient):
    """Least-outstanding balancing with its own idea of an instance's load."""

    def __init__(self) -> None:
        super().__init__()
        self.busy: set[str] = set()

    def outstanding(self, instance: Instance) -> int:
        return 100 if instance.node_id in self.busy else 0


async def test_a_route_weighs_connections_by_the_clients_own_outstanding(vyked_host: HostFactory) -> None:
    first, second = Calculator(), Calculator()
    await vyked_host(first)
    await vyked_host(second)
    client = SteeredClient()
    host = await vyked_host(clients=(client,))
    route = await connected_route(host, client, 2)
    assert client._route is route
    client.busy = {first.node_id}  # as the directory's balancing would ask it
    assert (await who_answers(client, 8)) == {second.node_id: 8}
    client.busy = {second.node_id}
    assert (await who_answers(client, 8)) == {first.node_id: 8}
    assert client._route is route  # all over the route


class NamedCaller(CalculatorClient):
    """``@request`` methods that only return ``locals()``, with the two names that are no
    parameters: ``entity`` routes the request, ``app_name`` names the caller."""

    @request
    def whoami(self, entity: str | None = None, app_name: object = None) -> dict[str, Any]:
        return locals()

    @request
    def add(self, a: int, b: int, *, app_name: object = "billing") -> dict[str, Any]:
        return locals()


async def test_entity_and_app_name_of_a_locals_method_route_and_name_and_are_no_parameters(
    vyked_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    services = [Calculator(), Calculator()]
    for service in services:
        await vyked_host(service)
    client = NamedCaller()
    await vyked_host(clients=(client,))
    owners = {key: {await client.whoami(entity=key) for _ in range(4)} for key in "abcdefgh"}
    assert all(len(nodes) == 1 for nodes in owners.values())  # an entity sticks to its instance
    assert set().union(*owners.values()) == {s.node_id for s in services}  # and entities spread
    with caplog.at_level(logging.INFO, logger="vyked.tcp.dispatch"):
        assert await client.add(2, 3) == 5  # had app_name been sent as a parameter: InvalidParams
        assert await client.whoami(app_name=7) in {s.node_id for s in services}
    assert "first request from app 'billing'" in caplog.text
    assert "first request from app '7'" in caplog.text
