"""Dead letters: exclusive events given up after ``max_attempts`` deliveries, kept so that
they can be looked at and replayed once the handler is fixed.

**Redis.** The subscriber that gives an entry up moves it to the stream
``vyked:dead:<service>:<major>:<event>`` (trimmed to about ``dead_letter_maxlen``) in one
script: the entry is acknowledged in its group and added there together, and only by the
consumer whose ``XACK`` succeeded, so it is neither lost nor dead-lettered twice. Fields:

=========  ==========================================================================
``p``      the event's JSON payload, as published
``stream`` the stream it came from (``vyked:stream:<service>:<major>:<event>``)
``id``     its entry id in that stream
``group``  the subscribing service (consumer group) that gave it up
``handler``the ``@xsubscribe`` method(s): ``module.Class.method``
``attempts`` deliveries made
``error``  the last error known, ``Type: message`` (truncated to :data:`ERROR_LIMIT`), or
           ``unknown: ...`` when no attempt ended with an exception this process saw
``time``   when it was given up, ISO 8601 in UTC
=========  ==========================================================================

:func:`list_dead_letters` reads them, :func:`replay` puts them back: each is added to the
original stream again with the field ``g`` naming its group, which alone handles it (the
other groups acknowledge it unread), and deleted from the dead-letter stream, atomically.

**Embedded.** The publisher that gives an event up keeps it in a list of the last
``dead_letter_maxlen``: ``PubSub.of(host).dead_letters()`` and
``PubSub.of(host).replay_dead_letters()``.

This module imports ``redis`` only inside the Redis functions, so the embedded transport can
use :class:`DeadLetter` without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vyked.core.optional import require
from vyked.tcp.pubsub.events import PREFIX, EventKey, decode_payload, stream_name
from vyked.tcp.pubsub.settings import PubSubSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DeadLetter", "dead_letter_stream", "list_dead_letters", "replay"]

ERROR_LIMIT = 1000
"""Characters of an error message kept in a dead letter."""

_BATCH = 256

REPLAY_SCRIPT = """
local replayed = {}
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #entry == 1 then
    local fields, payload, group = entry[1][2], nil, nil
    for j = 1, #fields, 2 do
      if fields[j] == 'p' then payload = fields[j + 1] elseif fields[j] == 'group' then group = fields[j + 1] end
    end
    if payload and payload ~= '' and group then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'p', payload, 'g', group)
      redis.call('XDEL', KEYS[1], ARGV[i])
      replayed[#replayed + 1] = ARGV[i]
    end
  end
end
return replayed
"""
"""KEYS: dead-letter stream, event stream; ARGV: the event stream's maxlen, then dead-letter
ids. Replays each entry to its group and deletes it, or leaves it (already replayed by someone
else, or its payload was lost); returns the ids replayed."""


GIVE_UP_SCRIPT = """
local moved = {}
for i = 5, #ARGV, 3 do
  local id, err = ARGV[i], ARGV[i + 2]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    local payload = ''
    if #entry == 1 then
      local fields = entry[1][2]
      for j = 1, #fields, 2 do
        if fields[j] == 'p' then payload = fields[j + 1] end
      end
    else
      err = err .. ' (the entry was trimmed from its stream: payload lost)'
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'p', payload, 'stream', KEYS[1], 'id', id,
      'group', ARGV[1], 'handler', ARGV[3], 'attempts', ARGV[i + 1], 'error', err, 'time', ARGV[4])
    moved[#moved + 1] = id
  end
end
return moved
"""
"""KEYS: event stream, dead-letter stream; ARGV: group, dead-letter maxlen, handler, time, then
(entry id, attempts, error) per entry. Acknowledges each entry and adds it to the dead-letter
stream in one step; an entry someone else acknowledged already is left alone. Returns the ids
moved."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One exclusive event given up after ``max_attempts`` deliveries."""

    service: str
    event: str
    group: str
    """The subscribing service that could not handle it."""
    payload: bytes
    """The event's JSON object, as published."""
    handler: str
    """The ``@xsubscribe`` method(s), ``module.Class.method``; empty when unknown (embedded:
    the subscriber does not report it)."""
    attempts: int
    error: str
    """The last error known, ``Type: message``, or ``unknown: ...``."""
    time: datetime
    """When it was given up (UTC)."""
    id: str
    """Redis: its entry id in the dead-letter stream; embedded: a sequence number."""
    major: str = ""
    """Redis: the publisher's major version."""
    stream: str = ""
    """Redis: the stream the event came from."""
    entry_id: str = ""
    """Redis: the event's entry id in that stream."""

    @property
    def fields(self) -> dict[str, Any]:
        """The event's fields, as the handler receives them."""
        return decode_payload(self.payload)


def dead_letter_stream(key: EventKey) -> str:
    """Redis stream of the exclusive events of ``key`` that were given up."""
    return f"{PREFIX}:dead:{key.service}:{key.major}:{key.event}"


def error_text(exc: BaseException) -> str:
    """``Type: message`` of a handler's exception, truncated."""
    return truncate(f"{type(exc).__name__}: {exc}")


def truncate(text: str) -> str:
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 3] + "..."


def unknown_error(attempts: int) -> str:
    """The error of an event whose failures no one reported (handler hung, process died)."""
    return f"unknown: delivered {attempts} times without acknowledgement (handler hung or its process died)"


