"""The wire format: a versioned JSON envelope, optionally HMAC-signed. Never pickle.

A message body is the JSON object of :class:`TaskMessage` (``"v": 1``); arguments are plain
JSON values. Anyone who can write to the broker can at worst make a task run with bad
arguments (rejected by validation) or be dead-lettered as undecodable, never run code of
their choosing. The decoder checks every field instead of coercing it (the rules are in
:mod:`chicory.wire_rules`). With a signing key, every body carries an HMAC-SHA256 in the
``chicory-sig`` header and unsigned or tampered bodies are rejected as undecodable (what
is signed, and what a signature does not promise: :mod:`chicory.signing`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import attrs
import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from chicory.signing import SIGNATURE_HEADER
from chicory.wire_rules import MAX_ATTEMPT, MAX_ID_LENGTH

__all__ = [
    "ENVELOPE_VERSION",
    "SIGNATURE_HEADER",
    "LastMoment",
    "TaskMessage",
    "explain",
    "isoformat",
    "make_wire_converter",
    "parse_aware",
    "structure_fast",
    "to_json",
]

ENVELOPE_VERSION: Final = 1
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


def isoformat(moment: datetime) -> str:
    """``moment.isoformat()``, the text of the envelope's times.

    For an aware-UTC ``datetime`` (every ``created_at`` a producer writes) orjson writes
    the same text at under a third of the cost: ``isoformat`` spends most of its time
    asking the timezone for its offset and formatting it. Anything else is formatted by
    ``isoformat`` itself.
    """
    if moment.tzinfo is UTC and type(moment) is datetime:
        return orjson.dumps(moment)[1:-1].decode()
    return moment.isoformat()


@attrs.frozen(kw_only=True, slots=False)
class TaskMessage:
    """One task invocation on the wire.

    Not slotted: the worker builds each decoded message by adopting the parsed JSON object
    as the instance's ``__dict__`` (see :func:`structure_fast`), which costs a fraction of
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
    converter.register_structure_hook_func(lambda kind: kind == list[Any], _strict_array)
    converter.register_structure_hook_func(lambda kind: kind == dict[str, Any], _strict_object)
    return converter


def _strict_array(value: Any, _: type) -> list[Any]:
    if type(value) is not list:  # never list("ab") or list({"x": 1})
        raise TypeError(f"expected a JSON array, got {type(value).__name__}")
    return value


def _strict_object(value: Any, _: type) -> dict[str, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


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


class LastMoment:
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


def structure_fast(
    raw: dict[str, Any], last: LastMoment, plain: bool = False
) -> TaskMessage | None:
    """Build a well-formed envelope without the converter; ``None`` if anything is off.

    Chicory writes every field, so a missing one also takes the careful path (which applies
    the defaults and names what is wrong); so does an unknown extra field (which the careful
    path ignores). On success ``raw`` becomes the message's ``__dict__``, its two times
    replaced by datetimes.

    ``plain`` says that the body held no backslash and no DEL byte: then an ASCII id cannot
    hold a character that is not printable (JSON writes control characters as escapes), and
    the per-character check is skipped for it.
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
        and 0 < attempt <= MAX_ATTEMPT
        and task_id
        and len(task_id) <= MAX_ID_LENGTH
        and task
        and queue
        and ((plain and task_id.isascii()) or task_id.isprintable())
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
