"""The tables, and how they are created and upgraded (``chicory postgres migrate URL``).

Everything lives in one PostgreSQL schema (``chicory`` unless the URL says ``?schema=...``):

* ``messages``: live messages. A message is **ready** when ``locked_until IS NULL`` and
  ``run_at <= now``, **delayed** when ``locked_until IS NULL`` and ``run_at > now``, and
  **in flight** while ``locked_until > now`` (its holder's ``token`` then settles it). A
  lease that ran out (``locked_until <= now``) is taken over by the next claim, which gives
  the message a new token, so a late settle by the old holder matches nothing. Its
  ``priority`` (0 to 9, from the ``chicory-priority`` header) orders the ready messages of
  a queue: the index ``messages_ready`` serves priority 0, ``messages_ranked`` the rest.
* ``dead_letters``: messages moved out of circulation, with the reason; plain rows an
  operator can query, replay (``chicory dead replay``) or delete.
* ``queues``: the names of the queues in use (for listings); ``consumers``: each open
  consumer's presence on its queues, renewed while it fetches (for counts of consumers).
* ``unique_keys``: the keys of unique enqueues, each held by a task id until its run is
  final (and its ``keep_until``), or until ``held_until`` at the latest.
* ``results``, ``workers``, ``revocations``: the result backend's records, each with an
  ``expires_at``; expired rows are invisible at once and deleted by a periodic prune.
* ``group_members``: one row per recorded member of a workflow group (the result backend's
  group joins), with the group's ``expires_at``; pruned like the others.
* ``flow_starts``, ``flow_turns``, ``flow_lines``, ``flow_permits``: rate limits' counted
  starts, waiting turns and line ends, and concurrency permits (:mod:`chicory_postgres.flow`),
  changed only by the functions ``flow_take_turn`` and ``flow_acquire_permit`` (each one
  statement holding the key's advisory lock) and by single-statement renewals and releases.

Migrations are numbered SQL scripts applied in order under a transaction-scoped advisory
lock (concurrent workers starting at once apply each script once); the version reached is
kept in ``schema_version``. Brokers and backends migrate on first connect unless built
with ``migrate=False``, which makes them refuse a database not at :data:`CURRENT_VERSION`.

Bodies are stored out of line without compression (``STORAGE EXTERNAL``): most are small
JSON anyway, and compressing a large one on every insert costs the server more CPU than the
bytes it saves.

Autovacuum: queue tables are rewritten constantly (every claim and settle is an update or a
delete), so ``messages`` and ``results`` vacuum after a fixed number of dead rows rather than
a fraction of the table, and without cost-based throttling; ``docs/postgres.md`` explains
the numbers and how to change them with ``ALTER TABLE ... SET (...)``.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import sql

from chicory.errors import ConfigurationError

__all__ = ["CURRENT_VERSION", "MIGRATIONS", "current_version", "ensure_schema", "migrate"]

_FLOW: Final = """
    CREATE TABLE {s}.flow_starts (key text NOT NULL, at float8 NOT NULL)
        WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
    CREATE INDEX flow_starts_by_time ON {s}.flow_starts (key, at);
    CREATE TABLE {s}.flow_turns (
        key text NOT NULL,
        holder text NOT NULL,
        at float8 NOT NULL,
        PRIMARY KEY (key, holder)
    ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
    CREATE INDEX flow_turns_by_time ON {s}.flow_turns (key, at);
    CREATE TABLE {s}.flow_lines (key text PRIMARY KEY, line float8 NOT NULL);
    CREATE TABLE {s}.flow_permits (
        key text NOT NULL,
        holder text NOT NULL,
        expires_at float8 NOT NULL,
        PRIMARY KEY (key, holder)
    ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

    CREATE FUNCTION {s}.flow_take_turn(
        p_key text, p_holder text, p_limit integer, p_period float8, p_slack float8,
        p_grace float8
    ) RETURNS float8 LANGUAGE plpgsql AS $$
    DECLARE
        v_now float8; v_turn float8; v_line float8; v_used integer; v_at float8;
        v_free float8;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('chicory flow {s} ' || p_key, 0));
        v_now := extract(epoch FROM clock_timestamp());
        DELETE FROM {s}.flow_turns t WHERE t.key = p_key AND t.at < v_now - p_grace;
        DELETE FROM {s}.flow_starts s WHERE s.key = p_key AND s.at <= v_now - p_period;
        SELECT t.at INTO v_turn FROM {s}.flow_turns t
        WHERE t.key = p_key AND t.holder = p_holder;
        IF v_turn > v_now THEN
            RETURN v_turn - v_now;
        END IF;
        IF v_turn IS NOT NULL THEN
            DELETE FROM {s}.flow_turns t WHERE t.key = p_key AND t.holder = p_holder;
        END IF;
        SELECT coalesce(max(l.line), 0) INTO v_line FROM {s}.flow_lines l WHERE l.key = p_key;
        SELECT count(*) INTO v_used FROM {s}.flow_starts s WHERE s.key = p_key;
        IF (v_turn IS NOT NULL OR v_line <= v_now) AND v_used < p_limit THEN
            INSERT INTO {s}.flow_starts (key, at) VALUES (
                p_key,
                CASE WHEN v_turn IS NULL THEN v_now ELSE greatest(v_turn, v_now - p_slack) END
            );
            RETURN 0;
        END IF;
        v_at := greatest(v_line, v_now);
        IF v_used >= p_limit THEN
            SELECT s.at INTO v_free FROM {s}.flow_starts s WHERE s.key = p_key
            ORDER BY s.at OFFSET v_used - p_limit LIMIT 1;
            v_at := greatest(v_at, v_free + p_period);
        END IF;
        INSERT INTO {s}.flow_turns AS t (key, holder, at) VALUES (p_key, p_holder, v_at)
        ON CONFLICT (key, holder) DO UPDATE SET at = EXCLUDED.at;
        INSERT INTO {s}.flow_lines AS l (key, line) VALUES (p_key, v_at + p_period / p_limit)
        ON CONFLICT (key) DO UPDATE SET line = EXCLUDED.line;
        RETURN v_at - v_now;
    END
    $$;

    CREATE FUNCTION {s}.flow_acquire_permit(
        p_key text, p_holder text, p_limit integer, p_ttl float8
    ) RETURNS boolean LANGUAGE plpgsql AS $$
    DECLARE
        v_now float8; v_held integer; v_mine boolean;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('chicory flow {s} ' || p_key, 0));
        v_now := extract(epoch FROM clock_timestamp());
        DELETE FROM {s}.flow_permits p WHERE p.key = p_key AND p.expires_at <= v_now;
        SELECT count(*), coalesce(bool_or(p.holder = p_holder), false) INTO v_held, v_mine
        FROM {s}.flow_permits p WHERE p.key = p_key;
        IF NOT v_mine AND v_held >= p_limit THEN
            RETURN false;
        END IF;
        INSERT INTO {s}.flow_permits AS p (key, holder, expires_at)
        VALUES (p_key, p_holder, v_now + p_ttl)
        ON CONFLICT (key, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at;
        RETURN true;
    END
    $$;
"""
"""Migration 5's flow-control tables and functions (:mod:`chicory_postgres.flow`)."""

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the broker's and the result backend's tables.
    """
    CREATE TABLE {s}.messages (
        id uuid PRIMARY KEY,
        queue text NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        body bytea NOT NULL,
        headers jsonb NOT NULL,
        run_at timestamptz NOT NULL,
        locked_until timestamptz,
        token uuid,
        delivery_count integer NOT NULL DEFAULT 0
    ) WITH (
        fillfactor = 80,
        autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 2000,
        autovacuum_vacuum_insert_scale_factor = 0,
        autovacuum_vacuum_insert_threshold = 10000,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 0
    );
    ALTER TABLE {s}.messages ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE INDEX messages_ready ON {s}.messages (queue, run_at, seq)
        WHERE locked_until IS NULL;
    CREATE INDEX messages_leased ON {s}.messages (queue, locked_until)
        WHERE locked_until IS NOT NULL;

    CREATE TABLE {s}.dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue text NOT NULL,
        message_id uuid NOT NULL,
        body bytea NOT NULL,
        headers jsonb NOT NULL,
        reason text NOT NULL,
        delivery_count integer NOT NULL,
        dead_at timestamptz NOT NULL DEFAULT statement_timestamp()
    );
    CREATE INDEX dead_letters_by_queue ON {s}.dead_letters (queue, id);
    CREATE INDEX dead_letters_by_time ON {s}.dead_letters (queue, dead_at);

    CREATE TABLE {s}.queues (name text PRIMARY KEY);

    CREATE TABLE {s}.consumers (
        queue text NOT NULL,
        consumer_id uuid NOT NULL,
        seen_until timestamptz NOT NULL,
        PRIMARY KEY (queue, consumer_id)
    );

    CREATE TABLE {s}.results (
        task_id text PRIMARY KEY,
        data bytea NOT NULL,
        final boolean NOT NULL,
        expires_at timestamptz NOT NULL
    ) WITH (
        autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0
    );
    CREATE INDEX results_expiry ON {s}.results (expires_at);

    CREATE TABLE {s}.workers (
        worker_id text PRIMARY KEY,
        data bytea NOT NULL,
        expires_at timestamptz NOT NULL
    );

    CREATE TABLE {s}.revocations (
        task_id text PRIMARY KEY,
        expires_at timestamptz NOT NULL
    );
    """,
    # 2: unique enqueue's keys.
    """
    CREATE TABLE {s}.unique_keys (
        queue text NOT NULL,
        key text NOT NULL,
        holder text NOT NULL,
        held_until timestamptz NOT NULL,
        keep_until timestamptz NOT NULL,
        PRIMARY KEY (queue, key)
    );
    CREATE INDEX unique_keys_expiry ON {s}.unique_keys (held_until);
    """,
    # 3: the members of workflow groups (chicory.workflow.joins).
    """
    CREATE TABLE {s}.group_members (
        group_id text NOT NULL,
        member integer NOT NULL,
        data bytea NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (group_id, member)
    );
    CREATE INDEX group_members_expiry ON {s}.group_members (expires_at);
    """,
    # 4: headers as JSON bytes: jsonb refuses a NUL character, which a header may hold.
    """
    ALTER TABLE {s}.messages
        ALTER COLUMN headers TYPE bytea USING convert_to(headers::text, 'UTF8');
    ALTER TABLE {s}.dead_letters
        ALTER COLUMN headers TYPE bytea USING convert_to(headers::text, 'UTF8');
    """,
    # 5: priorities (a column from the chicory-priority header, an index of the ready
    # messages above 0) and flow control (rate-limit starts, turns and lines; permits).
    """
    ALTER TABLE {s}.messages ADD COLUMN priority smallint NOT NULL DEFAULT 0;
    CREATE FUNCTION {s}.header_priority(headers bytea) RETURNS smallint
        LANGUAGE sql IMMUTABLE STRICT AS $$
        SELECT coalesce(substring(convert_from(headers, 'UTF8')
                                  FROM '"chicory-priority": ?"([0-9])"')::smallint, 0)
    $$;
    UPDATE {s}.messages SET priority = {s}.header_priority(headers)
    WHERE position('"chicory-priority"'::bytea IN headers) > 0;
    CREATE INDEX messages_ranked ON {s}.messages (queue, priority, run_at, seq)
        WHERE locked_until IS NULL AND priority > 0;
    """
    + _FLOW,
    # 6: the log of progress reports (chicory_postgres.progress), read in seq order.
    """
    CREATE TABLE {s}.progress (
        seq bigserial PRIMARY KEY,
        task_id text NOT NULL,
        data bytea NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX progress_by_task ON {s}.progress (task_id, seq);
    CREATE INDEX progress_expiry ON {s}.progress (expires_at);
    """,
)
"""Migration scripts; ``MIGRATIONS[n - 1]`` brings a schema from version ``n - 1`` to ``n``."""

