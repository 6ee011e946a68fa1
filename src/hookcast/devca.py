"""The local development CA that `hookcast listen` serves HTTPS with and `hookcast serve
--dev` trusts: created once per user (or per `--state-dir`), then reused.

Files in the directory: `ca.pem` (the CA certificate, what a sender trusts), `ca-key.pem`,
and the loopback server certificate `cert.pem` (leaf then CA) with `key.pem`, for
localhost, 127.0.0.1 and ::1. Keys are written 0600. Only for loopback development: the CA
can sign anything, so it is never trusted unless `--dev` says so.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["DEV_ALLOW_TARGETS", "DevCA", "default_directory", "dev_settings", "ensure_dev_ca"]

DIRECTORY_SETTING = "HOOKCAST_DEV_CA_DIR"
DEV_ALLOW_TARGETS = ("127.0.0.0/8", "::1/128")
LEAF_DAYS = 397  # what browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class DevCA:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"


def default_directory() -> Path:
    """$HOOKCAST_DEV_CA_DIR, else $XDG_DATA_HOME/hookcast/dev-ca (~/.local/share/...)."""
    if explicit := os.environ.get(DIRECTORY_SETTING):
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "hookcast" / "dev-ca"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # `serve --dev` and `listen` may start together: one creates, the other waits and reuses.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_dev_ca(directory: Path | None = None) -> DevCA:
    """The dev CA in `directory` (default_directory()), created if missing; the server
    certificate is issued again when it is missing or expires within 30 days."""
    ca = DevCA(directory or default_directory())
    ca.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(ca.directory):
        if not (ca.ca_cert.exists() and ca.ca_key.exists()):
            _create_ca(ca)
            _issue_leaf(ca)
        elif not (ca.cert.exists() and ca.key.exists()) or _expires_soon(ca.cert):
            _issue_leaf(ca)
    return ca


def dev_settings(settings: Settings, ca: DevCA) -> Settings:
    """`settings` with the dev CA trusted beside any configured bundle, and loopback
    targets allowed: what `hookcast serve --dev` runs with."""
    bundle = str(ca.ca_cert)
    if settings.ca_bundle:
        combined = ca.directory / "bundle.pem"
        _write(combined, Path(settings.ca_bundle).read_bytes() + b"\n" + ca.ca_cert.read_bytes())
        bundle = str(combined)
    allowed = list(settings.allow_targets)
    for cidr in DEV_ALLOW_TARGETS:
        network = ipaddress.ip_network(cidr)
        if network not in allowed:
            allowed.append(network)
    return settings.model_copy(update={"ca_bundle": bundle, "allow_targets": allowed})


# -- certificates (cryptography) ------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _expires_soon(cert_path: Path) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return True
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def _create_ca(ca: DevCA) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hookcast development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, "hookcast dev CA (loopback only)"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(ca.ca_key, pem_key, 0o600)
    _write(ca.ca_cert, cert.public_bytes(serialization.Encoding.PEM))


def _issue_leaf(ca: DevCA) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(min(_now() + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(ca.key, pem_key, 0o600)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.ca_cert.read_bytes()
    _write(ca.cert, chain)
