"""The wire format: a versioned JSON envelope, optionally HMAC-signed. Never pickle.

A message body is the JSON object of :class:`TaskMessage` (``"v": 1``); arguments are plain
JSON values. Anyone who can write to the broker can at worst make a task run with bad
arguments (rejected by validation) or be dead-lettered as undecodable, never run code of
their choosing. With a ``signing_key``, every body carries an HMAC-SHA256 in the
``chicory-sig`` header and unsigned or tampered bodies are rejected as undecodable.

The signature covers the body and the message's headers that are not reserved for Chicory
(:mod:`chicory.headers`): a message without such headers is signed over its body alone;
one with them over ``chicory-headers-v1``, the headers as a JSON array of ``[name, value]``
pairs sorted by name, and the body, each on its own line. The first line keeps the two forms
apart (a body is a JSON object, so never starts with it). Chicory's own ``chicory-*``
headers (the signature itself, a task's history) are not signed: they never change what
runs, and tools that replay a dead letter may add to them. The one exception is
``chicory-flow``, the rest of a workflow (what the worker publishes after the task): it is
signed like a header of the producer's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs
import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from chicory.errors import MessageDecodeError, MessageTooLargeError
from chicory.headers import FLOW_HEADER, is_reserved

__all__ = [
    "ENVELOPE_VERSION",
    "SIGNATURE_HEADER",
    "Codec",
    "TaskMessage",
    "explain",
    "make_wire_converter",
    "parse_aware",
    "to_json",
]

ENVELOPE_VERSION: Final = 1
SIGNATURE_HEADER: Final = "chicory-sig"
_SIGNED_HEADERS_MARK: Final = b"chicory-headers-v1\n"
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024


def to_json(value: Any) -> bytes:
    """``orjson.dumps(value)``, copied into a bytes object of exactly its size.

    orjson writes into a buffer of 1 KiB or more and shrinks it with ``realloc``. With
    glibc's allocator, a batch of such bodies alive together (a ``delay_many`` batch, a
    memory:// backlog, a worker's batch of result records) takes a fresh piece of heap for
    each; freeing the batch gives the heap back to the kernel and the next batch faults it
    in again, about one page fault per body. A copy of the exact size comes from Python's
    own allocator and the buffer is freed at once: in batches of 1,000 small bodies, ~1.5 ->
    ~0.5 us per body and ~860 -> 0 page faults per batch (``benchmarks/bodies.py``), for
    ~40 ns more per body where nothing is batched.

    Raises:
        TypeError: ``value`` is not JSON-encodable.
    """
    return b"%s" % orjson.dumps(value)


@attrs.frozen(kw_only=True, slots=False)
class TaskMessage:
    """One task invocation on the wire.

    Not slotted: the worker builds each decoded message by adopting the parsed JSON object
    as the instance's ``__dict__`` (see :func:`_structure_fast`), which costs a fraction of
    nine frozen-attribute assignments on a path every task takes.

    Attributes:
        v: Envelope version; a worker rejects versions it does not know.
        id: The task id (results are stored under it; stable across retries).
        task: The registered task name.
        args: Positional arguments as JSON values.
        kwargs: Keyword arguments as JSON values.
        attempt: 1 for the first run, incremented by each retry.
        queue: The queue it was published to.
        created_at: Aware-UTC time the first attempt was published.
        eta: Aware-UTC time before which it must not run, if any.
    """

    v: int = ENVELOPE_VERSION
    id: str
    task: str
    args: list[Any] = attrs.field(factory=list)
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    attempt: int = 1
    queue: str = "default"
    created_at: datetime
    eta: datetime | None = None


def _strict_str(value: Any, kind: type) -> Any:
    if kind is not str:  # a str subclass, such as a str enum: its own constructor decides
        return kind(value)
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any, kind: type) -> Any:
    if kind is not int:  # an int subclass, such as an int enum
        return kind(value)
    if type(value) is not int:  # bool is not an int here either
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def make_wire_converter() -> cattrs.Converter:
    """Build the one converter used for wire models (orjson-ready, aware-UTC datetimes).

    Strings and integers are taken only as themselves: a converter that turns ``null`` into
    ``"None"`` or ``"1"`` into ``1`` would run a malformed message (or trust a malformed
    record) instead of rejecting it with the field named.
    """
    converter = make_converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)

    def structure_datetime(value: Any, _: type) -> datetime:
        if not isinstance(value, str):
            raise TypeError(f"expected an ISO-8601 string, got {type(value).__name__}")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(f"datetime {value!r} has no timezone; Chicory sends aware UTC")
        return moment

    converter.register_structure_hook(datetime, structure_datetime)
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    return converter


def _not_json(task: str, exc: TypeError) -> TypeError:
    return TypeError(
        f"arguments of task {task!r} are not JSON-encodable ({exc}); pass "
        "JSON values, attrs classes or dataclasses"
    )


def explain(exc: BaseException) -> str:
    """Turn a (cattrs) structuring error into one readable line naming each bad field."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(
            cattrs.transform_error(exc, format_exception=lambda e, _t: str(e) or type(e).__name__)
        )
    return str(exc) or type(exc).__name__


