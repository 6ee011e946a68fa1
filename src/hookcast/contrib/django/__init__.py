"""hookcast in a Django project: transactional signals and model events.

    # settings.py
    INSTALLED_APPS = [..., "hookcast.contrib.django"]
    HOOKCAST = {"TENANT": "Cust1234"}

    # anywhere
    from django.db import transaction
    from hookcast.contrib.django import signal

    with transaction.atomic():
        contact.save()
        signal("contact.changed", contact.pk, changes=["name"])

`manage.py migrate` creates hookcast's tables in Django's database (migrate.py); `manage.py
hookcast_serve` / `hookcast_worker` run hookcast on it. See conf.py for the settings and
events.py for model events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["register", "run_hookcast_migrations", "signal", "unregister"]

if TYPE_CHECKING:
    from .events import register, unregister
    from .migrate import run_hookcast_migrations
    from .outbox import signal

_LAZY = {
    "signal": ".outbox",
    "register": ".events",
    "unregister": ".events",
    "run_hookcast_migrations": ".migrate",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        # Importing the app module (INSTALLED_APPS) must not touch Django's settings or models.
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(module, __name__), name)
