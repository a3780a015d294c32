"""Encoding and decoding :class:`~chicory.envelope.TaskMessage` bodies: the one place
where sizes, strictness (:mod:`chicory.wire_rules`) and signatures (:mod:`chicory.signing`)
are enforced, on the producer's side and on the worker's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import cattrs
import orjson

from chicory.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ENVELOPE_VERSION,
    LastMoment,
    TaskMessage,
    explain,
    isoformat,
    make_wire_converter,
    structure_fast,
)
from chicory.errors import MessageDecodeError, MessageTooLargeError
from chicory.signing import SIGNATURE_HEADER, Signer
from chicory.wire_rules import (
    MAX_DEPTH,
    check_depth,
    check_header_types,
    field_problem,
    non_finite_path,
)

__all__ = ["Codec"]

_SHALLOW_BYTES: Final = 2 * MAX_DEPTH


def _not_json(task: str, exc: TypeError) -> TypeError:
    return TypeError(
        f"arguments of task {task!r} are not JSON-encodable ({exc}); pass JSON values, "
        "attrs classes or dataclasses (a datetime as an ISO-8601 string, say)"
    )


_WIRE_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME  # a datetime argument is refused
_dumps = orjson.dumps


def _wire_json(task: str, payload: dict[str, Any]) -> bytes:
    """The body of ``payload``, sized exactly (see :func:`to_json`); refuses values that
    are not JSON: a datetime (the envelope's own times are text already), NaN, infinity.

    Raises:
        TypeError: a value is not JSON-encodable.
        ValueError: a number is NaN or infinite.
    """
    try:
        body = b"%s" % _dumps(payload, option=_WIRE_OPTIONS)
    except TypeError as exc:
        raise _not_json(task, exc) from exc
    # orjson writes NaN and infinities as null: look for them only when there are more
    # nulls than the envelope's own (an unset eta).
    if body.count(b"null") > (payload["eta"] is None):
        _refuse_non_finite(task, payload)
    return body


def _refuse_non_finite(task: str, payload: dict[str, Any]) -> None:
    where = non_finite_path(payload["args"], "args") or non_finite_path(payload["kwargs"], "kwargs")
    if where is not None:
        raise ValueError(
            f"argument {where} of task {task!r} is NaN or infinite, which JSON cannot "
            "carry; pass a finite number, None, or a string such as 'nan'"
        )


class Codec:
    """Encodes and decodes :class:`~chicory.envelope.TaskMessage` bodies, enforcing size,
    strictness and signatures.

    Args:
        max_message_bytes: Largest encoded body written at publish time, and read by a
            worker (a larger one is dead-lettered unread).
        signing_key: When set, bodies are signed with it and unsigned bodies rejected.
        verification_keys: Further keys whose signatures are accepted (rotation: see
            :mod:`chicory.signing`); they need a ``signing_key``.

    Raises:
        ValueError: ``verification_keys`` without a ``signing_key``, or an empty key.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        signing_key: bytes | None = None,
        verification_keys: Sequence[bytes] = (),
    ) -> None:
        if verification_keys and signing_key is None:
            raise ValueError(
                "verification_keys need a signing_key: a worker signs the retries it "
                "publishes; pass the current key as signing_key"
            )
        self._max = self._look_closer = 0
        self.max_message_bytes = max_message_bytes
        self._signer = None if signing_key is None else Signer(signing_key, verification_keys)
        self._converter = make_wire_converter()
        self._last_created = LastMoment()

    def __repr__(self) -> str:
        signed = "unsigned" if self._signer is None else f"signed, {self._signer!r}"
        return f"Codec(max_message_bytes={self.max_message_bytes}, {signed})"

    @property
    def max_message_bytes(self) -> int:
        """Largest body written, and read (a larger one is dead-lettered unread)."""
        return self._max

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self._max = value
        # The one size a body is compared with on the hot path: a body below both limits
        # is neither too large nor long enough to nest too deep.
        self._look_closer = min(value, _SHALLOW_BYTES)

    @property
    def signs(self) -> bool:
        """Whether bodies are signed (and unsigned ones refused)."""
        return self._signer is not None

    def encode(
        self, message: TaskMessage, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers for ``message``.

        ``headers`` (already checked, see :func:`chicory.headers.check_headers`) are copied
        into the headers returned, beside the signature; any signature among them is
        replaced.

        Raises:
            MessageTooLargeError: the body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable (a datetime, say), or nests
                deeper than JSON is written here (:data:`chicory.wire_rules.MAX_DEPTH`).
            ValueError: an argument is NaN or infinite.
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
        """Like :meth:`encode`, from the fields of a message (no instance built).

        Raises:
            MessageTooLargeError: the body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable.
            ValueError: an argument is NaN or infinite.
        """
        payload = {
            "v": version,
            "id": task_id,
            "task": task,
            "args": args,
            "kwargs": kwargs,
            "attempt": attempt,
            "queue": queue,
            "created_at": isoformat(created_at),
            "eta": None if eta is None else isoformat(eta),
        }
        if self._signer is None and not headers:  # _seal's commonest case, inlined
            body = _wire_json(task, payload)
            if len(body) > self._max:
                raise self._too_large(task, body)
            return body, {}
        return self._seal(task, payload, headers)

    def encode_many(
        self,
        task: str,
        calls: Iterable[tuple[str, list[Any], dict[str, Any]]],
        *,
        queue: str,
        created_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> list[tuple[bytes, dict[str, str]]]:
        """Encode a batch of first attempts of ``task``: one body and headers per
        ``(task_id, args, kwargs)``, all created at ``created_at`` and ready now, each with
        Chicory's own ``headers`` (signed with it when the codec signs).

        The same as calling :meth:`encode_fields` for each, at a fraction of the cost per
        message (one payload object is filled in and serialized again for each).

        Raises:
            MessageTooLargeError: a body is larger than ``max_message_bytes``.
            TypeError: an argument is not JSON-encodable.
            ValueError: an argument is NaN or infinite.
        """
        payload: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": "",
            "task": task,
            "args": [],
            "kwargs": {},
            "attempt": 1,
            "queue": queue,
            "created_at": isoformat(created_at),
            "eta": None,
        }
        if self._signer is not None:  # signing dominates: no need to be clever
            out = []
            for task_id, args, kwargs in calls:
                payload.update(id=task_id, args=args, kwargs=kwargs)
                out.append(self._seal(task, payload, headers))
            return out
        dumps, options, limit = _dumps, _WIRE_OPTIONS, self.max_message_bytes
        encoded: list[tuple[bytes, dict[str, str]]] = []
        for task_id, args, kwargs in calls:
            payload["id"] = task_id
            payload["args"] = args
            payload["kwargs"] = kwargs
            try:
                body = b"%s" % dumps(payload, option=options)  # _wire_json, inlined
            except TypeError as exc:
                raise _not_json(task, exc) from exc
            if body.count(b"null") > 1:  # more than the eta's: a NaN or infinity?
                _refuse_non_finite(task, payload)
            if len(body) > limit:
                raise self._too_large(task, body)
            encoded.append((body, {}))
        if headers:
            for _, sent in encoded:
                sent.update(headers)
        return encoded

    def _seal(
        self, task: str, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Serialize ``payload``, check its size, sign it (and ``headers``) if the codec
        signs; return the body and its headers."""
        body = _wire_json(task, payload)
        if len(body) > self.max_message_bytes:
            raise self._too_large(task, body)
        if self._signer is None:
            if not headers:
                return body, {}
            return body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
        out = dict(headers) if headers else {}
        out.pop(SIGNATURE_HEADER, None)
        out[SIGNATURE_HEADER] = self._signer.sign(body, out)
        return body, out

    def _too_large(self, task: str, body: bytes) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"message for task {task!r} is {len(body)} bytes, over the limit of "
            f"{self.max_message_bytes}; pass a reference (a key or URL) instead of the data, "
            "or raise max_message_bytes"
        )

    def decode(self, body: bytes, headers: Mapping[str, str] | None = None) -> TaskMessage:
        """Parse and check a body (the rules: :mod:`chicory.wire_rules`).

        Raises:
            MessageDecodeError: the body is not a valid, correctly signed envelope; the
                message names what is wrong.
        """
        size = len(body)
        if size > self._look_closer and size > self._max:
            raise MessageDecodeError(
                f"message is {size} bytes, over this worker's max_message_bytes of "
                f"{self._max}; not reading it (send a reference to the data instead, or "
                "give producers and workers the same limit)"
            )
        if headers:
            check_header_types(headers)
        if self._signer is not None:
            self._signer.verify(body, headers)
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MessageDecodeError(f"body is not JSON ({exc})") from exc
        if type(raw) is not dict:
            raise MessageDecodeError(f"body is JSON {type(raw).__name__}, not an envelope object")
        version = raw.get("v")
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise MessageDecodeError(
                f"envelope version {version!r} is not supported (this worker reads "
                f"v{ENVELOPE_VERSION}); upgrade the worker or the producer"
            )
        if size > self._look_closer:  # a shorter body cannot nest too deep
            check_depth(body, raw)
        # No backslash (92) nor DEL (127) byte: see structure_fast. A byte as an int is
        # found by memchr; as a bytes object, by the general search (~10x the cost).
        message = structure_fast(raw, self._last_created, 92 not in body and 127 not in body)
        if message is not None:
            return message
        try:  # the careful path: slower, but names every bad field
            message = self._converter.structure(raw, TaskMessage)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
            raise MessageDecodeError(f"malformed envelope: {explain(exc)}") from exc
        problem = field_problem(
            message.id, message.task, message.attempt, message.queue, message.args, message.kwargs
        )
        if problem is not None:
            raise MessageDecodeError(f"malformed envelope: {problem}")
        return message
