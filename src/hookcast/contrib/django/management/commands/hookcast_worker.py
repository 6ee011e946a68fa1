"""manage.py hookcast_worker: `hookcast worker` on the project's database (see ../passthrough.py)."""

from django.core.management.base import BaseCommand

from ..passthrough import PassThrough


class Command(PassThrough, BaseCommand):  # type: ignore[misc]
    help = (
        "Run hookcast worker on this project's database (options as for `hookcast worker --help`)."
    )
    hookcast_command = "worker"
