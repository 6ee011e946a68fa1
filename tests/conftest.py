"""Shared fixtures. Receivers are real HTTPS servers on 127.0.0.1 with trustme certificates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import trustme
from support.databases import drop_created
from support.processes import HookcastProcess
from support.receivers import Receiver

CERT_HOSTS = ("localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The CA that hookcast is told to trust (HOOKCAST_CA_BUNDLE) in tests."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle_path(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def _leaf_certs(tls_ca: trustme.CA) -> dict[str, trustme.LeafCert]:
    now = dt.datetime.now(dt.UTC)
    return {
        "valid": tls_ca.issue_cert(*CERT_HOSTS),
        "expired": tls_ca.issue_cert(
            *CERT_HOSTS, not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
        ),
        "wrong_host": tls_ca.issue_cert("wrong.example"),
        "untrusted": trustme.CA().issue_cert(*CERT_HOSTS),  # signed by a CA nobody trusts
    }


ReceiverFactory = Callable[..., Receiver]


@pytest.fixture
def receiver_factory(_leaf_certs: dict[str, trustme.LeafCert]) -> Iterator[ReceiverFactory]:
    """`receiver_factory(cert="valid"|"expired"|"wrong_host"|"untrusted", **behaviour)`
    starts a receiver; all are stopped after the test."""
    started: list[Receiver] = []

    def make(cert: str = "valid", **behaviour: object) -> Receiver:
        receiver = Receiver(_leaf_certs[cert]).start()
        started.append(receiver)
        if behaviour:
            receiver.respond(**behaviour)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(receiver_factory: ReceiverFactory) -> Receiver:
    """A running receiver with a valid certificate that answers 200."""
    return receiver_factory()


@pytest.fixture
def processes() -> Iterator[dict[str, HookcastProcess]]:
    """Every started `python -m hookcast` process by name; whatever is still running at the
    end is killed."""
    started: dict[str, HookcastProcess] = {}
    yield started
    for process in started.values():
        process.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_created()  # the PostgreSQL databases this worker created
