"""Registry bookkeeping without sockets."""

from __future__ import annotations

from vyked.core.protocol.packets import (
    Dependency,
    InstanceAdded,
    InstanceInfo,
    InstanceRemoved,
    Instances,
    ServiceState,
)
from vyked.registry.state import RegistryState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def inst(node: str, service: str = "S", version: str = "1") -> InstanceInfo:
    return InstanceInfo(service, version, "127.0.0.1", 4000, node)


def pushes(outbox: list[tuple[object, object]], kind: type) -> list[tuple[object, object]]:
    return [(w, p) for w, p in outbox if isinstance(p, kind)]


def test_watch_answers_with_a_snapshot_then_pushes_changes() -> None:
    state = RegistryState()
    state.register(inst("a"), [], owner="host-a")
    assert state.watch("watcher", ["S", "T"]) == [
        ("watcher", Instances(service="S", instances=[inst("a")])),
        ("watcher", Instances(service="T", instances=[])),
    ]
    out = state.register(inst("b"), [], owner="host-b")
    assert pushes(out, InstanceAdded) == [("watcher", InstanceAdded(instance=inst("b")))]
    assert pushes(out, ServiceState) == [("host-b", ServiceState(node_id="b", state="active"))]


def test_dropping_an_owner_removes_its_instances_and_watches() -> None:
    state = RegistryState()
    state.watch("w", ["S"])
    state.register(inst("a"), [], owner="host-a")
    state.register(inst("b"), [], owner="host-a")
    state.watch("host-a", ["S"])
    out = state.drop_owner("host-a")
    assert sorted(pushes(out, InstanceRemoved), key=lambda x: x[1].node_id) == [  # type: ignore[attr-defined]
        ("w", InstanceRemoved(service="S", node_id="a")),
        ("w", InstanceRemoved(service="S", node_id="b")),
    ]
    assert state.instances_of("S") == []
    assert pushes(state.register(inst("c"), [], owner="host-c"), InstanceAdded) == [
        ("w", InstanceAdded(instance=inst("c")))
    ]


def test_a_host_reconnecting_moves_its_instance_silently() -> None:
    state = RegistryState()
    state.watch("w", ["S"])
    state.register(inst("a"), [], owner="old")
    assert pushes(state.register(inst("a"), [], owner="new"), InstanceAdded) == []
    assert state.drop_owner("old") == []  # the old connection closing later removes nothing
    assert [r.owner for r in state.registrations()] == ["new"]
    changed = InstanceInfo("S", "1", "127.0.0.1", 4001, "a")  # same node id, new address
    out = state.register(changed, [], owner="new")
    assert pushes(out, InstanceRemoved) == [("w", InstanceRemoved(service="S", node_id="a"))]
    assert pushes(out, InstanceAdded) == [("w", InstanceAdded(instance=changed))]


def test_pending_until_a_dependency_appears_and_again_when_it_goes() -> None:
    state = RegistryState()
    out = state.register(inst("o1", service="Orders"), [Dependency("Users", "1")], owner="orders-host")
    assert pushes(out, ServiceState) == [
        ("orders-host", ServiceState(node_id="o1", state="pending", waiting_for=["Users v1"]))
    ]
    # another major version does not satisfy the dependency
    assert pushes(state.register(inst("u2", service="Users", version="2.0"), [], owner="u"), ServiceState) == [
        ("u", ServiceState(node_id="u2", state="active"))
    ]
    assert state.get("o1").state == "pending"  # type: ignore[union-attr]
    out = state.register(inst("u1", service="Users", version="1.3"), [], owner="u")
    assert ("orders-host", ServiceState(node_id="o1", state="active")) in out
    out = state.unregister("u1")
    assert ("orders-host", ServiceState(node_id="o1", state="pending", waiting_for=["Users v1"])) in out
    assert [r.instance.node_id for r in state.dependents_of("Users")] == ["o1"]


def test_uptime_downtime_and_history() -> None:
    clock = Clock()
    state = RegistryState("r1", clock=clock)
    state.register(inst("a"), [], owner="h")
    clock.now += 10
    (status,) = state.status(lambda owner: 0.25)
    assert (status.state, status.uptime, status.downtime, status.last_heartbeat) == ("active", 10.0, 0.0, 0.25)
    assert status.registry == "r1"
    state.drop_owner("h")
    clock.now += 5
    (status,) = state.status(lambda owner: 0.25)
    assert (status.state, status.uptime, status.downtime, status.last_heartbeat) == ("down", 0.0, 5.0, None)
    state.register(inst("a"), [], owner="h2")  # the same node comes back
    clock.now += 2
    (status,) = state.status(lambda owner: 0.1)
    assert (status.state, status.uptime, status.downtime, status.registered_at) == ("active", 2.0, 5.0, 1000.0)


