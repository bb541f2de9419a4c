"""vyked 2.x habits the TCP package accepts: strategy names as strings, and handlers raising
``BaseException`` subclasses of the application's own."""

from __future__ import annotations

from typing import Any

import pytest

from vyked import SubscriptionStrategy, TCPServiceClient, subscribe, xsubscribe
from vyked.tcp.decorators import spec_of
from vyked.tcp.pubsub.events import EventKey
from vyked.tcp.pubsub.settings import PubSubStats
from vyked.tcp.pubsub.subscriptions import HandlerFailed, SubscriptionTable, subscriptions_of


class UserException(BaseException):
    """What 2.x examples raise."""


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        ("LEADER", SubscriptionStrategy.LEADER),
        ("leader", SubscriptionStrategy.LEADER),
        ("RANDOM", SubscriptionStrategy.RANDOM),
        ("Random", SubscriptionStrategy.RANDOM),
        ("DESIGNATION", SubscriptionStrategy.RANDOM),  # 2.x's default: delivered to a random instance
        (SubscriptionStrategy.LEADER, SubscriptionStrategy.LEADER),
    ],
)
def test_xsubscribe_takes_2x_strategy_names(name: Any, strategy: SubscriptionStrategy) -> None:
    @xsubscribe(strategy=name)
    def changed(self: Any) -> None: ...

    spec = spec_of(changed)
    assert spec is not None
    assert spec.strategy is strategy


def test_an_unknown_strategy_fails_at_decoration_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'LEADER'") as raised:
        xsubscribe(strategy="FIRST")
    assert "'RANDOM'" in str(raised.value)
    assert "'DESIGNATION'" in str(raised.value)


class Users(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Users", 1)
        self.seen: list[str] = []

    @subscribe(inline=True)
    def logged_out(self, user_name: str) -> None:
        if user_name == "boom":
            raise UserException("cannot log out")
        self.seen.append(user_name)

    @xsubscribe(strategy="LEADER")
    async def changed(self, user_name: str) -> None:
        raise UserException(f"cannot change {user_name}")


def table_of(client: Users) -> SubscriptionTable:
    table = SubscriptionTable(PubSubStats())
    table.add(subscriptions_of(client, "Accounts"))
    return table


def test_a_broadcast_handler_raising_a_base_exception_does_not_stop_delivery() -> None:
    client = Users()
    table = table_of(client)
    key = EventKey.of("Users", 1, "logged_out")
    table.deliver(key, b'{"user_name": "boom"}')
    table.deliver(key, b'{"user_name": "ann"}')
    assert client.seen == ["ann"]
    assert table.stats.handler_errors == 1


async def test_an_exclusive_handler_raising_a_base_exception_fails_the_delivery() -> None:
    table = table_of(Users())
    with pytest.raises(HandlerFailed, match="UserException: cannot change ann"):
        await table.handle(EventKey.of("Users", 1, "changed"), "Accounts", {"user_name": "ann"})
    assert table.stats.handler_errors == 1
