"""Building a real hookcast app (real SQLite file, real keys) for API tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from support.databases import migrated_database_url

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.settings import Settings
from hookcast.store.database import Database


@dataclass
class Api:
    client: TestClient
    db: Database
    settings: Settings
    key_a: str
    key_b: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}

    def get(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.auth(key), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.auth(key), **kw.pop("headers", {})}, **kw)

    def put(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.put(path, headers={**self.auth(key), **kw.pop("headers", {})}, **kw)

    def patch(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.patch(path, headers={**self.auth(key), **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.delete(path, headers={**self.auth(key), **kw.pop("headers", {})}, **kw)


@contextmanager
def running_api(tmp_path: Path, **settings: Any) -> Iterator[Api]:
    config = Settings(database_url=migrated_database_url(tmp_path), **settings)
    db = Database(config.database_url)  # migrated already
    _, key_a = create_key(db, tenant="Cust1234", associate_id=5, name="tony", full_name="Tony Ng")
    _, key_b = create_key(db, tenant="Cust9999", associate_id=7, name="eve")
    try:
        with TestClient(create_app(config, db=db)) as client:
            yield Api(client, db, config, key_a, key_b)
    finally:
        db.close()


def stopped_hook(**overrides: Any) -> dict[str, Any]:
    """A carrier that needs no test POST (State Stopped, §5)."""
    return {
        "Name": "Contact handler",
        "Events": ["contact.created", "Contact.Changed", "contact.created"],
        "TargetUrl": "https://hooks.example.com/superoffice",
        "Secret": "Something Super Secret",
        "State": "Stopped",
        "Type": "webhook",
        **overrides,
    }


def assert_every_write_refuses(
    api: Api, stored: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    """POST, PUT and PATCH with `change` each answer 400 naming `field`, and no webhook
    changed. `stored`: the fields of the webhook that PUT and PATCH aim at."""
    hook = api.post("/api/v1/Webhook", json=stopped_hook(**stored)).json()
    one = f"/api/v1/Webhook/{hook['WebhookId']}"
    before = api.get("/api/v1/Webhook").json()
    for response in (
        api.post("/api/v1/Webhook", json=stopped_hook(**change)),
        api.put(one, json=stopped_hook(**change)),
        api.patch(one, json=change),
    ):
        assert response.status_code == 400, response.text
        assert field in [d["Field"] for d in response.json()["Details"]], response.json()
    assert api.get("/api/v1/Webhook").json() == before