def test_instances_of_other_registries_are_mirrored_but_not_owned() -> None:
    state = RegistryState("r1")
    state.watch("w", ["S"])
    out = state.register(inst("x"), [Dependency("T", "1")], owner=None, registry="r2")
    assert pushes(out, InstanceAdded) == [("w", InstanceAdded(instance=inst("x")))]
    assert pushes(out, ServiceState) == []  # r2 tells its own host
    assert state.unregister("x", registry="r3") == []  # r3 does not hold it
    assert pushes(state.unregister("x", registry="r2"), InstanceRemoved) == [
        ("w", InstanceRemoved(service="S", node_id="x"))
    ]


def test_a_draining_instance_leaves_routing_at_once_and_status_when_its_host_goes() -> None:
    clock = Clock()
    changes: list[None] = []
    state = RegistryState("r1", clock=clock, on_change=lambda: changes.append(None))
    state.watch("w", ["Users"])
    state.register(inst("u1", service="Users"), [], owner="users-host")
    state.register(inst("o1", service="Orders"), [Dependency("Users", "1")], owner="orders-host")
    clock.now += 10
    changes.clear()

    out = state.drain("u1")
    assert pushes(out, InstanceRemoved) == [("w", InstanceRemoved(service="Users", node_id="u1"))]
    # a draining instance counts for no dependent
    assert ("orders-host", ServiceState(node_id="o1", state="pending", waiting_for=["Users v1"])) in out
    assert state.instances_of("Users") == [] and state.get("u1") is None
    assert state.watch("late", ["Users"]) == [("late", Instances(service="Users", instances=[]))]
    assert changes
    clock.now += 3
    by_node = {s.instance.node_id: s for s in state.status(lambda owner: 0.5)}
    draining = by_node["u1"]
    assert (draining.state, draining.uptime, draining.downtime, draining.last_heartbeat) == ("draining", 13.0, 0.0, 0.5)
    assert by_node["o1"].state == "pending"
    assert state.drain("u1") == []  # once is enough
    assert state.owned_by("users-host") == []  # nothing live left to hand over or replicate

    changes.clear()
    clock.now += 2
    assert state.drop_owner("users-host") == []  # watchers were told already
    (down,) = [s for s in state.status(lambda owner: 0.5) if s.instance.node_id == "u1"]
    assert (down.state, down.uptime, down.last_heartbeat) == ("down", 0.0, None)
    assert changes


def test_a_draining_node_id_registering_again_is_live_and_keeps_its_history() -> None:
    clock = Clock()
    state = RegistryState(clock=clock)
    state.watch("w", ["S"])
    state.register(inst("a"), [], owner="old")
    state.drain("a")
    clock.now += 1
    out = state.register(inst("a"), [], owner="new")  # a new process under the same node id
    assert pushes(out, InstanceAdded) == [("w", InstanceAdded(instance=inst("a")))]
    assert state.drop_owner("old") == []  # the old host's connection closing ends nothing
    (status,) = state.status(lambda owner: 0.0)
    assert (status.state, status.registered_at, status.downtime) == ("active", 1000.0, 0.0)
    assert [r.owner for r in state.registrations()] == ["new"]


def test_on_change_reports_state_changes_but_not_watches() -> None:
    changes: list[None] = []
    state = RegistryState(on_change=lambda: changes.append(None))
    state.watch("w", ["S"])
    state.drop_owner("w")
    assert changes == []
    state.register(inst("a"), [], owner="h")
    assert changes
    changes.clear()
    state.unregister("a")
    assert changes


def test_service_names_match_whatever_their_case_as_in_2x() -> None:
    state = RegistryState()
    state.register(inst("a", service="UserService"), [], owner="host-a")
    assert state.watch("watcher", ["userservice"]) == [
        ("watcher", Instances(service="userservice", instances=[inst("a", service="UserService")])),
    ]
    out = state.register(inst("b", service="USERSERVICE"), [Dependency(service="userSERVICE", version="1")], "host-b")
    assert pushes(out, InstanceAdded) == [("watcher", InstanceAdded(instance=inst("b", service="USERSERVICE")))]
    assert pushes(out, ServiceState) == [("host-b", ServiceState(node_id="b", state="active"))]
    assert [(w, p.node_id) for w, p in pushes(state.unregister("a"), InstanceRemoved)] == [("watcher", "a")]
