"""The installed ``vyked`` console script against a real registry, real service processes
(themselves started with ``vyked run``) and a real Redis: run, call, publish, status, schema,
and the exit codes of docs/cli.md."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_support import output_mark, wait_for_line

from vyked import ServiceHost, TCPServiceClient, request
from vyked.core.status import fetch_status
from vyked.core.testing import ProcessRunner, RedisServer, free_port

pytest.importorskip("typer", reason="the vyked command needs vyked-core[cli]")

VYKED = Path(sys.executable).parent / "vyked"
SERVICES = Path(__file__).parent / "cli_services.py"
STARTED = "host started: "

pytestmark = pytest.mark.skipif(not VYKED.exists(), reason=f"no vyked console script beside {sys.executable}")


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment less its VYKED_* variables, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VYKED_")}
    env.update(variables)
    return env


async def vyked(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``vyked ARGS`` to its end, without blocking the loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(VYKED), *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(target, env)``: ``vyked run TARGET`` as a process, once its host has started;
    every one is stopped after the test."""
    started: list[ProcessRunner] = []

    def start(*args: str, env: dict[str, str], ready: str = STARTED) -> ProcessRunner:
        proc = ProcessRunner(str(VYKED), "run", *args, env=env)
        proc.env = {**env, "PYTHONUNBUFFERED": "1"}  # exactly env: no VYKED_* from outside
        started.append(proc.start())
        wait_for_line(proc, re.escape(ready), timeout=60)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def registry_env(registry_process: int) -> dict[str, str]:
    return clean_env(VYKED_REGISTRY=f"127.0.0.1:{registry_process}")


