"""Shared fixtures. Receivers are real HTTPS servers on 127.0.0.1 with trustme certificates."""

from __future__ import annotations

import ast
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from hypothesis import settings as hypothesis_settings
from support.databases import drop_created
from support.processes import HookcastProcess
from support.receivers import Receiver

# Property tests draw 200 examples in the whole suite (`make test`); the inner loop
# (`make unit`) draws 50 of each, enough to catch a broken rule, to stay fast.
hypothesis_settings.register_profile("suite", max_examples=200, deadline=None)
hypothesis_settings.register_profile("unit", max_examples=50, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HOOKCAST_HYPOTHESIS_PROFILE", "suite"))

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


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """When the marker expression leaves slow tests out (`make unit`), a module that is slow
    as a whole is not even imported: importing schemathesis and building the fuzz schema
    alone take seconds in every xdist worker."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return True if _leaves_out_slow(config) and _wholly_slow(collection_path) else None


def _leaves_out_slow(config: pytest.Config) -> bool:
    """The -m expression is false for a test marked slow, both when that is its only mark and
    when it has every other mark too: so no test of a wholly slow module would be selected."""
    expression = config.getoption("markexpr")
    if not expression:
        return False
    try:
        from _pytest.mark.expression import Expression

        compiled = Expression.compile(expression)
        only_slow = compiled.evaluate(lambda name, **_: name == "slow")
        every_mark = compiled.evaluate(lambda name, **_: True)
        return not only_slow and not every_mark
    except Exception:  # a newer pytest's internals, or an expression pytest will reject
        return False


def _wholly_slow(path: Path) -> bool:
    """The module's `pytestmark` is, or lists, `pytest.mark.slow` (read, not imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False  # let pytest report it
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            marks = (
                node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            )
            return any(ast.unparse(mark) == "pytest.mark.slow" for mark in marks)
    return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_created()  # the PostgreSQL databases this worker created