def now() -> datetime:
    return datetime.now(UTC)


# -- Redis ------------------------------------------------------------------------------------


async def give_up(
    client: Redis, stream: str, dead: str, group: str, handler: str, entries: list[tuple[bytes, int, str]], maxlen: int
) -> list[str]:
    """Move entries of ``stream`` (id, attempts, error) that ``group`` gives up to the
    dead-letter stream ``dead``, acknowledging them (:data:`GIVE_UP_SCRIPT`); returns the ids
    moved, without those another consumer acknowledged first."""
    args: list[Any] = [group, maxlen, handler, now().isoformat()]
    for entry_id, attempts, error in entries:
        args += [entry_id, attempts, error]
    moved = await _commands()(client, "EVAL", GIVE_UP_SCRIPT, 2, stream, dead, *args)
    return [i.decode() if isinstance(i, bytes) else str(i) for i in moved]


async def list_dead_letters(
    redis: str | Redis,
    service: str,
    version: object,
    event: str,
    *,
    group: str | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """The dead letters of one event in Redis, oldest first.

    ``redis`` is a URL (``redis://127.0.0.1:6379/0``) or a ``redis.asyncio.Redis`` client;
    ``version`` is the publishing service's version (only its major counts). ``group`` keeps
    those of one subscribing service; ``limit`` stops after that many.
    """
    key = EventKey.of(service, version, event)
    async with _connected(redis) as client:
        return await _read(client, key, group, limit)


async def replay(
    redis: str | Redis,
    service: str,
    version: object,
    event: str,
    *,
    group: str | None = None,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    stream_maxlen: int | None = None,
) -> list[DeadLetter]:
    """Deliver dead letters of one event again, each to the group that gave it up only, and
    delete them from the dead-letter stream; returns those replayed.

    Every dead letter of the event by default, oldest first; ``group``, ``ids`` (dead-letter
    entry ids, as :attr:`DeadLetter.id`) and ``limit`` narrow it. Each is an entry of the
    event's stream again, with fresh attempts, so a subscriber that still fails it gives it up
    again. Two replays at once do not duplicate an event. ``stream_maxlen`` (default:
    :attr:`PubSubSettings.stream_maxlen`) trims the event's stream as publishers do.
    """
    key = EventKey.of(service, version, event)
    maxlen = stream_maxlen if stream_maxlen is not None else PubSubSettings().stream_maxlen
    async with _connected(redis) as client:
        if ids is None:
            letters = await _read(client, key, group, limit)
        else:
            letters = []
            for entry_id in ids:
                letters += [
                    letter
                    for letter in await _range(client, key, entry_id, entry_id, 1)
                    if group is None or letter.group == group
                ]
            letters = letters[:limit] if limit is not None else letters
        command = _commands()
        replayed: set[str] = set()
        for start in range(0, len(letters), _BATCH):
            batch = [letter.id for letter in letters[start : start + _BATCH]]
            reply = await command(
                client, "EVAL", REPLAY_SCRIPT, 2, dead_letter_stream(key), stream_name(key), maxlen, *batch
            )
            replayed.update(i.decode() if isinstance(i, bytes) else str(i) for i in reply)
    return [letter for letter in letters if letter.id in replayed]


@contextlib.asynccontextmanager
async def _connected(redis: str | Redis) -> AsyncIterator[Redis]:
    """The client given, or one made for the URL given (and closed after)."""
    if not isinstance(redis, str):
        yield redis
        return
    client: Redis = require("redis.asyncio", "vyked-tcp[redis]").Redis.from_url(redis)
    try:
        yield client
    finally:
        await client.aclose()


def _commands() -> Any:
    """:func:`vyked.tcp.pubsub.redis_client.command`, imported only when Redis is used."""
    return require("vyked.tcp.pubsub.redis_client", "vyked-tcp[redis]", dependency="redis").command


async def _read(client: Redis, key: EventKey, group: str | None, limit: int | None) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    start = "-"
    while limit is None or len(found) < limit:
        batch = await _range(client, key, start, "+", _BATCH)
        found += [letter for letter in batch if group is None or letter.group == group]
        if len(batch) < _BATCH:
            break
        start = "(" + batch[-1].id
    return found[:limit] if limit is not None else found


async def _range(client: Redis, key: EventKey, start: str, end: str, count: int) -> list[DeadLetter]:
    reply = await _commands()(client, "XRANGE", dead_letter_stream(key), start, end, "COUNT", count)
    return [_from_entry(key, entry_id, fields or {}) for entry_id, fields in reply]


def _from_entry(key: EventKey, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    try:
        when = datetime.fromisoformat(text("time"))
    except ValueError:  # not written by vyked: the entry id's milliseconds
        when = datetime.fromtimestamp(int(entry_id.split(b"-")[0]) / 1000, UTC)
    return DeadLetter(
        service=key.service,
        event=key.event,
        group=text("group"),
        payload=fields.get(b"p", b""),
        handler=text("handler"),
        attempts=int(text("attempts") or 0),
        error=text("error"),
        time=when,
        id=entry_id.decode(),
        major=key.major,
        stream=text("stream"),
        entry_id=text("id"),
    )
