"""Request-response end to end: registry, service and client hosts over loopback sockets."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import pytest
from tcp_testservices import Calculator, CalculatorClient, PatientClient, SloppyClient

from vyked import (
    ConnectionLost,
    InvalidParams,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    TCPServiceClient,
    UnknownEndpoint,
    request,
)
from vyked.core.pytest_plugin import HostFactory
from vyked.tcp.pool import POOL


async def test_every_handler_style(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    assert await client.add(2, 3) == 5
    assert await client.multiply(a=4, b=5) == 20
    assert await client.slow_square(7) == 49


async def test_remote_exception_carries_type_message_and_args(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    with pytest.raises(RemoteError) as info:
        await client.fail("boom")
    assert info.value.remote_type == "ValueError"
    assert info.value.message == "('boom', 42)"
    assert info.value.remote_args == ["boom", 42]
    # the connection is fine afterwards
    assert await client.add(1, 1) == 2


async def test_unserialisable_result_is_a_remote_type_error(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    with pytest.raises(RemoteError, match="JSON cannot carry") as info:
        await client.unserialisable()
    assert info.value.remote_type == "TypeError"


async def test_api_timeout_and_request_timeout(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"stuck did not finish within its timeout of 0.2 s"):
        await client.stuck()
    with pytest.raises(RequestTimeout, match=r"Calculator.sleep got no answer.* within 0.3 s"):
        await client.sleep(5)
    assert time.monotonic() - started < 2
    assert isinstance(RequestTimeout("x"), TimeoutError)


async def test_unknown_endpoint_and_bad_params(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client, sloppy = CalculatorClient(), SloppyClient()
    await vyked_host(clients=(client, sloppy))
    with pytest.raises(UnknownEndpoint, match="Calculator has no endpoint 'divide'"):
        await client.divide(1, 2)
    with pytest.raises(InvalidParams, match="Calculator.add: missing a required argument: 'b'"):
        await sloppy.add(1)
    with pytest.raises(InvalidParams, match="not JSON-serialisable"):
        await client.add(1, object())  # type: ignore[arg-type]
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidParams, match="not JSON-serialisable"):
        await client.add(1, cyclic)  # type: ignore[arg-type]
    assert await client.add(1, 2) == 3  # nothing was sent; the connection is fine
    with pytest.raises(TypeError):
        client.add(1)  # type: ignore[call-arg]


async def test_no_instance_is_service_unavailable_at_once(vyked_host: HostFactory) -> None:
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="no live instance of 'Calculator'"):
        await client.add(1, 2)
    assert time.monotonic() - started < 1
    await vyked_host(Calculator(version="1.3"))
    v2 = CalculatorClient(version=2)
    await vyked_host(clients=(v2,))
    with pytest.raises(ServiceUnavailable, match="matches version '2'; registered: 1.3"):
        await v2.add(1, 2)


async def test_deprecated_api_warns_the_caller(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    with pytest.warns(DeprecationWarning, match=r"Calculator.plus is deprecated; use add instead"):
        assert await client.plus(1, 2) == 3


async def test_a_deprecation_turned_error_leaves_the_answer_with_its_caller(vyked_host: HostFactory) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    await client.add(1, 2)  # connected: the answer is read in the connection's callback
    loop = asyncio.get_running_loop()
    raised: list[object] = []
    loop.set_exception_handler(lambda loop, context: raised.append(context.get("exception")))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # as ``-W error`` does
            assert await asyncio.wait_for(client.plus(1, 2), 2) == 3
    finally:
        loop.set_exception_handler(None)
    assert any(isinstance(error, DeprecationWarning) for error in raised)  # the read's callback raised it


async def test_round_robin_across_instances_and_push_of_new_ones(vyked_host: HostFactory) -> None:
    first, second = Calculator(), Calculator()
    await vyked_host(first)
    await vyked_host(second)
    client = CalculatorClient()
    caller = await vyked_host(clients=(client,))
    answers = [await client.whoami() for _ in range(10)]
    assert sorted(set(answers)) == sorted({first.node_id, second.node_id})
    assert answers.count(first.node_id) == 5
    third = Calculator()
    await vyked_host(third)  # pushed by the registry, no polling
    async with asyncio.timeout(10):
        while len(caller.directory.instances("Calculator")) < 3:
            await asyncio.sleep(0.01)
    assert third.node_id in {await client.whoami() for _ in range(6)}


async def test_entities_stick_to_one_instance_in_every_process(vyked_host: HostFactory) -> None:
    services = [Calculator() for _ in range(3)]
    for service in services:
        await vyked_host(service)
    a, b = CalculatorClient(), CalculatorClient()
    await vyked_host(clients=(a,))
    await vyked_host(clients=(b,))
    entities = [f"user-{i}" for i in range(30)]
    owners = {e: await a.whoami(entity=e) for e in entities}
    assert owners == {e: await b.whoami(entity=e) for e in entities}
    assert len(set(owners.values())) == 3
    # removing one instance moves only its entities
    gone = services[0]
    assert gone.host is not None
    await gone.host.stop()
    await asyncio.sleep(0.2)
    after = {e: await a.whoami(entity=e) for e in entities}
    for entity in entities:
        if owners[entity] != gone.node_id:
            assert after[entity] == owners[entity]
        else:
            assert after[entity] != gone.node_id


async def test_requests_in_flight_fail_at_once_when_the_instance_dies(vyked_host: HostFactory) -> None:
    service = Calculator()
    host = await vyked_host(service)
    client = PatientClient()
    await vyked_host(clients=(client,))
    pending = [client.sleep(20) for _ in range(5)]
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await host.stop(grace=0)  # no drain: the handlers are cut off
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, ConnectionLost) for r in results), results
    assert time.monotonic() - started < 2


async def test_pipelined_requests_on_one_connection(vyked_host: HostFactory) -> None:
    service = Calculator()
    await vyked_host(service)
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    results = await asyncio.gather(*(client.add(i, i) for i in range(2000)))
    assert results == [2 * i for i in range(2000)]
    assert service.calls == 2000


async def test_service_clients_attribute_declares_dependencies(vyked_host: HostFactory, vyked_registry: object) -> None:
    await vyked_host(Calculator())
    front = Calculator()
    client = CalculatorClient()
    front.clients = [client]
    await vyked_host(front)
    assert client.host is front.host
    assert await client.add(1, 2) == 3
    registry_state = vyked_registry.state  # type: ignore[attr-defined]
    assert [r.instance.node_id for r in registry_state.dependents_of("Calculator")] == [front.node_id]


class HastyClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Calculator", 1)

    @request(timeout=0.3)
    def sleep(self, seconds: float) -> dict[str, Any]:
        return locals()


async def test_mixed_timeouts_on_one_connection_each_end_on_time(vyked_host: HostFactory) -> None:
    """Timeouts share one timer per connection: a short one sent after long ones still ends
    on time, and the long ones are not cut short."""
    await vyked_host(Calculator())
    patient, hasty = PatientClient(), HastyClient()
    host = await vyked_host(clients=(patient, hasty))
    assert await patient.sleep(0) == "slept"  # the connection is open: both share it
    slow = [patient.sleep(1.0) for _ in range(3)]
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await hasty.sleep(5)
    assert 0.25 < time.monotonic() - started < 0.6
    assert await asyncio.gather(*slow) == ["slept"] * 3
    assert len(host.extension(POOL).connections) == 1


async def test_a_call_right_after_its_connection_closed_goes_through_a_new_one(vyked_host: HostFactory) -> None:
    """Between a connection's close and the loop telling it is lost, a call must not find it
    usable: nothing would be sent, and the caller would get ConnectionLost for a request that
    certainly did not run."""
    await vyked_host(Calculator())
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    assert await client.add(1, 2) == 3
    (old,) = host.extension(POOL).connections.values()
    assert old.connection is not None
    old.connection.close()  # connection_lost comes in a later pass of the loop
    call = client.add(2, 2)  # in the same pass: must not raise, must not use the closed one
    assert await asyncio.wait_for(call, 5) == 4
    (new,) = host.extension(POOL).connections.values()
    assert new is not old