CURRENT_VERSION: Final = len(MIGRATIONS)
"""The schema version this release reads and writes."""


def _script(schema: str, text: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))


async def current_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    """The schema version of ``schema`` in the connected database (0 when it has none)."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.schema_version",))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT max(version) FROM {}.schema_version").format(sql.Identifier(schema))
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` to :data:`CURRENT_VERSION`; return the versions applied (in order).

    Runs in one transaction holding an advisory lock, so concurrent callers apply each
    script once. ``conn`` must not be inside a transaction.

    Raises:
        ConfigurationError: the database's schema is newer than this release knows.
    """
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"chicory:{schema}",))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            _script(schema, "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer)")
        )
        version = await current_version(conn, schema)
        if version > CURRENT_VERSION:
            raise ConfigurationError(
                f"the PostgreSQL schema {schema!r} is at version {version}, newer than this "
                f"chicory-postgres knows ({CURRENT_VERSION}); upgrade chicory-postgres"
            )
        for number in range(version + 1, CURRENT_VERSION + 1):
            await conn.execute(_script(schema, MIGRATIONS[number - 1]))
            await conn.execute(
                _script(schema, "INSERT INTO {s}.schema_version (version) VALUES (%s)"),
                (number,),
            )
            applied.append(number)
    return applied


async def ensure_schema(conn: psycopg.AsyncConnection[Any], schema: str, *, allowed: bool) -> None:
    """Migrate ``schema`` if it is behind and ``allowed``; refuse it if not allowed.

    Raises:
        ConfigurationError: the schema is behind and migrating is not allowed (the message
            says how to migrate), or it is newer than this release.
    """
    version = await current_version(conn, schema)
    if version == CURRENT_VERSION:
        return
    if not allowed or version > CURRENT_VERSION:
        if version > CURRENT_VERSION:
            raise ConfigurationError(
                f"the PostgreSQL schema {schema!r} is at version {version}, newer than this "
                f"chicory-postgres knows ({CURRENT_VERSION}); upgrade chicory-postgres"
            )
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at version {version}, and this release "
            f"needs version {CURRENT_VERSION}; run `chicory postgres migrate URL` (or connect "
            "once without ?migrate=false)"
        )
    await migrate(conn, schema)
