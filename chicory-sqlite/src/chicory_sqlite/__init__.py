"""chicory-sqlite: a durable broker and result backend on one SQLite file (``sqlite://``).

* :mod:`chicory_sqlite.plugin` -- registers both with Chicory (cheap).
* :mod:`chicory_sqlite.broker` -- :class:`~chicory_sqlite.broker.SqliteBroker`.
* :mod:`chicory_sqlite.operations` -- its inspection, delayed listing and unique enqueue.
* :mod:`chicory_sqlite.consumer` -- consumers and deliveries.
* :mod:`chicory_sqlite.statements` -- the hot-path SQL: publish, claim, settle, renew.
* :mod:`chicory_sqlite.admin` -- counts, dead letters, inspection, delayed listing.
* :mod:`chicory_sqlite.unique` -- unique enqueue: claims of keys.
* :mod:`chicory_sqlite.results` -- :class:`~chicory_sqlite.results.SqliteResultBackend`.
* :mod:`chicory_sqlite.database` -- the connection, off the event loop, and change detection.
* :mod:`chicory_sqlite.schema` -- the tables.
* :mod:`chicory_sqlite.options` -- ``sqlite://`` URLs.
"""
