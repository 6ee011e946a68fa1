"""Issue 13's reproductions through a real server: while one tenant's scripts run the
catastrophic regex, the doubling XML tree and a loop until the deadline via
/CRMScript/{id}/Execute, another tenant's Validate, a plain API request and a delivery to
its HTTPS receiver (signal to receipt) are answered within a generous factor of their
unloaded latency (measured here, not an absolute time), and the server's workers are gone
after it stops."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import httpx
from support.databases import migrated_database_url
from support.receivers import Receiver
from support.server import ServerThread
from test_sandbox import CATASTROPHIC_REGEX, DOUBLING_XML, alive

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.settings import Settings
from hookcast.store.database import Database

BASE = "/api/v1/CRMScript"
LOOP = "Integer i = 0;\nwhile (true) { i++; }\n"


def _latency(client: httpx.Client, key: str) -> float:
    """Median of a Validate and a webhook listing, by another tenant."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        v = client.post(f"{BASE}/Validate", json={"Source": 'printLine("ok");'}, headers=key)
        w = client.get("/api/v1/Webhook", headers=key)
        times.append(time.monotonic() - started)
        assert v.status_code == 200 and w.status_code == 200, (v.text, w.text)
    return statistics.median(times)


def _delivery_latency(client: httpx.Client, key: dict[str, str], receiver: Receiver) -> float:
    """Median time from another tenant's signal (REST) to its receipt at its receiver."""
    times = []
    for _ in range(3):
        pk = len(receiver.requests) + 1000
        started = time.monotonic()
        r = client.post(f"/api/v1/Webhook/contact.changed/{pk}", json={}, headers=key)
        assert r.status_code in (200, 202, 204), r.text
        deadline = started + 20
        while not any(f'"PrimaryKey":{pk}' in q.body.decode() for q in receiver.requests):
            assert time.monotonic() < deadline, "the delivery never arrived"
            time.sleep(0.002)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def test_heavy_scripts_do_not_hold_other_tenants(
    tmp_path: Path, receiver: Receiver, ca_bundle_path: str
) -> None:
    config = Settings(
        database_url=migrated_database_url(tmp_path),
        script_timeout=10.0,
        script_kill_grace=0.3,
        ca_bundle=ca_bundle_path,
        allow_targets=["127.0.0.0/8"],
    )
    db = Database(config.database_url)
    _, key_a = create_key(db, tenant="Cust1234", associate_id=5, name="heavy")
    _, key_b = create_key(db, tenant="Cust9999", associate_id=7, name="light")
    heavy = {"Authorization": f"Bearer {key_a}"}
    light = {"Authorization": f"Bearer {key_b}"}
    try:
        with (
            ServerThread(create_app(config, db=db)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            ids = {}
            for name, source in (
                ("regex", CATASTROPHIC_REGEX),
                ("xml", DOUBLING_XML),
                ("loop", LOOP),
            ):
                made = client.post(
                    BASE,
                    json={"Name": name, "IncludeId": name, "Source": source},
                    headers=heavy,
                )
                assert made.status_code in (200, 201), made.text
                ids[name] = made.json()["EjscriptId"]
            hook = client.post(
                "/api/v1/Webhook",
                json={
                    "Name": "light",
                    "Events": ["contact.changed"],
                    "TargetUrl": receiver.url,
                    "Secret": "a secret of the light tenant",
                    "State": "Active",
                    "Type": "webhook",
                },
                headers=light,
            )
            assert hook.status_code in (200, 201), hook.text
            _latency(client, light)  # workers started
            baseline = _latency(client, light)
            delivery_baseline = _delivery_latency(client, light, receiver)

            answers: dict[str, dict] = {}

            def execute(name: str) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as own:
                    r = own.post(f"{BASE}/{ids[name]}/Execute", json={}, headers=heavy)
                    answers[name] = r.json()

            started = time.monotonic()
            threads = [
                threading.Thread(target=execute, args=(n,)) for n in ("loop", "xml", "regex")
            ]
            for t in threads:
                t.start()
            time.sleep(0.3)
            loaded = _latency(client, light)
            delivery_loaded = _delivery_latency(client, light, receiver)
            for t in threads:
                t.join(30)
            took = time.monotonic() - started

            assert answers["regex"] == {"Output": "0\n", "Success": True, "Error": None}
            assert answers["xml"]["Success"] is False
            assert answers["xml"]["Error"].startswith("ERROR: LimitExceeded: string of")
            assert answers["loop"]["Error"].startswith("ERROR: LimitExceeded: ")
            assert took < 3 * (config.script_timeout + 1)  # each within its deadline
            assert loaded < 15 * baseline, (loaded, baseline)
            assert delivery_loaded < 15 * delivery_baseline, (delivery_loaded, delivery_baseline)
            pids = server.server.config.app  # the app object: its hub holds the pool
            pool_pids = pids.state.hub.scripts.pool.pids()
            assert pool_pids
    finally:
        db.close()
    assert not any(alive(p) for p in pool_pids)
