"""The console in a real Chromium (Debian's `chromium`, driven by Playwright with the
system browser; Playwright's own browsers are never downloaded), against a real hookcast
app served by uvicorn and a real HTTPS receiver.

The main flow: sign in, create a webhook, signal events and watch them appear, open an
attempt and see its request and response, make the receiver fail until the webhook is
TooManyErrors, see the notification, fix the receiver, start the webhook, replay the
given-up deliveries from a search and see them delivered. Then: a form POST without the
CSRF token is refused; a `read` key sees no Secret and no button that changes anything;
the main flows work from the keyboard alone. Screenshots of the main screens go to
$HOOKCAST_TEST_OUTPUT/console (default test-output/console)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api
from support.engine import delivery_settings
from support.server import ServerThread

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.rights import Role
from hookcast.store.database import Database

expect = sync_api.expect
CHROMIUM = os.environ.get("HOOKCAST_CHROMIUM", "/usr/bin/chromium")
# `make test` installs Debian's chromium when it is missing: a missing browser is an error.
if not Path(CHROMIUM).exists():
    raise RuntimeError(f"the browser tests need {CHROMIUM}: `make test` installs it (apt-get)")


pytestmark = pytest.mark.slow
OUT = Path(os.environ.get("HOOKCAST_TEST_OUTPUT", "test-output")) / "console"
WAIT_MS = 30_000
SECRET = "browser-secret-never-shown-to-readers"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Console:
    def __init__(self, tmp_path: Path, ca_bundle_path: str) -> None:
        self.settings = delivery_settings(
            tmp_path,
            ca_bundle_path,
            max_consecutive_errors=3,
            cycles=1,
            retry_delays=[0.05, 0.1],
        )
        self.db = Database(self.settings.database_url)
        _, self.admin = create_key(self.db, tenant="Cust1234", associate_id=5, name="tony")
        _, self.reader = create_key(
            self.db, tenant="Cust1234", associate_id=6, name="rita", role=Role.read
        )
        self.server = ServerThread(create_app(self.settings, db=self.db))

    def signal(self, event: str, pk: int) -> None:
        answer = httpx.post(
            f"{self.server.url}/api/v1/Webhook/{event}/{pk}",
            headers={"Authorization": f"Bearer {self.admin}"},
            json={"name": "Ada"},
        )
        assert answer.status_code == 204, answer.text


@pytest.fixture
def console(tmp_path: Path, ca_bundle_path: str) -> Iterator[Console]:
    c = Console(tmp_path, ca_bundle_path)
    try:
        with c.server:
            yield c
    finally:
        c.db.close()


def shot(page, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def sign_in(browser, console: Console, key: str):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{console.server.url}/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.fill("#key", key)
    page.press("#key", "Enter")
    expect(page).to_have_url(re.compile(r"/console/hooks$"))
    return page


def until(page, check: Callable[[], bool], what: str, reload: bool = True) -> None:
    """Poll a condition on the page, reloading it between looks, with a deadline."""
    for _ in range(150):
        if check():
            return
        page.wait_for_timeout(200)
        if reload:
            page.reload()
    raise AssertionError(f"timed out waiting for {what}")


def test_main_flow_from_sign_in_to_replay(browser, console: Console, receiver_factory) -> None:
    receiver = receiver_factory()
    receiver.respond(body=b'{"received": true}', headers={"X-Receiver": "test"})
    page = sign_in(browser, console, console.admin)
    cookie = next(c for c in page.context.cookies() if c["name"] == "hookcast_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Create a webhook (verified against the real receiver first).
    page.click("#new-hook")
    page.fill("#name", "Contact handler")
    page.fill("#events", "contact.changed")
    page.fill("#target_url", receiver.url)
    page.fill("#secret", SECRET)
    page.fill("#headers", "X-Api-Token: tok3n")
    page.click("#save")
    expect(page.locator(".flash")).to_contain_text("Webhook 1 created.")
    expect(page.locator("#hook-state")).to_have_text("Active")

    # Signal events; the open delivery list updates by itself.
    for pk in (1, 2, 3):
        console.signal("contact.changed", pk)
    expect(page.locator("#delivery-rows td.delivered")).to_have_count(3)
    page.reload()
    shot(page, "webhook")

    # An attempt: the request as sent (signatures, no Secret) and the response.
    page.locator("#delivery-rows a[href^='/console/delivery/']").first.click()
    request = page.locator("pre.request").first
    expect(request).to_contain_text("X-SuperOffice-Signature: ")
    expect(request).to_contain_text("X-Api-Token: (hidden)")
    expect(page.locator("pre.response").first).to_contain_text("HTTP/1.1 200 OK")
    expect(page.locator("pre.response").first).to_contain_text('{"received": true}')
    assert SECRET not in page.content()
    shot(page, "delivery")

    # The receiver fails until the webhook is disabled; the notification says so.
    receiver.respond(status=500, body=b"boom")
    for pk in (10, 11, 12):
        console.signal("contact.changed", pk)
    page.goto(f"{console.server.url}/console/hooks/1")
    until(
        page,
        lambda: page.inner_text("#hook-state") == "TooManyErrors",
        "the webhook to be disabled",
    )
    page.click("text=Notifications")
    expect(page.locator("#notifications")).to_contain_text("Disabling")
    shot(page, "notifications")

    # Fix the receiver, start the webhook, replay the given-up deliveries from a search.
    receiver.respond(status=200, body=b"ok")
    page.goto(f"{console.server.url}/console/hooks/1")
    page.click("#start")
    expect(page.locator("#hook-state")).to_have_text("Active")
    page.click("text=Search")
    page.select_option("#status", "given_up")
    page.click("#search")
    # Signals after the disabling matched no Active webhook: 1 to 3 deliveries gave up.
    given_up = page.locator("#delivery-rows td.given_up")
    expect(given_up.first).to_be_visible()
    n = given_up.count()
    assert 1 <= n <= 3
    shot(page, "search")
    page.click("#replay-matching")
    expect(page.locator("#replay-count")).to_contain_text(f"{n} deliveries match this search")
    page.click("#confirm-replay")
    expect(page.locator(".flash")).to_contain_text(f"Queued {n} of {n} matching deliveries again.")
    expect(page.locator("#delivery-rows td.given_up")).to_have_count(0)  # the list updates
    page.goto(f"{console.server.url}/console/search?status=delivered")
    expect(page.locator("#delivery-rows td.delivered")).to_have_count(3 + n)
    assert receiver.requests[-1].header("X-SuperOffice-Retry") == "0"  # a fresh cycle

    # CSRF: the same POST as the Stop button, without the token, changes nothing.
    refused = page.request.post(f"{console.server.url}/console/hooks/1/stop", form={"x": "1"})
    assert refused.status == 403 and "CSRF" in refused.text()
    page.goto(f"{console.server.url}/console/hooks/1")
    expect(page.locator("#hook-state")).to_have_text("Active")
    page.context.close()
    _copy_for_readme()


def test_read_key_sees_no_secrets_and_no_changing_buttons(
    browser, console: Console, receiver
) -> None:
    admin = sign_in(browser, console, console.admin)
    admin.click("#new-hook")
    admin.fill("#name", "Read me")
    admin.fill("#events", "contact.changed")
    admin.fill("#target_url", receiver.url)
    admin.fill("#secret", SECRET)
    admin.click("#save")
    expect(admin.locator("#secret-value")).to_have_text(SECRET)  # the admin sees it
    admin.context.close()

    page = sign_in(browser, console, console.reader)
    expect(page.locator("#role")).to_have_text("read")
    expect(page.locator("#new-hook")).to_have_count(0)
    page.click("text=Read me")
    assert SECRET not in page.content()
    for button in ("#secret-value", "#start", "#stop", "#delete", "#save", "#test", "#secret"):
        expect(page.locator(button)).to_have_count(0)
    page.click("text=Search")
    expect(page.locator("#replay-matching")).to_have_count(0)
    page.click("text=Scripts")
    expect(page.locator("#new-script")).to_have_count(0)
    shot(page, "read-only")
    # Even with its own valid CSRF token, a read key's POST is refused.
    page.goto(f"{console.server.url}/console/hooks/1")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(
        f"{console.server.url}/console/hooks/1/stop", form={"csrf": token or ""}
    )
    assert refused.status == 403
    page.reload()
    expect(page.locator("#hook-state")).to_have_text("Active")
    page.context.close()


def tab_to(page, matches: Callable[[dict], bool], what: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches (tag, id, text, href), bounded."""
    page.wait_for_load_state()
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement; return {tag: e.tagName, id: e.id,"
            " text: (e.innerText || e.value || '').trim(), href: e.getAttribute('href') || ''}; }"
        )
        if matches(focused):
            return
    raise AssertionError(f"{what} never took the focus by Tab")


