"""Message signatures: HMAC-SHA256 over a body and the headers that change what runs.

What a signature promises, and what it does not:

* **Integrity and authenticity.** A worker with a signing key runs only messages whose
  ``chicory-sig`` header is the HMAC of their body and signed headers under one of its keys:
  a message written by someone without a key, or changed after it was signed (an argument,
  the task name, its id, a user header, a time limit), is dead-lettered as undecodable and
  never runs.
* **Not confidentiality.** Bodies and headers travel and rest in clear text on the broker;
  encrypt the connection (``rediss://``) and keep secrets out of arguments.
* **Not freshness (no replay protection).** A signed message copied back onto a queue by
  someone with write access to the broker runs again, and so does a dead letter replayed
  on purpose. Rejecting replays soundly would need a record of every message id ever run,
  shared by all workers and kept for as long as an old message could come back; a task
  that must not run twice should instead be idempotent, keyed by its task id
  (``apply_async(task_id=...)`` with an idempotency key): its first final result is kept,
  and a second run can look for it.

The signed text is the body alone for a message without signed headers, or
``chicory-headers-v1``, the signed headers as a JSON array of ``[name, value]`` pairs
sorted by name, and the body, each on its own line. Every header is signed except the
signature itself, the task's history (``chicory-history``, which retries and replays add
to) and its count of waits for a concurrency permit (``chicory-permit-waits``), neither of
which changes what runs; that includes Chicory's time-limit and priority headers.
The first line keeps the two forms apart (a body is a JSON object, so never starts with it).

Keys rotate without a stop: give every worker the new key as a verification key first
(``verification_keys=[new]``), then make it the signing key everywhere and keep the old
one among the verification keys until no message signed with it can still be queued or
delayed, then drop it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final

import orjson

from chicory.errors import MessageDecodeError

__all__ = ["SIGNATURE_HEADER", "UNSIGNED_HEADERS", "Signer"]

SIGNATURE_HEADER: Final = "chicory-sig"
UNSIGNED_HEADERS: Final = frozenset({SIGNATURE_HEADER, "chicory-history", "chicory-permit-waits"})
"""Headers a signature does not cover: itself, the history retries and replays add to, and
the count of waits for a concurrency permit (:mod:`chicory.worker.gate`), which a worker
adds as it hands a message back and which never changes what runs."""

_SIGNED_HEADERS_MARK: Final = b"chicory-headers-v1\n"
_DIGEST_LENGTH: Final = 64  # hex digits of an HMAC-SHA256


class Signer:
    """Signs with one key and verifies with that key and any number of older ones.

    Args:
        signing_key: The key new signatures are made with (never empty).
        verification_keys: Further keys whose signatures are accepted (keys being rotated
            in or out).

    Raises:
        ValueError: a key is empty.
    """

    __slots__ = ("_key", "_keys")

    def __init__(self, signing_key: bytes, verification_keys: Iterable[bytes] = ()) -> None:
        keys = [signing_key]
        for key in verification_keys:
            if key not in keys:
                keys.append(key)
        if not all(keys):
            raise ValueError("a signing or verification key is empty; use a long random key")
        self._key = signing_key
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"Signer({len(self._keys)} key(s))"  # never the keys themselves

    def sign(self, body: bytes, headers: Mapping[str, str] | None) -> str:
        """The signature (64 hex digits) of ``body`` and the signed ones of ``headers``."""
        return hmac.new(self._key, _signed_text(body, headers), hashlib.sha256).hexdigest()

    def verify(self, body: bytes, headers: Mapping[str, str] | None) -> None:
        """Check the ``chicory-sig`` header of a message against every key.

        Raises:
            MessageDecodeError: the signature is missing, not 64 hex digits, or made with
                none of the keys (or the message changed since it was signed).
        """
        signature = headers.get(SIGNATURE_HEADER) if headers else None
        if signature is None:
            raise MessageDecodeError(
                "message has no signature (chicory-sig header) and this worker requires "
                "one; not running it"
            )
        if type(signature) is not str or len(signature) != _DIGEST_LENGTH:
            raise MessageDecodeError("message signature is malformed; not running it")
        try:
            given = signature.encode("ascii")
        except UnicodeEncodeError:
            raise MessageDecodeError("message signature is malformed; not running it") from None
        try:
            text = _signed_text(body, headers)
        except (TypeError, ValueError) as exc:  # a header that is not text (not ours)
            raise MessageDecodeError(f"message headers cannot be checked ({exc})") from exc
        matched = False
        for key in self._keys:  # every key, so the time taken does not say which matched
            matched |= hmac.compare_digest(
                given, hmac.new(key, text, hashlib.sha256).hexdigest().encode()
            )
        if not matched:
            raise MessageDecodeError(
                "message signature is wrong (made with none of this worker's keys, or the "
                "message changed since it was signed); not running it"
            )


def _signed_text(body: bytes, headers: Mapping[str, str] | None) -> bytes:
    """The text a signature covers (see the module docstring)."""
    if not headers or (len(headers) == 1 and SIGNATURE_HEADER in headers):
        return body
    signed = sorted(
        [name, value] for name, value in headers.items() if name not in UNSIGNED_HEADERS
    )
    if not signed:
        return body
    return b"%s%s\n%s" % (_SIGNED_HEADERS_MARK, orjson.dumps(signed), body)