def parse_aware(text: Any) -> datetime | None:
    """``text`` as an aware datetime if it is an ISO-8601 string with a timezone, else
    ``None`` (for the fast decoding paths; the converter explains what is wrong)."""
    if type(text) is not str:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


_FIELD_COUNT: Final = len(attrs.fields(TaskMessage))
_new = object.__new__
_set = object.__setattr__


class _LastMoment:
    """The last ``created_at`` text parsed, and its datetime.

    A batch enqueued with ``delay_many`` shares one creation time, so consecutive messages
    usually carry the same text: comparing two strings is cheaper than parsing one. The pair
    is one tuple, replaced whole, so a codec shared by threads never pairs one message's text
    with another's time.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[str, datetime] | None = None

    def parse(self, text: Any) -> datetime | None:
        """``text`` as an aware datetime, or ``None`` if it is not an aware ISO-8601 string."""
        last = self.last
        if last is not None and text == last[0] and type(text) is str:
            return last[1]
        moment = parse_aware(text)
        if moment is not None:
            self.last = (text, moment)
        return moment


def _structure_fast(raw: dict[str, Any], last: _LastMoment) -> TaskMessage | None:
    """Build a well-formed envelope without the converter; ``None`` if anything is off.

    Chicory writes every field, so a missing one also takes the careful path (which applies
    the defaults and names what is wrong); so does an unknown extra field (which the careful
    path ignores). On success ``raw`` becomes the message's ``__dict__``, its two times
    replaced by datetimes.
    """
    if len(raw) != _FIELD_COUNT:
        return None
    try:
        task_id, task, args, kwargs = raw["id"], raw["task"], raw["args"], raw["kwargs"]
        attempt, queue, created_text, eta_text = (
            raw["attempt"],
            raw["queue"],
            raw["created_at"],
            raw["eta"],
        )
    except KeyError:
        return None
    if not (
        type(task_id) is str
        and type(task) is str
        and type(args) is list
        and type(kwargs) is dict
        and type(attempt) is int
        and type(queue) is str
    ):
        return None
    created_at = last.parse(created_text)
    eta = None if eta_text is None else parse_aware(eta_text)
    if created_at is None or (eta_text is not None and eta is None):
        return None
    raw["created_at"] = created_at
    raw["eta"] = eta
    message: TaskMessage = _new(TaskMessage)
    _set(message, "__dict__", raw)  # the nine fields, checked above (v by the caller)
    return message


class Codec:
    """Encodes and decodes :class:`TaskMessage` bodies, enforcing size and signatures.

    Args:
        max_message_bytes: Largest encoded body accepted at publish time.
        signing_key: When set, bodies are signed and unsigned bodies rejected.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        signing_key: bytes | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self._key = signing_key
        self._converter = make_wire_converter()
        self._last_created = _LastMoment()

    def __repr__(self) -> str:
        signed = "signed" if self._key else "unsigned"
        return f"Codec(max_message_bytes={self.max_message_bytes}, {signed})"

    def encode(
        self, message: TaskMessage, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers for ``message``.

        ``headers`` (already checked, see :func:`chicory.headers.check_headers`) are copied
        into the headers returned, beside the signature; any signature among them is
        replaced.

        Raises:
            MessageTooLargeError: the body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable.
        """
        return self.encode_fields(
            message.id,
            message.task,
            message.args,
            message.kwargs,
            queue=message.queue,
            created_at=message.created_at,
            eta=message.eta,
            attempt=message.attempt,
            version=message.v,
            headers=headers,
        )

    def encode_fields(
        self,
        task_id: str,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        queue: str,
        created_at: datetime,
        eta: datetime | None = None,
        attempt: int = 1,
        version: int = ENVELOPE_VERSION,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Like :meth:`encode`, from the fields of a :class:`TaskMessage` (no instance built).

        Raises:
            MessageTooLargeError: the body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable.
        """
        payload = {
            "v": version,
            "id": task_id,
            "task": task,
            "args": args,
            "kwargs": kwargs,
            "attempt": attempt,
            "queue": queue,
            "created_at": created_at,
            "eta": eta,
        }
        return self._seal(task, payload, headers)

    def encode_many(
        self,
        task: str,
        calls: Iterable[tuple[str, list[Any], dict[str, Any]]],
        *,
        queue: str,
        created_at: datetime,
    ) -> list[tuple[bytes, dict[str, str]]]:
        """Encode a batch of first attempts of ``task``: one body and headers per
        ``(task_id, args, kwargs)``, all created at ``created_at`` and ready now.

        The same as calling :meth:`encode_fields` for each, at a fraction of the cost per
        message (one payload object is filled in and serialized again for each).

        Raises:
            MessageTooLargeError: a body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable.
        """
        payload: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": "",
            "task": task,
            "args": [],
            "kwargs": {},
            "attempt": 1,
            "queue": queue,
            "created_at": created_at,
            "eta": None,
        }
        if self._key is not None:  # signing dominates: no need to be clever
            out = []
            for task_id, args, kwargs in calls:
                payload.update(id=task_id, args=args, kwargs=kwargs)
                out.append(self._seal(task, payload))
            return out
        dumps, limit = orjson.dumps, self.max_message_bytes
        encoded: list[tuple[bytes, dict[str, str]]] = []
        for task_id, args, kwargs in calls:
            payload["id"] = task_id
            payload["args"] = args
            payload["kwargs"] = kwargs
            try:
                body = b"%s" % dumps(payload)  # to_json, inlined: see its docstring
            except TypeError as exc:
                raise _not_json(task, exc) from exc
            if len(body) > limit:
                raise self._too_large(task, body)
            encoded.append((body, {}))
        return encoded

    def _seal(
        self, task: str, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Serialize ``payload``, check its size, sign it (and ``headers``) if the codec
        signs; return the body and its headers."""
        try:
            body = to_json(payload)
        except TypeError as exc:
            raise _not_json(task, exc) from exc
        if len(body) > self.max_message_bytes:
            raise self._too_large(task, body)
        if self._key is None:
            if not headers:
                return body, {}
            return body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
        out = dict(headers) if headers else {}
        out[SIGNATURE_HEADER] = self._sign(body, out)
        return body, out

    def _too_large(self, task: str, body: bytes) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"message for task {task!r} is {len(body)} bytes, over the limit of "
            f"{self.max_message_bytes}; pass a reference (a key or URL) instead of the data, "
            "or raise max_message_bytes"
        )

    def decode(self, body: bytes, headers: Mapping[str, str] | None = None) -> TaskMessage:
        """Parse and check a body.

        Raises:
            MessageDecodeError: the body is not a valid, correctly signed envelope.
        """
        if self._key is not None:
            signature = headers.get(SIGNATURE_HEADER) if headers else None
            if type(signature) is not str or not hmac.compare_digest(
                signature, self._sign(body, headers)
            ):
                raise MessageDecodeError("message signature is missing or wrong; not running it")
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MessageDecodeError(f"body is not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise MessageDecodeError(f"body is JSON {type(raw).__name__}, not an envelope object")
        version = raw.get("v")
        if version != ENVELOPE_VERSION:
            raise MessageDecodeError(
                f"envelope version {version!r} is not supported (this worker reads "
                f"v{ENVELOPE_VERSION}); upgrade the worker or the producer"
            )
        message = _structure_fast(raw, self._last_created)
        if message is not None:
            return message
        try:  # the careful path: slower, but names every bad field
            return self._converter.structure(raw, TaskMessage)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
            raise MessageDecodeError(f"malformed envelope: {explain(exc)}") from exc

    def _sign(self, body: bytes, headers: Mapping[str, str] | None) -> str:
        """The signature of ``body`` and the headers of ``headers`` not reserved for
        Chicory (see the module docstring)."""
        assert self._key is not None
        if headers and (len(headers) > 1 or SIGNATURE_HEADER not in headers):
            signed = sorted(
                [name, value]
                for name, value in headers.items()
                if not is_reserved(name) or name == FLOW_HEADER
            )
            if signed:
                body = b"%s%s\n%s" % (_SIGNED_HEADERS_MARK, orjson.dumps(signed), body)
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()
