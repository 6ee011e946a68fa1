"""What an application does with hookcast's Django app, one scenario per run, as a real
process (tests/test_django.py starts it): `python scenarios.py NAME [ARGS]`. Prints one JSON
line of what it saw; `hold` prints "written" and waits to be killed."""

import json
import os
import signal as posix
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
import django

django.setup()

from crm.models import Company, Contact, Tag  # noqa: E402
from django.db import models, transaction  # noqa: E402

import hookcast  # noqa: E402
from hookcast.contrib.django import register, signal  # noqa: E402


def commit_and_rollback() -> dict:
    try:
        with transaction.atomic():
            signal("contact.changed", 1, changes=["name"])
            raise RuntimeError("the view fails before its commit")
    except RuntimeError:
        pass
    with transaction.atomic():
        signal("contact.changed", 2, changes=["name"], field_values={"name": "Ada"})
        with transaction.atomic():  # a savepoint, rolled back: its event goes with it
            signal("contact.changed", 3)
            transaction.set_rollback(True)
    return {}


def model_events() -> dict:
    with transaction.atomic():
        company = Company.objects.create(name="ACME")
        contact = Contact.objects.create(name="Ada", email="ada@example.com", company=company)
    with transaction.atomic():
        contact.name = "Ada L."
        contact.phone = "555"
        contact.save()
    with transaction.atomic():
        contact.save()  # no change: no event
    try:
        with transaction.atomic():
            contact.email = "rolled@back"
            contact.save()
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    contact.refresh_from_db()
    ids = {"contact": contact.pk, "company": company.pk}
    with transaction.atomic():
        contact.delete()
    return ids


def bad_input() -> dict:
    seen: dict[str, str] = {}

    def expect(name: str, error: type[Exception], call) -> None:
        try:
            call()
        except error as exc:
            seen[name] = str(exc)
        else:
            seen[name] = "NOT RAISED"

    expect("outside", hookcast.OutboxError, lambda: signal("contact.changed", 1))

    def unknown_tenant() -> None:
        with transaction.atomic():
            signal("contact.changed", 1, tenant="NoSuchTenant")

    expect("tenant", hookcast.ValidationError, unknown_tenant)

    def other_database() -> None:
        with transaction.atomic(using="other"):
            signal("contact.changed", 1, using="other")

    expect("database", hookcast.OutboxError, other_database)
    expect("save_outside", hookcast.OutboxError, lambda: Contact.objects.create(name="Nope"))
    seen["saved_outside"] = str(Contact.objects.filter(name="Nope").count())
    expect("text_pk", hookcast.ValidationError, lambda: register(Tag))

    class Abstract(models.Model):
        class Meta:
            abstract = True
            app_label = "crm"

    expect("abstract", hookcast.ValidationError, lambda: register(Abstract))
    return seen


def hold(commit: str, pk: str) -> None:
    with transaction.atomic():
        Contact.objects.create(id=int(pk), name="Held")
        if commit != "commit":
            print("written", flush=True)
            posix.pause()  # SIGKILLed here, before the commit
    print("written", flush=True)
    posix.pause()  # SIGKILLed here, after the commit


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    result = {
        "commit_and_rollback": commit_and_rollback,
        "model_events": model_events,
        "bad_input": bad_input,
        "hold": hold,
    }[name](*args)
    print(json.dumps(result), flush=True)
