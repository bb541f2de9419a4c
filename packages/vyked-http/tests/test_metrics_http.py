"""Metrics of HTTP hosts: requests by endpoint and status, the same figures as ``/_stats``,
the callers' ``app_name``, and HTTP client calls; scraped over HTTP after real requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vyked import HTTPService, HTTPServiceClient, Request, Response, ServiceHost, get
from vyked.core.pytest_plugin import HostFactory
from vyked.core.testing import http_get

pytest.importorskip("prometheus_client", reason="needs vyked-core[metrics]")
from prometheus_client.parser import text_string_to_metric_families

METRICS = {"metrics_port": 0, "metrics_host": "127.0.0.1"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Shop(HTTPService):
    def __init__(self) -> None:
        super().__init__("Shop", 2, "127.0.0.1", 0)

    @get(path="/items/{name}")
    async def item(self, request: Request) -> Response:
        return web.json_response({"name": request.match_info["name"]})

    @get(path="/broken")
    async def broken(self, request: Request) -> Response:
        raise RuntimeError("broken on purpose")

    @get(path="/missing")
    def missing(self, request: Request) -> Response:
        raise web.HTTPNotFound()


class ShopClient(HTTPServiceClient):
    def __init__(self) -> None:
        super().__init__("Shop", 2)

    @get()
    def item(self, name: str) -> dict[str, Any]:
        path = f"/items/{name}"
        app_name = "checkout"
        return locals()


async def scrape(host: ServiceHost) -> Samples:
    status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{host.metrics_port}/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_by_endpoint_and_status_are_the_stats_figures(vyked_host: HostFactory) -> None:
    shop = Shop()
    host = await vyked_host(shop, **METRICS)
    async with aiohttp.ClientSession() as http:
        for name in ("a", "b", "c"):
            async with http.get(f"{shop.url}/items/{name}", headers={"X-Vyked-App": "web"}) as answer:
                assert answer.status == 200
        async with http.get(f"{shop.url}/broken") as answer:
            assert answer.status == 500
        async with http.get(f"{shop.url}/missing") as answer:
            assert answer.status == 404
        async with http.get(f"{shop.url}/_stats") as answer:
            stats = json.loads(await answer.text())

    found = await scrape(host)
    labels = {"service": "Shop", "version": "2"}
    assert value(found, "vyked_http_requests_total", **labels, endpoint="item", status="200") == 3
    assert value(found, "vyked_http_requests_total", **labels, endpoint="broken", status="500") == 1
    assert value(found, "vyked_http_requests_total", **labels, endpoint="missing", status="404") == 1
    assert value(found, "vyked_http_handler_failures_total", **labels, endpoint="broken", failure="error") == 1
    assert value(found, "vyked_http_request_duration_seconds_count", **labels, endpoint="item") == 3
    assert value(found, "vyked_http_request_duration_seconds_bucket", **labels, endpoint="item", le="+Inf") == 3
    assert value(found, "vyked_server_requests_in_flight", kind="http", **labels, endpoint="") == 0
    by_app = {"kind": "http", **labels, "endpoint": "item", "app": "web"}
    assert value(found, "vyked_server_requests_by_app_total", **by_app) == 3

    # /_stats reads the same counters
    item = stats["endpoints"]["item"]
    assert item["requests"] == 3 and item["status"] == {"2xx": 3}
    assert item["latency_ms"]["count"] == 3
    assert stats["endpoints"]["broken"]["errors"] == 1
    assert stats["endpoints"]["missing"]["status"] == {"4xx": 1}


async def test_http_client_calls_are_counted(vyked_host: HostFactory) -> None:
    shop = Shop()
    served = await vyked_host(shop, **METRICS)
    client = ShopClient()
    caller = await vyked_host(clients=(client,), **METRICS)
    for name in ("x", "y"):
        response = await client.item(name)
        assert (await response.json()) == {"name": name}
    response = await client.request("GET", "/broken")
    assert response.status == 500

    calls = await scrape(caller)
    labels = {"kind": "http", "service": "Shop", "version": "2"}
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="item", outcome="ok") == 2
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="GET", outcome="ok") == 1
    assert value(calls, "vyked_client_request_duration_seconds_count", **labels, endpoint="item", outcome="ok") == 2
    # the client's app_name reaches the service's metrics
    found = await scrape(served)
    assert value(found, "vyked_server_requests_by_app_total", **labels, endpoint="item", app="checkout") == 2
    assert value(found, "vyked_http_requests_total", service="Shop", version="2", endpoint="item", status="200") == 2