def test_keyboard_only_main_flows(browser, console: Console, receiver) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{console.server.url}/console/login")
    page.keyboard.type(console.admin)  # the key field has the focus
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/hooks$"))

    # Create a webhook with the keyboard alone.
    tab_to(page, lambda f: f["id"] == "new-hook", "New webhook")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/hooks/new$"))
    tab_to(page, lambda f: f["id"] == "name", "the Name field")
    page.keyboard.type("Keyboard hook")
    page.keyboard.press("Tab")
    page.keyboard.type("contact.changed")
    page.keyboard.press("Tab")
    page.keyboard.type(receiver.url)
    tab_to(page, lambda f: f["id"] == "save", "Create")
    page.keyboard.press("Enter")
    expect(page.locator("#hook-state")).to_have_text("Active")
    expect(page.locator("#delivery-rows")).to_be_visible()

    console.signal("contact.changed", 42)
    expect(page.locator("#delivery-rows td.delivered")).to_have_count(1)

    # Search, then open a delivery and stop the webhook, all by keyboard.
    tab_to(page, lambda f: f["text"] == "Search" and f["tag"] == "A", "the Search link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/search"))
    expect(page.locator("#delivery-rows td.delivered")).to_have_count(1)
    tab_to(page, lambda f: f["href"].startswith("/console/delivery/"), "a delivery link")
    page.keyboard.press("Enter")
    expect(page.locator("pre.request").first).to_contain_text("POST /hook HTTP/1.1")
    tab_to(page, lambda f: f["href"].startswith("/console/hooks/"), "the webhook link")
    page.keyboard.press("Enter")
    expect(page.locator("#hook-state")).to_have_text("Active")
    tab_to(page, lambda f: f["id"] == "stop", "Stop")
    page.keyboard.press("Enter")
    expect(page.locator("#hook-state")).to_have_text("Stopped")
    # The focus is visible: the focused control has an outline.
    tab_to(page, lambda f: f["id"] == "start", "Start")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    # Sign out by keyboard.
    tab_to(page, lambda f: f["text"] == "Sign out", "Sign out")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(f"{console.server.url}/console/hooks")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    context.close()


def _copy_for_readme() -> None:
    """Refresh docs/screenshots when asked (HOOKCAST_UPDATE_SCREENSHOTS=1)."""
    if not os.environ.get("HOOKCAST_UPDATE_SCREENSHOTS"):
        return
    docs = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("webhook", "delivery", "search"):
        shutil.copy(OUT / f"{name}.png", docs / f"console-{name}.png")
