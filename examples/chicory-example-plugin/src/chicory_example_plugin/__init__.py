"""chicory-example-plugin: the worked example of docs/plugins.md, a SQLite broker (``example://``).

* :mod:`chicory_example_plugin.plugin` -- registers the broker with Chicory (cheap).
* :mod:`chicory_example_plugin.broker` -- :class:`ExampleBroker`, the async facade.
* :mod:`chicory_example_plugin.store` -- every SQL statement, each one transaction.
* :mod:`chicory_example_plugin.consumer` -- consumers and deliveries.
"""
