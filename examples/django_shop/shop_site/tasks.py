"""The site's Chicory app, configured from Django's settings.

Workers start from this module's app (``chicory worker orders.tasks:app``, which imports
it), so it sets Django up first: the ORM must be ready before any task runs. Inside the web
process Django is set up already, and ``django.setup()`` does nothing.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")
django.setup()

from django.conf import settings  # noqa: E402 - after setup, on purpose

from chicory import Chicory  # noqa: E402

app = Chicory(settings.CHICORY_BROKER_URL)
