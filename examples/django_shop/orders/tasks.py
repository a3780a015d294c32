"""Tasks of the orders app. A worker runs them with ``chicory worker orders.tasks:app``."""

from shop_site.tasks import app  # sets Django up: before the models are imported

# isort: split
from django.db import close_old_connections

from chicory import RetryPolicy
from orders.models import Order

__all__ = ["app", "fulfil_order"]


@app.task(name="orders.fulfil", retry_policy=RetryPolicy(max_retries=3, delay=1))
def fulfil_order(order_id: int) -> str:
    """Mark an order fulfilled. A sync task: the ORM runs in the worker's thread pool.

    The order must exist: it is enqueued only once the transaction that created it has
    committed (see ``views.create_order``).
    """
    close_old_connections()  # as Django does around each request
    try:
        order = Order.objects.get(pk=order_id)
        order.status = "fulfilled"
        order.save(update_fields=["status"])
        return order.status
    finally:
        close_old_connections()
