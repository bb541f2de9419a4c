"""Registry bookkeeping without sockets."""

from __future__ import annotations

from vyked.core.protocol.packets import Dependency, InstanceAdded, InstanceInfo, InstanceRemoved, Instances
from vyked.registry.state import RegistryState


def inst(node: str, service: str = "S", version: str = "1") -> InstanceInfo:
    return InstanceInfo(service, version, "127.0.0.1", 4000, node)


def test_watch_answers_with_a_snapshot_then_pushes_changes() -> None:
    state = RegistryState()
    state.register(inst("a"), [], owner="host-a")
    assert state.watch("watcher", ["S", "T"]) == [
        ("watcher", Instances(service="S", instances=[inst("a")])),
        ("watcher", Instances(service="T", instances=[])),
    ]
    assert state.register(inst("b"), [], owner="host-b") == [("watcher", InstanceAdded(instance=inst("b")))]
    assert state.register(inst("t1", service="T"), [], owner="host-b") == [
        ("watcher", InstanceAdded(instance=inst("t1", service="T")))
    ]


def test_dropping_an_owner_removes_its_instances_and_watches() -> None:
    state = RegistryState()
    state.watch("w", ["S"])
    state.register(inst("a"), [], owner="host-a")
    state.register(inst("b"), [], owner="host-a")
    state.watch("host-a", ["S"])
    out = state.drop_owner("host-a")
    assert sorted(out, key=lambda x: x[1].node_id) == [  # type: ignore[union-attr]
        ("w", InstanceRemoved(service="S", node_id="a")),
        ("w", InstanceRemoved(service="S", node_id="b")),
    ]
    assert state.instances_of("S") == []
    assert state.register(inst("c"), [], owner="host-c") == [("w", InstanceAdded(instance=inst("c")))]


def test_reregistering_a_node_replaces_it() -> None:
    state = RegistryState()
    state.watch("w", ["S"])
    state.register(inst("a"), [], owner="old")
    out = state.register(inst("a"), [], owner="new")
    assert out == [("w", InstanceRemoved(service="S", node_id="a")), ("w", InstanceAdded(instance=inst("a")))]
    assert state.drop_owner("old") == []
    assert [r.owner for r in state.registrations()] == ["new"]


def test_dependents() -> None:
    state = RegistryState()
    state.register(inst("a", service="Orders"), [Dependency("Users", "1")], owner="o")
    state.register(inst("b", service="Mail"), [], owner="m")
    assert [r.instance.node_id for r in state.dependents_of("Users")] == ["a"]
