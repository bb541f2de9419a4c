"""The registry's metrics port (/metrics, /livez, /readyz) and JSON logs, over real sockets and
a real process."""

from __future__ import annotations

import asyncio
import json
import re

from vyked.core.testing import ProcessRunner, RawClient, http_get
from vyked.registry import Registry


def register(node: str, service: str) -> dict[str, object]:
    return {
        "type": "register",
        "instance": {"service": service, "version": "1", "host": "127.0.0.1", "port": 5000, "node_id": node},
        "dependencies": [{"service": "Missing", "version": "1"}],
    }


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("{")[2].partition("}")[0]))
        if line.split("{")[0].split(" ")[0] == name and found == labels:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_count_instances_by_state_and_probes_answer() -> None:
    async with Registry("127.0.0.1", 0, metrics_port=0, metrics_host="127.0.0.1") as registry:
        base = f"http://127.0.0.1:{registry.metrics_port}"
        host = await RawClient.connect(registry.port)
        host.send(register("n1", "Orders"))
        assert (await host.receive())["type"] == "registered"
        assert (await host.receive())["state"] == "pending"  # waiting for Missing
        watcher = await RawClient.connect(registry.port)
        watcher.send({"type": "watch", "services": ["Orders", "Missing"]})
        await watcher.receive()
        await watcher.receive()

        status, text = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert status == 200
        labels = {"service": "Orders", "version": "1", "kind": "tcp", "state": "pending"}
        assert sample(text, "vyked_registry_instances", **labels) == 1
        assert sample(text, "vyked_registry_registrations_total") == 1
        assert sample(text, "vyked_registry_watchers") == 1
        assert sample(text, "vyked_registry_watched_services") == 2
        assert (sample(text, "vyked_connections_open", direction="in") or 0) >= 2

        host.send({"type": "deregister", "node_id": "n1"})
        assert (await host.receive())["type"] == "deregistered"
        _, text = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert sample(text, "vyked_registry_instances", **{**labels, "state": "draining"}) == 1
        assert sample(text, "vyked_registry_removals_total") == 1

        assert (await asyncio.to_thread(http_get, f"{base}/livez"))[0] == 200
        status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        await host.close()
        await watcher.close()


def test_the_registry_process_logs_json_lines_and_serves_metrics() -> None:
    proc = ProcessRunner(
        "-m",
        "vyked.registry",
        "--port",
        "0",
        "--log-format",
        "json",
        "--metrics-port",
        "0",
        "--metrics-host",
        "127.0.0.1",
    ).start()
    try:
        # both lines, in whichever order the registry writes them
        proc.wait_for_output("metrics and probes on")
        proc.wait_for_output("listening on")
        lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
        started = next(line for line in lines if "listening on" in line["message"])
        assert started["level"] == "INFO" and started["logger"] == "vyked.registry.server"
        announced = next(line["message"] for line in lines if "metrics and probes" in line["message"])
        port = int(announced.split("http://127.0.0.1:")[1].split()[0])
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "vyked_registry_registrations_total 0.0" in text
    finally:
        proc.stop()
