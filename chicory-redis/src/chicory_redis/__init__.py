"""Chicory's Redis distribution: a Redis Streams broker and a Redis result backend.

Select them with a URL (``redis://``, ``rediss://`` or ``unix://``); see ``docs/redis.md``.
Importing this package imports nothing heavy; import :mod:`chicory_redis.broker` or
:mod:`chicory_redis.results` for the classes.
"""

__version__ = "0.1.0"
