"""The tables of a ``sqlite://`` database, created on first connect.

Every table is prefixed ``chicory_``, so the queue can live in an application's own database
file. ``chicory_meta`` records the schema version; a database written by a newer version of
this package is refused rather than misread.

Messages (``chicory_messages``): one row per live message, ready, delayed or held. One time
column, ``available_at`` (seconds since the epoch, this host's clock), says when it may be
handed out: the publish time or ``not_before`` for a message nobody holds, the lease's end
for a held one. ``token`` is set by each claim (and cleared when the message is given back):

* **ready**: ``available_at <= now`` (held or not: a lapsed lease makes it ready again);
* **delayed**: ``token IS NULL AND available_at > now``;
* **in flight**: ``token IS NOT NULL AND available_at > now``.

Unique keys' claims (``chicory_unique_claims``, :mod:`chicory_sqlite.unique`): one row per
claimed key of a queue.

Progress reports (``chicory_progress``, :mod:`chicory_sqlite.progress`): a log of recent
reports, one row each, read in ``seq`` order by subscribers.

Ready messages are handed out highest ``priority`` first (0 to 9, from the
``chicory-priority`` header), then by ``(available_at, id)``: in the order they became ready.
The index on ``(queue, available_at, id)`` serves the claim of priority 0, the next-due query
and the counts; the partial index ``chicory_messages_ranked`` the claim of priorities above 0.

Upgrades (:data:`UPGRADES`) run when a connection opens a file at an older version, in the
same ``BEGIN IMMEDIATE`` transaction as the tables' creation, so concurrent openers upgrade
it once.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCHEMA", "SCHEMA_VERSION", "UPGRADES"]

UPGRADES: Final[tuple[str, ...]] = (
    # 2: priorities (set from the header of the messages already there).
    """
    ALTER TABLE chicory_messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    UPDATE chicory_messages SET priority = CAST(json_extract(headers, '$."chicory-priority"')
        AS INTEGER)
    WHERE json_extract(headers, '$."chicory-priority"') GLOB '[0-9]';
    CREATE INDEX chicory_messages_ranked
        ON chicory_messages (queue, priority, available_at, id) WHERE priority <> 0;
    """,
)
"""``UPGRADES[n - 2]`` brings a file from version ``n - 1`` to ``n`` (:data:`SCHEMA` is
version 1)."""

SCHEMA_VERSION: Final = 1 + len(UPGRADES)
"""The version this package writes and reads."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS chicory_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chicory_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    available_at REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    token TEXT
);
CREATE INDEX IF NOT EXISTS chicory_messages_due
    ON chicory_messages (queue, available_at, id);

CREATE TABLE IF NOT EXISTS chicory_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    reason TEXT NOT NULL,
    delivery_count INTEGER NOT NULL,
    dead_at INTEGER NOT NULL -- microseconds since the epoch
);
CREATE INDEX IF NOT EXISTS chicory_dead_letters_by_queue
    ON chicory_dead_letters (queue, id);
CREATE INDEX IF NOT EXISTS chicory_dead_letters_by_age
    ON chicory_dead_letters (queue, dead_at);

CREATE TABLE IF NOT EXISTS chicory_queues (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chicory_consumers (
    consumer TEXT NOT NULL,
    queue TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (consumer, queue)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chicory_results (
    task_id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    final INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS chicory_results_expiry ON chicory_results (expires_at);

CREATE TABLE IF NOT EXISTS chicory_workers (
    worker_id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS chicory_group_members (
    group_id TEXT NOT NULL,
    member INTEGER NOT NULL,
    data BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (group_id, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chicory_group_members_expiry
    ON chicory_group_members (expires_at);

CREATE TABLE IF NOT EXISTS chicory_unique_claims (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    keep_until REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chicory_unique_claims_expiry ON chicory_unique_claims (expires_at);

CREATE TABLE IF NOT EXISTS chicory_revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    expires_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS chicory_progress (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    data BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS chicory_progress_by_task ON chicory_progress (task_id, seq);
CREATE INDEX IF NOT EXISTS chicory_progress_expiry ON chicory_progress (expires_at);

CREATE TABLE IF NOT EXISTS chicory_flow (
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    holder TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (key, kind, holder)
) WITHOUT ROWID;
"""
"""Every table and index, idempotent (``IF NOT EXISTS``)."""
