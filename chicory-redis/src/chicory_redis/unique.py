"""The Redis broker's side of the ``unique_enqueue`` capability (:mod:`chicory.unique`).

A claim is a string key per unique key, in its queue's hash tag
(``<p>:{q:<queue>}:unique:<key>``, see :mod:`chicory_redis.keys`), holding
``"<keep until ms> <holder>"`` and expiring when the claim ends. The ``publish_unique`` script
checks it, sets it and adds the message (to the stream, or the delayed set) in one step, so
concurrent publishers on any number of machines claim a key once; ``release_unique`` ends a
claim only for its holder, at once or (with a keep time) by moving its expiry. Both read the
time from the server (``TIME``), so the clients' clocks play no part. Each queue's
``uniques`` sorted set lists its claims, so deleting the queue deletes them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chicory.broker import OutgoingMessage
from chicory.unique import UniqueClaim, check_claim
from chicory_redis import scripts
from chicory_redis.connection import broker_errors
from chicory_redis.entries import encode_headers, new_message_id, pack_message
from chicory_redis.levels import level_of

if TYPE_CHECKING:
    from chicory_redis.base import BrokerBase

__all__ = ["holder", "publish_unique", "release_unique"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def publish_unique(
    broker: BrokerBase,
    queue: str,
    message: OutgoingMessage,
    *,
    key: str,
    holder: str,
    hold: float,
    keep: float,
) -> UniqueClaim:
    """Claim ``key`` and publish ``message`` in one script, or neither (see the module).

    Raises:
        ValueError: ``hold``/``keep`` out of range, or ``not_before`` is naive.
        MessageTooLargeError: the body exceeds ``max_body_bytes``.
        BrokerConnectionError: Redis could not be reached; nothing was written.
        PublishOutcomeUnknownError: the connection failed after the script was sent.
    """
    check_claim(hold, keep)
    broker.check_body(message.body)
    due = broker.due_ms(message.not_before)
    await broker.register_queues([queue])
    k = broker.keys.queue(queue)
    message_id = new_message_id()
    packed = pack_message(message_id, 0, encode_headers(message.headers), message.body)
    call_keys: tuple[str, ...] = (k.unique(key), k.uniques, k.stream, k.delayed)
    args: tuple[str | bytes | int, ...] = (
        holder,
        max(1, round(hold * 1000)),
        round(keep * 1000),
        "" if due is None else due,
        packed,
    )
    level = level_of(message.headers) if due is None and message.headers else 0
    if level:  # ready now, to its priority's stream
        call_keys = (k.unique(key), k.uniques, k.at_level(level).stream, k.delayed, k.levels)
        args += (str(level),)
    call = scripts.Call(scripts.PUBLISH_UNIQUE, call_keys, args)
    (reply,) = await broker.send([call.command()], f"publish to queue {queue!r}")
    published, current = int(reply[0]), _text(reply[1])
    return UniqueClaim(message_id=message_id if published else None, holder=current)


async def release_unique(broker: BrokerBase, queue: str, key: str, holder: str) -> bool:
    """End ``holder``'s claim on ``key`` (the ``release_unique`` script; safe to repeat).

    Raises:
        BrokerConnectionError: Redis could not be reached.
    """
    k = broker.keys.queue(queue)
    with broker_errors(broker.display_url, f"release unique key {key!r} of queue {queue!r}"):
        done = await scripts.run(
            broker.client, scripts.RELEASE_UNIQUE, (k.unique(key), k.uniques), (holder,)
        )
    return bool(done)


async def holder(broker: BrokerBase, queue: str, key: str) -> str | None:
    """Who holds ``key`` in ``queue``, or ``None``.

    Raises:
        BrokerConnectionError: Redis could not be reached.
    """
    k = broker.keys.queue(queue)
    with broker_errors(broker.display_url, f"read unique key {key!r} of queue {queue!r}"):
        held = await broker.client.get(k.unique(key))
    if held is None:
        return None
    return _text(held).partition(" ")[2]
