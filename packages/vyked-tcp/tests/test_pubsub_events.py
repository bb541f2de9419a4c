"""Event payloads and names: checked at the publish call site, no sockets involved."""

from __future__ import annotations

import datetime
import decimal

import pytest
from pubsub_services import Identity

from vyked.core.exceptions import PublishError
from vyked.tcp.pubsub.events import (
    EventKey,
    channel_name,
    decode_payload,
    encode_payload,
    members_key,
    stream_name,
)


def test_payload_is_encoded_once_without_self() -> None:
    class Anything:
        pass

    data = encode_payload("IdentityService", "password_changed", {"self": Anything(), "user_name": "ann"})
    assert decode_payload(data) == {"user_name": "ann"}


def test_unserialisable_field_names_endpoint_and_field() -> None:
    with pytest.raises(PublishError) as info:
        encode_payload("IdentityService", "password_changed", {"user_name": "ann", "socket": object()})
    message = str(info.value)
    assert "IdentityService.password_changed" in message
    assert "'socket'" in message
    assert isinstance(info.value, TypeError)  # PublishError is a TypeError, as the docs promise


def test_nested_offending_field_is_named_by_its_path() -> None:
    payload = {"user": {"name": "ann", "tags": ["a", "b", {1, object}]}}
    with pytest.raises(PublishError, match=r"field 'user\.tags\[2\]'"):
        encode_payload("IdentityService", "user_created", payload)


def test_payload_that_contains_itself_is_a_publish_error() -> None:
    tags: list[object] = ["a"]
    tags.append(tags)
    with pytest.raises(PublishError, match=r"IdentityService\.user_created: field .* is not JSON-serialisable"):
        encode_payload("IdentityService", "user_created", {"user": "ann", "tags": tags})


def test_payload_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(PublishError, match=r"IdentityService\.bad\(\) must return a dict.*got list"):
        encode_payload("IdentityService", "bad", [1, 2])


def test_rich_values_the_wire_codec_knows_are_accepted() -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    data = encode_payload("S", "e", {"when": when, "amount": decimal.Decimal("1.50")})
    assert decode_payload(data) == {"when": "2024-05-01T12:30:00Z", "amount": "1.50"}


def test_publish_call_site_raises_before_anything_is_sent() -> None:
    service = Identity()  # attached to no host
    with pytest.raises(PublishError, match=r"IdentityService\.bad.*'handle'"):
        service.bad({"handle": open})
    with pytest.raises(RuntimeError, match="host is not running"):
        service.password_changed("ann")


def test_keys_follow_the_major_version() -> None:
    assert EventKey.of("Identity", "1.4.2", "changed") == EventKey.of("Identity", 1, "changed")
    assert EventKey.of("Identity", "2", "changed") != EventKey.of("Identity", "1", "changed")
    key = EventKey.of("Identity", "1.4", "changed")
    assert channel_name(key) == "vyked:event:Identity:1:changed"
    assert stream_name(key) == "vyked:stream:Identity:1:changed"
    assert members_key("Billing") == "vyked:members:Billing"
