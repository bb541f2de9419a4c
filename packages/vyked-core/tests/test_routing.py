"""Version matching, balancing and the instance directory."""

from __future__ import annotations

import collections
import time

import pytest

from vyked.core.addresses import parse_addresses
from vyked.core.balancing import RoundRobin, choose, rendezvous_pick
from vyked.core.exceptions import ServiceUnavailable
from vyked.core.instances import UNREACHABLE_FOR, Instance, InstanceDirectory
from vyked.core.protocol.packets import InstanceInfo
from vyked.core.versions import best_version, normalize


def info(node: str, version: str = "1", kind: str = "tcp", service: str = "S") -> InstanceInfo:
    return InstanceInfo(service, version, "127.0.0.1", 1000 + int(node.strip("n") or 0), node, kind)


@pytest.mark.parametrize(
    ("wanted", "available", "expected"),
    [
        ("1", ["1", "1.0", "1.4.2"], "1"),
        ("1", ["1.0", "1.4.2", "1.10"], "1.10"),
        ("1", ["2", "2.1"], None),
        ("1.4", ["1.4", "1.5"], "1.4"),
        ("2", ["1.9", "10"], None),
        ("1", [], None),
    ],
)
def test_best_version(wanted: str, available: list[str], expected: str | None) -> None:
    assert best_version(wanted, available) == expected


def test_versions_are_strings() -> None:
    assert normalize(1) == "1" and normalize(" 1.2 ") == "1.2"


def test_round_robin_cycles() -> None:
    rr = RoundRobin()
    assert [rr.pick("abc") for _ in range(7)] == list("abcabca")


def test_rendezvous_is_stable_and_moves_only_the_removed_instances_entities() -> None:
    nodes = [f"node{i}" for i in range(5)]
    entities = [f"user-{i}" for i in range(2000)]
    before = {e: rendezvous_pick(e, nodes, str) for e in entities}
    assert before == {e: rendezvous_pick(e, list(reversed(nodes)), str) for e in entities}
    spread = collections.Counter(before.values())
    assert all(250 < count < 550 for count in spread.values()), spread
    survivors = [n for n in nodes if n != "node2"]
    after = {e: rendezvous_pick(e, survivors, str) for e in entities}
    moved = {e for e in entities if before[e] != after[e]}
    assert moved == {e for e in entities if before[e] == "node2"}


def test_directory_selects_by_version_and_kind() -> None:
    d = InstanceDirectory()
    d.replace("S", [info("n1", "1.0"), info("n2", "1.4"), info("n3", "2"), info("n4", "1.4", kind="http")])
    assert {d.select("S", "1").node_id for _ in range(4)} == {"n2"}
    assert d.select("S", "2").node_id == "n3"
    assert d.select("S", "1", kind="http").node_id == "n4"
    with pytest.raises(ServiceUnavailable, match="matches version '3'"):
        d.select("S", "3")
    with pytest.raises(ServiceUnavailable, match="no live instance of 'T'"):
        d.select("T", "1")


def test_directory_round_robin_and_updates() -> None:
    d = InstanceDirectory()
    events: list[tuple[str, str]] = []
    d.add_listener(lambda event, inst: events.append((event, inst.node_id)))
    d.replace("S", [info("n1"), info("n2")])
    assert sorted(d.select("S", "1").node_id for _ in range(4)) == ["n1", "n1", "n2", "n2"]
    d.add(info("n3"))
    assert {d.select("S", "1").node_id for _ in range(6)} == {"n1", "n2", "n3"}
    d.remove("S", "n1")
    assert {d.select("S", "1").node_id for _ in range(6)} == {"n2", "n3"}
    d.replace("S", [info("n3"), info("n4")])
    assert sorted(events) == sorted(
        [("added", "n1"), ("added", "n2"), ("added", "n3"), ("removed", "n1"), ("removed", "n2"), ("added", "n4")]
    )


def test_replace_renews_an_instance_whose_fields_changed_under_the_same_node_id() -> None:
    d = InstanceDirectory()
    events: list[tuple[str, Instance]] = []
    d.add_listener(lambda event, inst: events.append((event, inst)))
    v1, other = info("n1", "1"), info("n2", "1")
    d.replace("S", [v1, other])
    events.clear()

    d.replace("S", [info("n1", "1"), info("n2", "1")])  # the same snapshot, as new objects
    assert events == []

    v2 = info("n1", "2")  # upgraded in place: same node id, another version
    d.replace("S", [v2, other])
    assert events == [("removed", v1), ("added", v2)]
    assert events[1][1] is v2
    assert d.select("S", "2") is v2
    with pytest.raises(ServiceUnavailable):
        d.select("S", "2", tried={"n1"})

    events.clear()
    moved = InstanceInfo("S", "2", "127.0.0.1", 2001, "n1", "tcp")  # restarted on another port
    d.replace("S", [moved, other])
    assert events == [("removed", v2), ("added", moved)]
    assert d.select("S", "2").address == ("127.0.0.1", 2001)

    events.clear()
    d.replace("S", [moved, other])
    assert events == []

    d.health.draining(moved)  # what was known of the old instance goes with it
    d.replace("S", [info("n1", "3"), other])
    assert d.health.state("n1") == "closed"


