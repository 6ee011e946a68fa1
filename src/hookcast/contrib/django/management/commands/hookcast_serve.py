"""manage.py hookcast_serve: `hookcast serve` on the project's database (see ../passthrough.py)."""

from django.core.management.base import BaseCommand

from ..passthrough import PassThrough


class Command(PassThrough, BaseCommand):  # type: ignore[misc]
    help = "Run hookcast serve on this project's database (options as for `hookcast serve --help`)."
    hookcast_command = "serve"
