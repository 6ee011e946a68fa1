"""A small Django project with hookcast's app: its database from TEST_DATABASE_URL (a SQLite
file or a PostgreSQL database), a second database without hookcast's tables ("other")."""

import os
from urllib.parse import urlsplit

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "hookcast.contrib.django", "crm"]


def _database(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.split(":///", 1)[1]}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {
    "default": _database(os.environ["TEST_DATABASE_URL"]),
    "other": _database(os.environ["TEST_OTHER_DATABASE_URL"]),
}

HOOKCAST = {
    "TENANT": "Cust1234",
    "MODELS": {"crm.Contact": {"entity": "contact", "fields": ["name", "email"]}},
    "SETTINGS": {"allow_targets": ["127.0.0.0/8"]},
    "SCHEMA": os.environ.get("TEST_HOOKCAST_SCHEMA") or None,
}
