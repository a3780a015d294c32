"""Settings of the example shop (a minimal Django project on SQLite).

``CHICORY_BROKER_URL`` is read from the environment like every other deployment setting;
``SHOP_DB`` names the SQLite file (default: ``db.sqlite3`` beside ``manage.py``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["orders"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "shop_site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Chicory: the broker every process of the site (web and workers) shares.
CHICORY_BROKER_URL = os.environ.get("CHICORY_BROKER_URL", "memory://")
