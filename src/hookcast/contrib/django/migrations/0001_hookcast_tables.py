"""hookcast's tables, created by hookcast's own Alembic migrations (see ../migrate.py)."""

from django.db import migrations

from hookcast.contrib.django.migrate import migration_operation


class Migration(migrations.Migration):  # type: ignore[misc]
    # hookcast's migrations run on a connection of their own, in their own transaction.
    atomic = False
    initial = True
    dependencies: list[tuple[str, str]] = []  # noqa: RUF012 - Django reads class lists
    operations = [migrations.RunPython(migration_operation, migrations.RunPython.noop)]  # noqa: RUF012