def test_add_renews_an_instance_whose_fields_changed_under_the_same_node_id() -> None:
    d = InstanceDirectory()
    events: list[tuple[str, Instance]] = []
    d.add_listener(lambda event, inst: events.append((event, inst)))
    v1 = info("n1", "1")
    d.add(v1)
    d.health.unreachable(v1)
    assert events == [("added", v1)]
    events.clear()

    d.add(info("n1", "1"))  # announced again, unchanged: nothing is removed
    assert events == [("added", info("n1", "1"))]
    assert d.health.state("n1") == "open"
    events.clear()

    moved = InstanceInfo("S", "1", "127.0.0.1", 2001, "n1", "tcp")
    d.add(moved)
    assert events == [("removed", v1), ("added", moved)]
    assert d.health.state("n1") == "closed"
    assert d.select("S", "1") is moved


def test_choose_by_entity_is_the_rendezvous_owner_and_leaves_round_robin_alone() -> None:
    nodes = ["n1", "n2", "n3", "n4"]
    rr = RoundRobin()
    for i in range(200):
        entity = f"order-{i}"
        assert choose(nodes, entity, rr, None, str) == rendezvous_pick(entity, nodes, str)
        assert choose(nodes, entity, rr, lambda n: 0 if n == "n4" else 9, str) == rendezvous_pick(entity, nodes, str)
    assert choose(nodes, 42, rr, None, str) == rendezvous_pick("42", nodes, str)  # any object, as text
    assert [choose(nodes, None, rr, None, str) for _ in range(2)] == ["n1", "n2"]  # not advanced above


def test_choose_without_entity_steps_the_given_round_robin() -> None:
    nodes = ["n1", "n2", "n3"]
    shared = RoundRobin()
    assert [choose(nodes, None, shared, None, str) for _ in range(4)] == ["n1", "n2", "n3", "n1"]
    assert shared.pick(nodes) == "n2"  # the same state the directory and routes share
    assert choose(nodes, None, shared, None, str) == "n3"
    # equal loads: the round-robin pick wins the tie, so the order stays round-robin
    even = RoundRobin()
    assert [choose(nodes, None, even, lambda n: 1, str) for _ in range(6)] == ["n1", "n2", "n3"] * 2


def test_choose_with_a_load_takes_the_less_loaded_of_two() -> None:
    loads = {"busy": 7, "idle": 2}
    rr = RoundRobin()
    # of two candidates, the other one is always compared: the less loaded wins every time
    assert [choose(["busy", "idle"], None, rr, loads.__getitem__, str) for _ in range(6)] == ["idle"] * 6
    assert [choose(["idle", "busy"], None, rr, loads.__getitem__, str) for _ in range(6)] == ["idle"] * 6
    # without a load, round-robin alone
    plain = RoundRobin()
    assert [choose(["busy", "idle"], None, plain, None, str) for _ in range(4)] == ["busy", "idle"] * 2
    # one candidate: no comparison to make
    assert choose(["busy"], None, rr, loads.__getitem__, str) == "busy"


def test_directory_entity_routing_and_usable_filter() -> None:
    d = InstanceDirectory()
    d.replace("S", [info("n1"), info("n2"), info("n3")])
    owner = d.select("S", "1", entity="order-42")
    assert all(d.select("S", "1", entity="order-42") == owner for _ in range(10))
    other = d.select("S", "1", entity="order-42", tried={owner.node_id})
    assert other != owner
    with pytest.raises(ServiceUnavailable, match=r"3 registered, none usable now \(3 tried by this request"):
        d.select("S", "1", tried={i.node_id for i in d.instances("S")})


def test_unreachable_instances_are_skipped_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    d = InstanceDirectory()
    d.replace("S", [info("n1"), info("n2")])
    first = d.instances("S")[0]
    d.mark_unreachable(first)
    assert all(d.select("S", "1") != first for _ in range(4))
    d.mark_unreachable(d.instances("S")[1])
    with pytest.raises(ServiceUnavailable, match="2 registered, none usable now"):
        d.select("S", "1")
    later = time.monotonic() + UNREACHABLE_FOR + 0.1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    # half-open: one probe each, and nothing more until a probe's outcome is known
    probes = [d.select("S", "1"), d.select("S", "1")]
    assert {p.node_id for p in probes} == {"n1", "n2"}
    with pytest.raises(ServiceUnavailable):
        d.select("S", "1")
    d.health.succeeded(probes[0])
    assert all(d.select("S", "1") == probes[0] for _ in range(3))
    assert d.health.transitions == {"open": 2, "half_open": 2, "closed": 1}


def test_instance_is_the_registry_struct() -> None:
    assert Instance is InstanceInfo
    assert info("n1").address == ("127.0.0.1", 1001)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.1", [("10.0.0.1", 4500)]),
        ("10.0.0.1:4600", [("10.0.0.1", 4600)]),
        ("10.0.0.1:4500, 10.0.0.2:4501", [("10.0.0.1", 4500), ("10.0.0.2", 4501)]),
        ([("10.0.0.1", 4500), ("10.0.0.2", "4501")], [("10.0.0.1", 4500), ("10.0.0.2", 4501)]),
        (["a:1", "b"], [("a", 1), ("b", 4500)]),
        ("[::1]:4500", [("::1", 4500)]),
        (None, []),
    ],
)
def test_registry_addresses(spec: object, expected: list[tuple[str, int]]) -> None:
    assert parse_addresses(spec) == expected  # type: ignore[arg-type]
