"""An order, and the stock it draws from."""

from django.db import models


class Order(models.Model):
    email = models.EmailField()
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="new")


class Stock(models.Model):
    available = models.PositiveIntegerField()
