"""TLS material: the server's SSLContext, and a self-signed certificate when none is given.

RFC 3261 §26.2.1 / RFC 5630: SIP over TLS; srs requires TLS 1.2 or newer.  A self-signed
certificate is for tests and first steps; a Twilio connector with ``secure=true`` needs a
certificate from a public CA for the host name in the connector URI (see README).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from srs.config import TlsSettings

__all__ = ["ensure_self_signed", "server_context", "certificate_fingerprint"]

SELF_SIGNED_DAYS = 825


def ensure_self_signed(state_dir: Path, hostname: str = "srs.invalid") -> tuple[Path, Path, bool]:
    """Return (cert, key) paths under ``state_dir/tls``, generating them if missing.

    The third value says whether they were generated now.
    """
    tls_dir = state_dir / "tls"
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, False
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the owner's alone
    tls_dir.mkdir(exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_bytes)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True


def _write_private(path: Path, data: bytes) -> None:
    """A state-directory file: the owner's alone (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def certificate_fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of the first certificate in a PEM file, as AA:BB:..."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_context(cert: Path, key: Path, settings: TlsSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if settings.verify_client and settings.ca is not None:
        context.load_verify_locations(cafile=str(settings.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
