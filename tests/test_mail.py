"""Notification mail (§6) against real aiosmtpd servers on 127.0.0.1 (threaded Controller):
the notice's content, one SMTP attempt per `Mailer.send` and what its failure means
(`classify`), and the outbox on a real database: temporary failures are retried on the
`mail_retry_delays` schedule, permanent refusals are not, and a mail is never sent twice."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Connection, select
from support.databases import migrated_database_url
from support.engine import eventually

from hookcast.dispatch.mail import (
    Mailer,
    MailResult,
    classify,
    mail_message,
    message_id,
    notice_text,
)
from hookcast.dispatch.outbox import Outbox, retry_delay
from hookcast.model import NotifyWhen
from hookcast.settings import Settings
from hookcast.store import queue
from hookcast.store.database import Database
from hookcast.store.rows import MailRow, MailStatus
from hookcast.store.schema import mail_outbox

HANG_DEADLINE = 30.0  # fail instead of hanging if a timeout were not applied
PASSWORD = "s3cret-pa55word"
USER = "hookcast-mailer"
SENDER = "hookcast@example.org"
DROP = "drop"  # a scripted reply: close the connection instead of answering


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scripted:
    """An SMTP server's answers, per command: the n-th MAIL, RCPT and DATA get the n-th
    reply of their script, and accept once it is used up. Counts every transaction and
    keeps every message that reached DATA (`received`), accepted or not (`envelopes`:
    the accepted ones). `hold`: DATA waits for it before answering."""

    def __init__(
        self,
        *,
        mail: Sequence[str] = (),
        rcpt: Sequence[str] = (),
        data: Sequence[str] = (),
        hold: threading.Event | None = None,
    ) -> None:
        self._scripts = {"MAIL": list(mail), "RCPT": list(rcpt), "DATA": list(data)}
        self.hold = hold
        self.mail_calls = 0  # SMTP transactions started
        self.data_calls = 0
        self.data_at: list[float] = []  # time.time() of each DATA
        self.received: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []

    def _next(self, command: str) -> str | None:
        script = self._scripts[command]
        return script.pop(0) if script else None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_calls += 1
        if reply := self._next("MAIL"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._next("RCPT"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        self.data_at.append(time.time())
        content = envelope.original_content
        assert content is not None
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, HANG_DEADLINE)
        reply = self._next("DATA") or "250 OK"
        if reply == DROP:  # the message arrived, the verdict never does
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"
        if reply.startswith("250"):
            self.envelopes.append(envelope)
        return reply

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
    """`smtp_server(handler, port=None, **smtp_kwargs)` starts a Controller; all are stopped
    afterwards."""
    started: list[Controller] = []

    def start(handler: Scripted, port: int | None = None, **kwargs: Any) -> Controller:
        controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kwargs)
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


def sample_mail(kind: NotifyWhen = NotifyWhen.Disabling, **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = dict(
        webhook_name="Orders to ERP",
        webhook_id=12,
        tenant="Cust1234",
        target_url="https://erp.example.com/hooks",
        last_event_id="9f1c2d3e-0000-4000-8000-abcdefabcdef",
        last_error="HTTP 502 Bad Gateway",
        consecutive_errors=9,
    )
    fields.update(overrides)
    notice = notice_text(kind, **fields)
    return mail_message(
        sender=SENDER, to="ops@example.com", notice=notice, mail_id=1, created_at=1_700_000_000.0
    )


def settings_for(controller: Controller | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(smtp_host="127.0.0.1", smtp_from=SENDER)
    if controller is not None:
        values["smtp_port"] = controller.port
    values.update(overrides)
    return Settings(**values)


def _hung_up(connection: socket.socket) -> bool:
    """The peer has closed this connection (EOF or reset); False while it is still open."""
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


# ----- the notice --------------------------------------------------------------------------


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
    first = sample_mail(NotifyWhen.FirstFailure)
    assert first["Subject"] == 'hookcast: webhook "Orders to ERP" (id 12) failed to deliver'
    assert "/api/v1/Webhook/12/Deliveries" in first.get_content()
    assert first["Message-ID"] == message_id(1, 1_700_000_000.0, SENDER)


# ----- what a failed attempt means (pure) ------------------------------------------------

R, U, X = MailResult.RETRY, MailResult.UNCERTAIN, MailResult.REFUSED


def _refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, "no", f"r{i}@example.com")
            for i, code in enumerate(codes)
        ]
    )


# (error, before the handover, after it): a reply code decides whenever there is one.
CLASSIFICATION: list[tuple[BaseException, MailResult, MailResult]] = [
    (aiosmtplib.SMTPConnectResponseError(421, "4.3.2 shutting down"), R, R),
    (aiosmtplib.SMTPConnectResponseError(554, "5.7.1 no service"), X, X),
    (aiosmtplib.SMTPHeloError(421, "busy"), R, R),
    (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 temporary auth failure"), R, R),
    (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), X, X),
    (aiosmtplib.SMTPSenderRefused(451, "4.3.0 try later", SENDER), R, R),
    (aiosmtplib.SMTPSenderRefused(553, "5.7.1 not allowed", SENDER), X, X),
    (_refused(450), R, R),
    (_refused(450, 451), R, R),
    (_refused(450, 550), X, X),  # retried only when every recipient was refused for now
    (_refused(550), X, X),
    (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), R, R),
    (aiosmtplib.SMTPDataError(554, "5.6.0 content rejected"), X, X),
    (aiosmtplib.SMTPResponseException(-1, "garbage"), R, U),  # no SMTP reply code
    (aiosmtplib.SMTPConnectError("Error connecting to 127.0.0.1 on port 1"), R, U),
    (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), R, U),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), R, U),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), R, U),
    (ConnectionRefusedError(111, "Connection refused"), R, U),
    (ConnectionResetError(104, "Connection reset by peer"), R, U),
    (ssl.SSLCertVerificationError("certificate verify failed"), R, U),
    (TimeoutError(), R, U),
    (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), X, U),
    (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), X, U),
    (ValueError("Address contains a line break"), X, U),
]


@pytest.mark.parametrize(
    ("error", "before", "after"), CLASSIFICATION, ids=[repr(c[0]) for c in CLASSIFICATION]
)
def test_classification(error: BaseException, before: MailResult, after: MailResult) -> None:
    assert classify(error, handed_over=False) is before
    assert classify(error, handed_over=True) is after


@given(
    kind=st.sampled_from(
        [
            aiosmtplib.SMTPResponseException,
            aiosmtplib.SMTPHeloError,
            aiosmtplib.SMTPDataError,
            aiosmtplib.SMTPAuthenticationError,
            aiosmtplib.SMTPConnectResponseError,
        ]
    ),
    code=st.integers(400, 599),
    handed_over=st.booleans(),
)
def test_every_4xx_is_retried_and_no_5xx(kind: type[Any], code: int, handed_over: bool) -> None:
    expected = MailResult.RETRY if code < 500 else MailResult.REFUSED
    assert classify(kind(code, "text"), handed_over=handed_over) is expected


def test_retry_schedule() -> None:
    delays = [10.0, 30.0, 60.0, 120.0, 300.0, 900.0]
    day = 24 * 3600.0
    # the schedule, then its last delay again and again while the mail is younger than a day
    assert [retry_delay(t, delays, age=0, give_up_after=day) for t in range(1, 9)] == [
        *delays,
        900.0,
        900.0,
    ]
    assert retry_delay(500, delays, age=day - 1, give_up_after=day) == 900.0
    assert retry_delay(3, delays, age=day, give_up_after=day) is None  # a day old: given up
    assert retry_delay(1, [], age=0, give_up_after=day) is None  # no delays: one try only
    with pytest.raises(ValueError):
        retry_delay(0, delays)


def test_default_schedule_retries_for_a_day() -> None:
    settings = Settings()
    assert settings.mail_give_up_after == 24 * 3600
    age, tries = 0.0, 1
    while (
        delay := retry_delay(
            tries, settings.mail_retry_delays, age=age, give_up_after=settings.mail_give_up_after
        )
    ) is not None:
        age += delay
        tries += 1
    assert age >= 24 * 3600 and tries < 200  # at least a day, at most every 15 min after 10 min
    assert settings.mail_retry_delays[:5] == [10.0, 30.0, 60.0, 120.0, 300.0]


def test_mail_retry_delays_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKCAST_MAIL_RETRY_DELAYS", "5, 0.5,60")
    monkeypatch.setenv("HOOKCAST_MAIL_GIVE_UP_AFTER", "3600")
    assert Settings().mail_retry_delays == [5.0, 0.5, 60.0]
    assert Settings().mail_give_up_after == 3600.0
    monkeypatch.setenv("HOOKCAST_MAIL_RETRY_DELAYS", "5,-1")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("HOOKCAST_MAIL_RETRY_DELAYS", "5,0")  # the last one repeats
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("HOOKCAST_MAIL_RETRY_DELAYS", "5")
    monkeypatch.setenv("HOOKCAST_MAIL_GIVE_UP_AFTER", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_message_id_is_stable_per_mail() -> None:
    mid = message_id(41, 1700000000.1234, "Hookcast <hookcast@Example.org>")
    assert mid == message_id(41, 1700000000.1234, "Hookcast <hookcast@Example.org>")
    assert mid == "<hookcast.mail.41.1700000000123@Example.org>"
    assert message_id(42, 1700000000.1234, SENDER) != message_id(41, 1700000000.1234, SENDER)
    # a new database counting from 1 again does not repeat an old one's ids
    assert message_id(41, 1800000000.0, SENDER) != message_id(41, 1700000000.1234, SENDER)
    assert message_id(1, 0.0, "hookcast@exa$mple.org").endswith("@example.org>")
    assert message_id(1, 0.0, "no-at-sign").endswith("@hookcast.localhost>")
    header = EmailMessage()
    header["Message-ID"] = mid
    assert header["Message-ID"] == mid


# ----- Mailer.send: one attempt ------------------------------------------------------------


async def test_mail_arrives(smtp_server: StartServer) -> None:
    handler = Scripted()
    controller = smtp_server(handler)
    mailer = Mailer(settings_for(controller), timeout=1)
    assert mailer.enabled
    outcome = await mailer.send(sample_mail())
    assert outcome.result is MailResult.SENT and outcome.reason is None

    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ["ops@example.com"]
    received = handler.message()
    subject = " ".join(str(received["Subject"]).split())  # undo header folding
    assert received["From"] == SENDER
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
    handler, auth = Scripted(), Authenticator()
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
    mailer = Mailer(settings, timeout=1, tls_context=client_tls)
    assert (await mailer.send(sample_mail())).result is MailResult.SENT
    assert auth.seen == [(mechanism, USER.encode(), PASSWORD.encode())]
    assert len(handler.envelopes) == 1


async def test_starttls_default_context_uses_ca_bundle(
    smtp_server: StartServer, server_tls: ssl.SSLContext, ca_bundle_path: str
) -> None:
    handler = Scripted()
    controller = smtp_server(handler, tls_context=server_tls, require_starttls=True)
    settings = settings_for(controller, smtp_starttls=True, ca_bundle=ca_bundle_path)
    assert (await Mailer(settings, timeout=1).send(sample_mail())).result is MailResult.SENT
    assert len(handler.envelopes) == 1


async def test_untrusted_certificate_is_retried_later(
    smtp_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    handler = Scripted()
    controller = smtp_server(handler, tls_context=server_tls, require_starttls=True)
    untrusted = ssl.create_default_context()  # system store only: the trustme CA is unknown
    mailer = Mailer(settings_for(controller, smtp_starttls=True), timeout=1, tls_context=untrusted)
    outcome = await mailer.send(sample_mail())
    assert (
        outcome.result is MailResult.RETRY
    )  # before any message: a renewed certificate may fix it
    assert outcome.reason and "certificate" in outcome.reason.lower()
    assert handler.mail_calls == 0 and handler.envelopes == []


@pytest.mark.parametrize(
    "script",
    [
        {"mail": ["451 4.3.2 system not accepting messages"]},
        {"rcpt": ["450 4.2.1 mailbox busy"]},
        {"data": ["451 4.3.0 try later"]},
    ],
    ids=["MAIL", "RCPT", "DATA"],
)
async def test_temporary_refusal_is_one_attempt(
    smtp_server: StartServer, script: dict[str, list[str]]
) -> None:
    handler = Scripted(**script)
    mailer = Mailer(settings_for(smtp_server(handler)), timeout=1)
    outcome = await mailer.send(sample_mail())
    assert outcome.result is MailResult.RETRY
    [reply] = next(iter(script.values()))
    assert outcome.reason and reply.split(" ", 1)[1] in outcome.reason
    assert handler.mail_calls == 1 and handler.envelopes == []  # no retry inside send
    assert (await mailer.send(sample_mail())).result is MailResult.SENT  # the next attempt
    assert handler.mail_calls == 2 and len(handler.envelopes) == 1


@pytest.mark.parametrize(
    "script",
    [
        {"mail": ["553 5.7.1 sender not allowed"]},
        {"rcpt": ["550 5.1.1 no such user"]},
        {"data": ["554 5.6.0 content rejected"]},
    ],
    ids=["MAIL", "RCPT", "DATA"],
)
async def test_permanent_refusal(smtp_server: StartServer, script: dict[str, list[str]]) -> None:
    handler = Scripted(**script)
    outcome = await Mailer(settings_for(smtp_server(handler)), timeout=1).send(sample_mail())
    assert outcome.result is MailResult.REFUSED
    [reply] = next(iter(script.values()))
    assert outcome.reason and reply.split(" ", 1)[1] in outcome.reason
    assert handler.mail_calls == 1 and handler.envelopes == []


async def test_lost_verdict_is_uncertain(smtp_server: StartServer) -> None:
    handler = Scripted(data=[DROP])
    outcome = await Mailer(settings_for(smtp_server(handler)), timeout=1).send(sample_mail())
    assert outcome.result is MailResult.UNCERTAIN  # the server has the message: may deliver it
    assert handler.data_calls == 1


async def test_dead_server_is_temporary_and_password_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    port = free_port()  # bound then closed: nothing listens there
    settings = settings_for(smtp_port=port, smtp_user=USER, smtp_password=PASSWORD)
    outcome = await Mailer(settings, timeout=1).send(sample_mail())
    assert outcome.result is MailResult.RETRY
    assert outcome.reason and outcome.reason.startswith("SMTPConnectError")
    failures = [r for r in caplog.records if "failed (retry)" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None  # one attempt, no traceback
    assert all(r.name == "hookcast.mail" for r in caplog.records)
    assert PASSWORD not in caplog.text


async def test_wrong_password_is_refused_and_not_logged(
    smtp_server: StartServer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    handler, auth = Scripted(), Authenticator()
    controller = smtp_server(
        handler,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
    )
    wrong = "not-the-" + PASSWORD
    settings = settings_for(controller, smtp_starttls=True, smtp_user=USER, smtp_password=wrong)
    mailer = Mailer(settings, timeout=1, tls_context=client_tls)
    outcome = await mailer.send(sample_mail())
    assert outcome.result is MailResult.REFUSED  # 535
    assert len(auth.seen) >= 2 and handler.envelopes == []  # aiosmtplib tries each mechanism
    assert outcome.reason and wrong not in outcome.reason
    assert wrong not in caplog.text
    assert "SMTPAuthenticationError" in caplog.text


async def test_silent_server_times_out(caplog: pytest.LogCaptureFixture) -> None:
    # Accepts TCP (kernel backlog) but never greets: only the timeout ends the attempt.
    caplog.set_level(logging.DEBUG, logger="hookcast.mail")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        settings = settings_for(smtp_port=listener.getsockname()[1])
        mailer = Mailer(settings, timeout=0.2)
        outcome = await asyncio.wait_for(mailer.send(sample_mail()), HANG_DEADLINE)
        assert outcome.result is MailResult.RETRY
        assert outcome.reason and "Timeout" in outcome.reason
        # The attempt ended in a timeout while the server was still silent: its connection
        # waits unaccepted in the backlog, and the client has hung up on it.
        connection = listener.accept()[0]
        try:
            with pytest.raises(BlockingIOError):
                listener.accept()  # no second attempt
            connection.setblocking(False)
            await eventually(lambda: _hung_up(connection), 5, "the client to hang up")
        finally:
            connection.close()


async def test_disabled_without_host() -> None:
    mailer = Mailer(Settings(smtp_host=None))
    assert not mailer.enabled
    assert (await mailer.send(sample_mail())).result is MailResult.RETRY


# ----- the outbox on a real database -----------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(migrated_database_url(tmp_path))
    yield database
    database.close()


StartOutbox = Callable[..., Outbox]


@pytest.fixture
async def outboxes(db: Database) -> AsyncIterator[StartOutbox]:
    """`outboxes(settings, timeout=..., lease=...)` starts an Outbox on `db` (`timeout`: its
    mailer's); all are stopped afterwards (before `db` closes)."""
    started: list[Outbox] = []

    def start(settings: Settings, timeout: float = 2.0, **kwargs: Any) -> Outbox:
        outbox = Outbox(db, settings, Mailer(settings, timeout=timeout), **kwargs)
        outbox.start()
        started.append(outbox)
        return outbox

    yield start
    for outbox in started:
        await outbox.stop(grace=0)


def outbox_settings(
    port: int, delays: Sequence[float] = (0.05, 0.05), **overrides: Any
) -> Settings:
    # A long idle poll (30 x poll_interval): retries are due long before it, so the outbox
    # must wake for them by itself.
    return settings_for(
        smtp_port=port, mail_retry_delays=list(delays), poll_interval=10.0, **overrides
    )


async def queue_mail(db: Database, recipient: str = "ops@example.com") -> int:
    def write(conn: Connection) -> int:
        mail = MailRow(webhook_id=7, recipient=recipient, subject="hookcast: test", body="Hello.\n")
        queue.queue_mail(conn, mail, time.time())
        newest: int = (
            conn.execute(select(mail_outbox.c.id).order_by(mail_outbox.c.id.desc()))
            .scalars()
            .first()
        )
        return newest

    return await db.run(write)


async def outbox_row(db: Database, mail_id: int) -> Any:
    def read(conn: Connection) -> Any:
        return conn.execute(select(mail_outbox).where(mail_outbox.c.id == mail_id)).one()

    return await db.read(read)


async def status_is(db: Database, mail_id: int, status: MailStatus) -> Any:
    row = await outbox_row(db, mail_id)
    return row if row.status == status else None


@pytest.mark.parametrize(
    "script",
    [
        {"mail": ["421 4.3.2 shutting down"]},
        {"rcpt": ["450 4.2.1 mailbox busy"]},
        {"data": ["451 4.3.0 try later"]},
    ],
    ids=["MAIL", "RCPT", "DATA"],
)
async def test_outbox_retries_temporary_refusal_and_sends_once(
    db: Database,
    smtp_server: StartServer,
    outboxes: StartOutbox,
    script: dict[str, list[str]],
) -> None:
    handler = Scripted(**script)
    controller = smtp_server(handler)
    delay = 0.3
    mail_id = await queue_mail(db)
    outbox = outboxes(outbox_settings(controller.port, delays=[delay]))
    row = await eventually(lambda: status_is(db, mail_id, MailStatus.SENT), what="the retry")
    await outbox.stop()
    assert row.tries == 2 and row.sent_at is not None and row.error is None
    assert handler.mail_calls == 2  # the refused transaction and the one that was accepted
    assert len(handler.envelopes) == 1
    assert handler.envelopes[0].rcpt_tos == ["ops@example.com"]
    message = handler.message()
    assert message["Message-ID"] == message_id(mail_id, row.created_at, SENDER)
    assert message["Auto-Submitted"] == "auto-generated" and message["Date"]
    if handler.data_calls == 2:  # refused at DATA: the server saw both tries, identical
        first, second = handler.received
        assert first["Message-ID"] == second["Message-ID"] and first["Date"] == second["Date"]
        assert handler.data_at[1] - handler.data_at[0] >= delay * 0.9  # not before its delay


@pytest.mark.parametrize(
    "script",
    [{"rcpt": ["550 5.1.1 no such user"]}, {"data": ["554 5.6.0 content rejected"]}],
    ids=["RCPT", "DATA"],
)
async def test_outbox_does_not_retry_permanent_refusal(
    db: Database,
    smtp_server: StartServer,
    outboxes: StartOutbox,
    script: dict[str, list[str]],
) -> None:
    handler = Scripted(**script)
    controller = smtp_server(handler)
    refused = await queue_mail(db, "nobody@example.com")
    outbox = outboxes(outbox_settings(controller.port, delays=[0.01] * 5))
    row = await eventually(lambda: status_is(db, refused, MailStatus.FAILED), what="the refusal")
    [reply] = next(iter(script.values()))
    assert reply.split(" ", 1)[1] in row.error and str(reply[:3]) in row.error
    assert row.tries == 1 and row.sent_at is None
    # The outbox goes on (a later mail is sent) and never came back to the refused one.
    later = await queue_mail(db, "ops@example.com")
    outbox.wake()  # as the hub does once a mail is committed
    await eventually(lambda: status_is(db, later, MailStatus.SENT), what="the later mail")
    assert handler.mail_calls == 2 and len(handler.envelopes) == 1
    assert handler.envelopes[0].rcpt_tos == ["ops@example.com"]
    assert (await outbox_row(db, refused)).status == MailStatus.FAILED


async def test_outbox_retries_until_the_server_is_up(
    db: Database, smtp_server: StartServer, outboxes: StartOutbox
) -> None:
    port = free_port()  # nothing listens there yet
    mail_id = await queue_mail(db)
    outboxes(outbox_settings(port, delays=[0.1] * 100))

    async def refused_twice() -> Any:
        row = await outbox_row(db, mail_id)
        return row.tries >= 2 and row.status == MailStatus.QUEUED and row

    row = await eventually(refused_twice, what="two failed tries")
    assert row.error.startswith("SMTPConnectError")
    handler = Scripted()
    smtp_server(handler, port=port)
    row = await eventually(lambda: status_is(db, mail_id, MailStatus.SENT), what="the mail")
    assert len(handler.envelopes) == 1 and handler.mail_calls == 1
    assert handler.message()["Message-ID"] == message_id(mail_id, row.created_at, SENDER)


async def test_mail_survives_an_smtp_outage_once_and_quietly(
    db: Database,
    smtp_server: StartServer,
    outboxes: StartOutbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 13: an ErrorsEmail was given up after 3 quick tries and never sent once SMTP came
    # back. Here the server is down (nothing listens on its port) for many more tries than
    # the schedule has delays; the mail is sent once it is up, once; the log has one line
    # when the outage starts, a few summaries, one when it ends, and no traceback.
    caplog.set_level(logging.INFO, logger="hookcast")
    port = free_port()
    summary_every = 0.4
    mail_ids = [await queue_mail(db, f"ops{i}@example.com") for i in range(3)]
    outbox = outboxes(
        outbox_settings(port, delays=[0.02, 0.05, 0.1], mail_give_up_after=3600),
        outage_summary_every=summary_every,
    )
    started = time.monotonic()

    async def down_for_a_while() -> Any:
        rows = [await outbox_row(db, i) for i in mail_ids]
        long_enough = time.monotonic() - started > 3 * summary_every
        return long_enough and all(r.tries >= 6 and r.status == MailStatus.QUEUED for r in rows)

    await eventually(down_for_a_while, what="six failed tries of every mail")
    handler = Scripted()
    smtp_server(handler, port=port)
    for mail_id in mail_ids:
        row = await eventually(lambda m=mail_id: status_is(db, m, MailStatus.SENT), what="mail")
        assert row.error is None or row.error.startswith("SMTPConnectError")
    outage_seconds = time.monotonic() - started
    tries = sum([(await outbox_row(db, i)).tries for i in mail_ids])
    await outbox.stop()
    assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == [
        f"ops{i}@example.com" for i in range(3)
    ]
    assert handler.mail_calls == 3  # each mail exactly once
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hookcast")]
    assert all(r.exc_info is None for r in caplog.records)
    what = f"the SMTP server 127.0.0.1:{port} (ErrorsEmail)"
    assert [line for line in lines if line.startswith(f"{what} unavailable:")] == [lines[0]]
    assert sum(line.startswith(f"{what} available again") for line in lines) == 1
    summaries = [line for line in lines if line.startswith(f"{what} unavailable for")]
    assert 1 <= len(summaries) <= outage_seconds / summary_every + 1
    # the rest: one line per mail sent, none per failed try
    assert len(lines) == 2 + len(summaries) + 3 < tries


async def test_outbox_gives_up_when_too_old(
    db: Database, smtp_server: StartServer, outboxes: StartOutbox
) -> None:
    handler = Scripted(data=["451 4.3.0 try later"] * 1000)
    controller = smtp_server(handler)
    mail_id = await queue_mail(db)
    outboxes(outbox_settings(controller.port, delays=[0.02, 0.05], mail_give_up_after=0.5))
    row = await eventually(lambda: status_is(db, mail_id, MailStatus.FAILED), what="giving up")
    # past the schedule (its last delay repeats) until the mail was half a second old
    assert row.tries > 3
    assert row.error.startswith(f"gave up after {row.tries} tries")
    assert "4.3.0 try later" in row.error
    assert handler.data_calls == row.tries and handler.envelopes == []


async def test_outbox_does_not_resend_when_the_verdict_was_lost(
    db: Database, smtp_server: StartServer, outboxes: StartOutbox
) -> None:
    handler = Scripted(data=[DROP])
    controller = smtp_server(handler)
    mail_id = await queue_mail(db)
    outbox = outboxes(outbox_settings(controller.port, delays=[0.01] * 5))
    row = await eventually(lambda: status_is(db, mail_id, MailStatus.FAILED), what="the end")
    assert row.error.startswith("may or may not have been sent; not resending")
    assert row.tries == 1
    later = await queue_mail(db)
    outbox.wake()
    await eventually(lambda: status_is(db, later, MailStatus.SENT), what="the later mail")
    assert handler.data_calls == 2  # the first mail once, the later one once


async def test_outbox_never_resends_a_mail_left_being_sent(
    db: Database,
    smtp_server: StartServer,
    outboxes: StartOutbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process that dies between handing the message over and recording the verdict:
    the outbox is cancelled while the server holds its answer to DATA."""
    caplog.set_level(logging.INFO, logger="hookcast.mail")
    release = threading.Event()
    handler = Scripted(hold=release)
    controller = smtp_server(handler)
    settings = outbox_settings(controller.port, delays=[0.01] * 5)
    crashed = await queue_mail(db, "first@example.com")
    # A timeout that cannot end the held DATA first: only the crash does.
    first = outboxes(settings, timeout=HANG_DEADLINE, lease=0.0)
    await eventually(lambda: handler.data_calls == 1, what="the message to be handed over")
    await first.stop(grace=0)  # the crash: the verdict never reaches the database
    release.set()
    row = await outbox_row(db, crashed)
    assert row.status == MailStatus.SENDING and row.tries == 1

    later = await queue_mail(db, "second@example.com")
    outboxes(settings, lease=0.0)  # the restarted process: the server is still there
    await eventually(lambda: status_is(db, later, MailStatus.SENT), what="the later mail")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not resending" in r.getMessage()
    ]
    assert warnings == [
        f"mail {crashed} to first@example.com is still marked as being sent (its process "
        "stopped mid-send): it may or may not have been sent; not resending"
    ]
    assert (await outbox_row(db, crashed)).status == MailStatus.SENDING
    assert handler.data_calls == 2  # the crashed mail once, the later one once
    assert [m["To"] for m in handler.received] == ["first@example.com", "second@example.com"]


async def test_outbox_stopped_before_the_handover_queues_the_mail_again(
    db: Database, smtp_server: StartServer, outboxes: StartOutbox
) -> None:
    """Cancelled while the server has not even greeted: nothing of the message left, so the
    mail is queued again (and its try does not count) and a later outbox sends it once."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        mail_id = await queue_mail(db)
        first = outboxes(outbox_settings(listener.getsockname()[1]), timeout=HANG_DEADLINE)

        def connected() -> socket.socket | None:
            try:
                return listener.accept()[0]
            except BlockingIOError:
                return None

        connection = await eventually(connected, what="the outbox to connect")
        try:
            await first.stop(grace=0)
        finally:
            connection.close()
    row = await outbox_row(db, mail_id)
    assert row.status == MailStatus.QUEUED and row.tries == 0

    handler = Scripted()
    controller = smtp_server(handler)
    outboxes(outbox_settings(controller.port))
    row = await eventually(lambda: status_is(db, mail_id, MailStatus.SENT), what="the mail")
    assert row.tries == 1 and len(handler.envelopes) == 1


async def test_stop_lets_a_mail_being_sent_finish(
    db: Database, smtp_server: StartServer, outboxes: StartOutbox
) -> None:
    release = threading.Event()
    handler = Scripted(hold=release)
    controller = smtp_server(handler)
    mail_id = await queue_mail(db)
    outbox = outboxes(outbox_settings(controller.port), timeout=HANG_DEADLINE)
    await eventually(lambda: handler.data_calls == 1, what="the message to be handed over")
    stopping = asyncio.create_task(outbox.stop(grace=HANG_DEADLINE))
    await asyncio.sleep(0)  # stop() has begun waiting for the mail being sent
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, HANG_DEADLINE)
    row = await outbox_row(db, mail_id)
    assert row.status == MailStatus.SENT and len(handler.envelopes) == 1
