"""ErrorsEmail against a real aiosmtpd server on 127.0.0.1 (threaded Controller)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from support.engine import eventually

from hookcast.dispatch import mail
from hookcast.dispatch.mail import Mailer, notice_mail
from hookcast.model import NotifyWhen
from hookcast.settings import Settings

HANG_DEADLINE = 30.0  # fail instead of hanging if a timeout were not applied
PASSWORD = "s3cret-pa55word"
USER = "hookcast-mailer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """Records accepted envelopes; answers 451 to the first `reject_first` DATA commands."""

    def __init__(self, reject_first: int = 0) -> None:
        self.envelopes: list[Envelope] = []
        self.data_calls = 0
        self._reject_left = reject_first

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self._reject_left:
            self._reject_left -= 1
            return "451 4.3.0 try again later"
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self, index: int = 0) -> EmailMessage:
        content = self.envelopes[index].original_content
        assert content is not None
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Authenticator:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, bytes]] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.seen.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        # handled=False: let aiosmtpd answer 535 itself (the default, True, answers nothing).
        return AuthResult(success=ok, handled=False)


StartServer = Callable[..., Controller]


@pytest.fixture
def smtp_server() -> Iterator[StartServer]:
    """`smtp_server(handler, **smtp_kwargs)` starts a Controller; all are stopped afterwards."""
    started: list[Controller] = []

    def start(handler: Recorder, **kwargs: Any) -> Controller:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="module")
def server_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


def sample_mail(**overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = dict(
        kind=NotifyWhen.Disabling,
        to="ops@example.com",
        sender="hookcast@example.org",
        webhook_name="Orders to ERP",
        webhook_id=12,
        tenant="Cust1234",
        target_url="https://erp.example.com/hooks",
        last_event_id="9f1c2d3e-0000-4000-8000-abcdefabcdef",
        last_error="HTTP 502 Bad Gateway",
        consecutive_errors=9,
    )
    fields.update(overrides)
    return notice_mail(**fields)


def settings_for(controller: Controller | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(smtp_host="127.0.0.1", smtp_from="hookcast@example.org")
    if controller is not None:
        values["smtp_port"] = controller.port
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the mail module asks asyncio.sleep for (the backoffs between attempts),
    recorded as they are asked for; they still sleep."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__") == mail.__name__:
            asked.append(delay)
        return real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return asked


def _hung_up(connection: socket.socket) -> bool:
    """The peer has closed this connection (EOF or reset); False while it is still open."""
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_errors_mail_content() -> None:
    message = sample_mail(webhook_name="Evil\r\nBcc: victim@example.com")
    assert message["Subject"] == (
        'hookcast: webhook "Evil Bcc: victim@example.com" (id 12) was disabled after too many errors'
    )
    assert message["Bcc"] is None  # no header injection through the name
    body = message.get_content()
    for text in (
        "12",
        "Cust1234",
        "https://erp.example.com/hooks",
        "9f1c2d3e-0000-4000-8000-abcdefabcdef",
        "HTTP 502 Bad Gateway",
        "TooManyErrors",
        "/api/v1/Webhook/12/Redeliver",
        '"Active"',
        "Consecutive errors:  9",
    ):
        assert text in body
    none = sample_mail(last_event_id=None, last_error=None).get_content()
    assert "(none)" in none and "(none recorded)" in none


async def test_mail_arrives(smtp_server: StartServer) -> None:
    handler = Recorder()
    controller = smtp_server(handler)
    mailer = Mailer(settings_for(controller), backoff=0.01, timeout=1)
    assert mailer.enabled
    assert await mailer.send(sample_mail()) is True

    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "hookcast@example.org"
    assert envelope.rcpt_tos == ["ops@example.com"]
    received = handler.message()
    subject = " ".join(str(received["Subject"]).split())  # undo header folding
    assert received["From"] == "hookcast@example.org"
    assert received["To"] == "ops@example.com"
    assert subject == 'hookcast: webhook "Orders to ERP" (id 12) was disabled after too many errors'
    body = received.get_content()
    assert "Orders to ERP" in body and "WebhookId:           12" in body
    assert "9f1c2d3e-0000-4000-8000-abcdefabcdef" in body
    assert "HTTP 502 Bad Gateway" in body


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_and_auth(
    smtp_server: StartServer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    mechanism: str,
) -> None:
    handler, auth = Recorder(), Authenticator()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    controller = smtp_server(
        handler,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
        auth_exclude_mechanism=[other],
    )
    settings = settings_for(controller, smtp_starttls=True, smtp_user=USER, smtp_password=PASSWORD)
    mailer = Mailer(settings, backoff=0.01, timeout=1, tls_context=client_tls)
    assert await mailer.send(sample_mail()) is True
    assert auth.seen == [(mechanism, USER.encode(), PASSWORD.encode())]
    assert len(handler.envelopes) == 1


async def test_starttls_default_context_uses_ca_bundle(
    smtp_server: StartServer, server_tls: ssl.SSLContext, ca_bundle_path: str
) -> None:
    handler = Recorder()
    controller = smtp_server(handler, tls_context=server_tls, require_starttls=True)
    settings = settings_for(controller, smtp_starttls=True, ca_bundle=ca_bundle_path)
    assert await Mailer(settings, backoff=0.01, timeout=1).send(sample_mail()) is True
    assert len(handler.envelopes) == 1


async def test_untrusted_certificate_is_refused(
    smtp_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    controller = smtp_server(handler, tls_context=server_tls, require_starttls=True)
    untrusted = ssl.create_default_context()  # system store only: the trustme CA is unknown
    mailer = Mailer(
        settings_for(controller, smtp_starttls=True), attempts=1, timeout=1, tls_context=untrusted
    )
    assert await mailer.send(sample_mail()) is False
    assert handler.envelopes == []


async def test_retries_until_delivered(smtp_server: StartServer) -> None:
    handler = Recorder(reject_first=2)
    controller = smtp_server(handler)
    mailer = Mailer(settings_for(controller), attempts=3, backoff=0.01, timeout=1)
    assert await mailer.send(sample_mail()) is True
    assert handler.data_calls == 3
    assert len(handler.envelopes) == 1


async def test_dead_server_gives_up_without_leaking_password(
    caplog: pytest.LogCaptureFixture, backoffs: list[float]
) -> None:
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    port = free_port()  # bound then closed: nothing listens there
    settings = settings_for(smtp_port=port, smtp_user=USER, smtp_password=PASSWORD)
    mailer = Mailer(settings, attempts=3, backoff=0.05, timeout=1)
    assert await mailer.send(sample_mail()) is False
    assert backoffs == [0.05, 0.1]  # two backoffs, doubling, none after the last attempt
    failures = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert [r.getMessage().split("attempt ")[1][:6] for r in failures] == [
        "1 of 3",
        "2 of 3",
        "3 of 3",
    ]
    assert all(r.name == "hookcast.mail" for r in caplog.records)
    assert PASSWORD not in caplog.text


async def test_wrong_password_is_not_logged(
    smtp_server: StartServer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    handler, auth = Recorder(), Authenticator()
    controller = smtp_server(
        handler,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
    )
    wrong = "not-the-" + PASSWORD
    settings = settings_for(controller, smtp_starttls=True, smtp_user=USER, smtp_password=wrong)
    mailer = Mailer(settings, attempts=2, backoff=0.01, timeout=1, tls_context=client_tls)
    assert await mailer.send(sample_mail()) is False
    assert len(auth.seen) >= 2 and handler.envelopes == []  # aiosmtplib tries each mechanism
    assert wrong not in caplog.text
    assert "SMTPAuthenticationError" in caplog.text


async def test_silent_server_times_out(caplog: pytest.LogCaptureFixture) -> None:
    # Accepts TCP (kernel backlog) but never greets: only the timeout ends each attempt.
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        settings = settings_for(smtp_port=listener.getsockname()[1])
        mailer = Mailer(settings, attempts=2, backoff=0.01, timeout=0.2)
        assert await asyncio.wait_for(mailer.send(sample_mail()), HANG_DEADLINE) is False
        # Each attempt ended in a timeout while the server was still silent: its two
        # connections wait unaccepted in the backlog, and the client has hung up on both.
        failures = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
        assert len(failures) == 2 and all("TimeoutError" in m for m in failures), failures
        connections = [listener.accept()[0] for _ in range(2)]
        try:
            with pytest.raises(BlockingIOError):
                listener.accept()  # no third attempt
            for connection in connections:
                connection.setblocking(False)
                await eventually(lambda c=connection: _hung_up(c), 5, "the client to hang up")
        finally:
            for connection in connections:
                connection.close()


async def test_disabled_without_host() -> None:
    mailer = Mailer(Settings(smtp_host=None))
    assert not mailer.enabled
    assert await mailer.send(sample_mail()) is False