async def test_run_call_and_status(serve: Any, registry_env: dict[str, str], registry_process: int) -> None:
    serve(f"{SERVICES}:Calculator", env=registry_env)

    added = await vyked("call", "Calculator.add", '{"a": 2, "b": 40}', env=registry_env)
    assert (added.returncode, added.stdout.strip()) == (0, "42"), added.stderr
    # a default parameter; the version given (major 1 reaches 1.2); JSON for scripts
    defaulted = await vyked("call", "Calculator:1.add", '{"a": 2}', "--json", env=registry_env)
    assert (defaulted.returncode, json.loads(defaulted.stdout)) == (0, 3)
    norm = await vyked(
        "call", "Calculator.norm", "-", "--json", env=registry_env, stdin='{"point": {"x": 3, "y": 4}, "scale": 2}'
    )
    assert json.loads(norm.stdout) == {"norm": 10.0}
    nested = await vyked(
        "call", "Calculator.echo", '{"value": {"list": [1, "two", null], "ok": true}}', env=registry_env
    )
    assert json.loads(nested.stdout) == {"list": [1, "two", None], "ok": True}  # indented JSON for people

    status = await vyked("status", "--json", env=registry_env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["type"] == "status_report"
    (instance,) = report["instances"]
    assert instance["instance"]["service"] == "Calculator" and instance["instance"]["version"] == "1.2"
    assert instance["state"] == "active"
    # for people (not a terminal here): the table of vyked-registry status
    table = await vyked("status", env=registry_env)
    header, row, footer = table.stdout.strip().splitlines()
    assert header.split() == [
        "SERVICE",
        "VERSION",
        "TYPE",
        "ADDRESS",
        "NODE",
        "STATE",
        "UPTIME",
        "DOWNTIME",
        "HEARTBEAT",
    ]
    assert row.split()[:3] == ["Calculator", "1.2", "tcp"] and "active" in row.split()
    assert footer.startswith(f"registry {report['registry']}: 1 instance(s)")
    # --registry wins over VYKED_REGISTRY; a dead registry listed first is skipped
    dead = free_port()
    both = await vyked(
        "status", "--json", "--registry", f"127.0.0.1:{dead},127.0.0.1:{registry_process}",
        env=clean_env(VYKED_REGISTRY=f"127.0.0.1:{free_port()}"),
    )  # fmt: skip
    assert both.returncode == 0 and json.loads(both.stdout)["registry"] == report["registry"]


async def test_call_exit_codes(serve: Any, registry_env: dict[str, str]) -> None:
    serve(f"{SERVICES}:Calculator", env=registry_env)

    failed = await vyked("call", "Calculator.fail", '{"message": "boom"}', env=registry_env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.strip() == "vyked call: Calculator.fail: ValueError: boom"
    as_json = await vyked("call", "Calculator.fail", '{"message": "boom"}', "--json", env=registry_env)
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert (error["type"], error["message"], error["code"], error["exit_code"]) == (
        "ValueError",
        "boom",
        "remote_error",
        1,
    )

    unknown_endpoint = await vyked("call", "Calculator.divide", "{}", "--json", env=registry_env)
    assert unknown_endpoint.returncode == 1
    assert json.loads(unknown_endpoint.stdout)["error"]["type"] == "UnknownEndpoint"
    bad_params = await vyked("call", "Calculator.add", '{"b": 1}', env=registry_env)
    assert bad_params.returncode == 1 and "InvalidParams" in bad_params.stderr and "'a'" in bad_params.stderr

    unknown_service = await vyked("call", "Nobody.add", '{"a": 1}', "--json", env=registry_env)
    assert unknown_service.returncode == 3
    assert json.loads(unknown_service.stdout)["error"]["type"] == "ServiceUnavailable"
    wrong_major = await vyked("call", "Calculator:2.add", '{"a": 1}', env=registry_env)
    assert wrong_major.returncode == 3, wrong_major.stderr

    sent = time.monotonic()
    slow = await vyked("call", "Calculator.slow", '{"seconds": 30}', "--timeout", "0.5", "--json", env=registry_env)
    assert slow.returncode == 4
    assert json.loads(slow.stdout)["error"]["exit_code"] == 4
    assert time.monotonic() - sent < 20  # the timeout, plus starting Python, not the 30 s

    bad_json = await vyked("call", "Calculator.add", "{a: 1}", env=registry_env)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
    no_registry = await vyked(
        "call", "Calculator.add", '{"a": 1}', "--registry", f"127.0.0.1:{free_port()}", env=registry_env
    )
    assert no_registry.returncode == 3 and "RegistryUnavailable" in no_registry.stderr


async def test_run_exit_codes_without_a_registry_or_a_service() -> None:
    port = free_port()
    result = await vyked("run", f"{SERVICES}:Calculator", env=clean_env(VYKED_REGISTRY=f"127.0.0.1:{port}"))
    assert result.returncode == 3
    assert f"127.0.0.1:{port}" in result.stderr and "RegistryUnavailable" in result.stderr
    needs = await vyked("run", f"{SERVICES}:NeedsArguments", env=clean_env(VYKED_REGISTRY=f"127.0.0.1:{port}"))
    assert needs.returncode == 2 and "needs arguments" in needs.stderr


async def test_run_finds_every_service_of_a_module_and_stops_cleanly(
    serve: Any, registry_env: dict[str, str], registry_process: int
) -> None:
    # a dotted module name, found on PYTHONPATH; no ATTR: every service class that takes no arguments
    env = {**registry_env, "PYTHONPATH": str(SERVICES.parent)}
    proc = serve("cli_services", env=env, ready=STARTED + "tcp Calculator, tcp Listener, http Pages")
    report = await fetch_status("127.0.0.1", registry_process)
    assert sorted((s.instance.service, s.instance.kind, s.state) for s in report.instances) == [
        ("Calculator", "tcp", "active"),
        ("Listener", "tcp", "active"),
        ("Pages", "http", "active"),
    ]
    assert "NeedsArguments" not in proc.output()

    proc.send_signal(signal.SIGTERM)
    assert proc.process is not None and await asyncio.to_thread(proc.process.wait, 30) == 0
    assert "drained in" in proc.output()
    after = await fetch_status("127.0.0.1", registry_process)
    assert {s.state for s in after.instances} <= {"draining", "down"}


async def test_publish_embedded_reaches_broadcast_and_exclusive_subscribers(
    serve: Any, registry_env: dict[str, str]
) -> None:
    listener = serve(f"{SERVICES}:Listener", env=registry_env)

    mark = output_mark(listener)
    published = await vyked(
        "publish", "Calculator:1.computed", '{"expression": "6*7", "result": 42}', "--subscribers", "1", "--json",
        env=registry_env,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout) == {
        "published": True, "service": "Calculator", "version": "1", "event": "computed",
        "transport": "embedded", "subscribers": 1,
    }  # fmt: skip
    line = wait_for_line(listener, r"received computed (.*)$", since=mark)
    assert json.loads(line.group(1)) == {"expression": "6*7", "result": 42}

    mark = output_mark(listener)
    job = await vyked("publish", "Calculator:1.job", '{"n": 7}', env=registry_env)  # waits until subscribers settle
    assert job.returncode == 0, job.stderr
    assert job.stdout.strip() == "published Calculator:1.job to 1 subscribing host"
    assert json.loads(wait_for_line(listener, r"handled job (.*)$", since=mark).group(1)) == {"n": 7}

    # too few subscribers within --wait: nothing published, exit 3
    mark = output_mark(listener)
    refused = await vyked(
        "publish", "Calculator:1.computed", '{"expression": "x", "result": 0}', "--subscribers", "2", "--wait", "0.5",
        env=registry_env,
    )  # fmt: skip
    assert refused.returncode == 3 and "nothing was published" in refused.stderr
    await asyncio.sleep(0.3)
    assert "received computed" not in listener.output()[mark:]

    # without a version, and no instance registered to take it from: say so
    unversioned = await vyked("publish", "Calculator.computed", "{}", env=registry_env)
    assert unversioned.returncode == 3 and "Calculator:VERSION.EVENT" in unversioned.stderr


class CalculatorClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Calculator", "1.2")

    @request
    def add(self, a: int, b: int) -> dict[str, Any]:
        return locals()


async def test_the_publishing_instance_sends_callers_to_the_real_ones(
    serve: Any, registry_env: dict[str, str], registry_process: int
) -> None:
    serve(f"{SERVICES}:Calculator", env=registry_env)
    # no subscriber will come: the publisher stays registered for --wait seconds, then gives up
    publisher = ProcessRunner(
        str(VYKED), "publish", "Calculator.computed", '{"expression": "", "result": 0}', "--subscribers", "1",
        "--wait", "8", env=registry_env,
    )  # fmt: skip
    publisher.env = {**registry_env, "PYTHONUNBUFFERED": "1"}
    publisher.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            report = await fetch_status("127.0.0.1", registry_process)
            live = [s for s in report.instances if s.instance.service == "Calculator" and s.state == "active"]
            if len(live) == 2:
                break
            assert time.monotonic() < deadline, publisher.output()
            await asyncio.sleep(0.05)
        assert {s.instance.version for s in live} == {"1.2"}  # the publisher took the registered version
        client = CalculatorClient()
        async with ServiceHost(f"127.0.0.1:{registry_process}") as host:
            host.bind_client(client)
            await host.watch("Calculator")
            assert len(host.directory.instances("Calculator")) == 2
            answers = [await client.add(n, 1) for n in range(20)]
            # one instance refused as draining (the publisher), and is skipped since
            health = host.directory.health
            assert sorted(health.state(i.node_id) for i in host.directory.instances("Calculator")) == [
                "closed",
                "draining",
            ]
        assert answers == [n + 1 for n in range(20)]  # refused as draining by the publisher, answered by the service
        assert publisher.process is not None and await asyncio.to_thread(publisher.process.wait, 30) == 3
    finally:
        publisher.stop()


async def test_publish_over_redis_needs_no_registry(
    serve: Any, registry_env: dict[str, str], redis_server: RedisServer
) -> None:
    listener = serve(f"{SERVICES}:Listener", env={**registry_env, "VYKED_PUBSUB": redis_server.url})
    nowhere = clean_env(VYKED_REGISTRY=f"127.0.0.1:{free_port()}")  # the registry is not needed to publish to Redis

    mark = output_mark(listener)
    published = await vyked(
        "publish", "Calculator:1.computed", '{"expression": "r", "result": 1.5}', "--pubsub", redis_server.url,
        "--json", env=nowhere,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["transport"] == "redis"
    assert json.loads(wait_for_line(listener, r"received computed (.*)$", since=mark).group(1)) == {
        "expression": "r",
        "result": 1.5,
    }
    mark = output_mark(listener)
    job = await vyked("publish", "Calculator:1.job", '{"n": 11}', env={**nowhere, "VYKED_PUBSUB": redis_server.url})
    assert job.returncode == 0, job.stderr
    assert json.loads(wait_for_line(listener, r"handled job (.*)$", since=mark).group(1)) == {"n": 11}

    unreachable = await vyked(
        "publish", "Calculator:1.job", '{"n": 12}', "--pubsub", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "1",
        env=nowhere,
    )  # fmt: skip
    assert unreachable.returncode == 3 and "did not reach Redis" in unreachable.stderr


async def test_schema_json_and_asyncapi(tmp_path: Path) -> None:
    result = await vyked("schema", str(SERVICES), env=clean_env())
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["vyked_schema"] == "1"
    services = {s["name"]: s for s in document["services"]}
    assert sorted(services) == ["Calculator", "Listener", "Pages"]

    calculator = services["Calculator"]
    assert (calculator["version"], calculator["kind"], calculator["description"]) == (
        "1.2",
        "tcp",
        "Arithmetic over the wire.",
    )
    endpoints = {e["name"]: e for e in calculator["endpoints"]}
    assert sorted(endpoints) == ["add", "echo", "fail", "norm", "plus", "slow"]
    add = endpoints["add"]
    assert add["params"]["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer", "default": 1}}
    assert add["params"]["required"] == ["a"]
    assert add["result"] == {"type": "integer"}
    assert add["description"] == "The sum of a and b."
    assert endpoints["norm"]["params"]["properties"]["point"] == {"$ref": "#/components/schemas/Point"}
    assert document["components"]["schemas"]["Point"]["required"] == ["x", "y"]
    assert endpoints["echo"]["params"]["properties"] == {"value": {}} and endpoints["echo"]["result"] == {}
    assert endpoints["plus"]["deprecated"] is True and endpoints["plus"]["replacement"] == "add"
    events = {e["name"]: e for e in calculator["events"]}
    assert events["computed"]["payload"]["properties"] == {
        "expression": {"type": "string"},
        "result": {"type": "number"},
    }

    (client,) = services["Listener"]["clients"]
    assert (client["service"], client["version"]) == ("Calculator", "1")
    deliveries = {s["event"]: s["delivery"] for s in client["subscriptions"]}
    assert deliveries == {"computed": "broadcast", "job": "exclusive"}
    (route,) = services["Pages"]["routes"]
    assert (route["method"], route["paths"], route["required_params"]) == ("GET", ["/pages/{name}"], ["lang"])

    out = tmp_path / "asyncapi.json"
    written = await vyked(
        "schema",
        f"{SERVICES}:Calculator",
        f"{SERVICES}:Listener",
        "--format",
        "asyncapi",
        "-o",
        str(out),
        env=clean_env(),
    )
    assert (written.returncode, written.stdout) == (0, "")
    spec = json.loads(out.read_text())
    assert spec["asyncapi"] == "3.0.0"
    assert spec["channels"]["Calculator.events.computed"]["address"] == "vyked:event:Calculator:1:computed"
    request_payload = spec["channels"]["Calculator.requests.add"]["messages"]["request"]["payload"]
    assert request_payload["required"] == ["a"]
    add_op = spec["operations"]["Calculator.add"]
    assert add_op["action"] == "receive"
    assert add_op["reply"]["channel"] == {"$ref": "#/channels/Calculator.replies.add"}
    assert spec["operations"]["Calculator.publish.computed"]["action"] == "send"
    assert spec["operations"]["Listener.on.Calculator.job"]["action"] == "receive"
    for operation in spec["operations"].values():  # every reference resolves
        for ref in [operation["channel"], *operation["messages"]]:
            node: Any = spec
            for part in ref["$ref"].removeprefix("#/").split("/"):
                node = node[part]
    assert "Point" in spec["components"]["schemas"]

    missing = await vyked("schema", str(SERVICES.parent / "integration_support.py"), env=clean_env())
    assert missing.returncode == 2 and "no service found" in missing.stderr


async def test_run_reload_restarts_on_a_source_change(serve: Any, registry_env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("watchfiles", reason="vyked run --reload needs vyked-core[reload]")
    module = tmp_path / "greeter.py"
    module.write_text(GREETER.replace("GREETING", "hello"))
    proc = serve("--reload", str(module), env=registry_env)
    first = await vyked("call", "Greeter.greet", '{"name": "ann"}', env=registry_env)
    assert json.loads(first.stdout) == "hello ann", first.stderr

    mark = output_mark(proc)
    module.write_text(GREETER.replace("GREETING", "bonjour"))
    await asyncio.to_thread(wait_for_line, proc, re.escape(STARTED + "tcp Greeter"), 60, mark)
    second = await vyked("call", "Greeter.greet", '{"name": "ann"}', env=registry_env)
    assert json.loads(second.stdout) == "bonjour ann", second.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.process is not None and await asyncio.to_thread(proc.process.wait, 30) == 0


GREETER = """
from vyked import TCPService, api


class Greeter(TCPService):
    def __init__(self):
        super().__init__("Greeter", 1)

    @api
    async def greet(self, name: str) -> str:
        return f"GREETING {name}"
"""
