"""Views: create an order (and enqueue its fulfilment on commit), show one."""

from functools import partial

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order, Stock
from orders.tasks import fulfil_order


class OutOfStockError(Exception):
    """Not enough stock for the order."""


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """Create an order and take its quantity from the stock, in one transaction.

    The fulfilment task is enqueued by ``transaction.on_commit``: only once the order row is
    committed (a worker never looks for a row it cannot see yet), and never if the
    transaction rolls back (here, when the stock runs out after the order was inserted).
    """
    quantity = int(request.POST.get("quantity", "1"))
    try:
        with transaction.atomic():
            order = Order.objects.create(email=request.POST["email"], quantity=quantity)
            taken = Stock.objects.filter(available__gte=quantity).update(
                available=F("available") - quantity
            )
            if not taken:
                raise OutOfStockError(f"not enough stock for {quantity}")
            transaction.on_commit(partial(fulfil_order.blocking.send, order.pk))
    except OutOfStockError as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"order_id": order.pk, "status": order.status}, status=201)


@require_GET
def order_detail(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.get(pk=pk)
    return JsonResponse({"order_id": order.pk, "status": order.status})
