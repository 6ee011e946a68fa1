"""The Django app: add "hookcast.contrib.django" to INSTALLED_APPS."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class HookcastConfig(AppConfig):  # type: ignore[misc]
    name = "hookcast.contrib.django"
    label = "hookcast"
    verbose_name = "hookcast"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .conf import conf
        from .events import register_from_settings
        from .migrate import after_migrate

        post_migrate.connect(after_migrate, sender=self, dispatch_uid="hookcast-migrate")
        register_from_settings(conf().models)
