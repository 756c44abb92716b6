#!/usr/bin/env python3
"""A local certificate authority and the server certificates of the local stack.

    python deploy/local/tls.py <tls dir>

``deploy/local/stack.py`` runs this with the project's virtualenv (it needs ``cryptography``)
before it starts Kafka and MinIO with TLS. Everything lives under ``<tls dir>`` (the state
directory's ``tls/``); private keys are mode 0600 and never leave it:

- ``ca.crt``, ``ca.key``: the local CA (EC P-256, ten years). Clients trust ``ca.crt``
  (``FEDBUS_KAFKA_SSL_CAFILE``, ``FEDBUS_MINIO_CA_FILE``).
- ``kafka/keystore.pem``: the broker's key (PKCS#8) and its certificate chain, read by Kafka
  as a PEM keystore; ``kafka/server.crt`` is the same certificate alone.
- ``minio/public.crt``, ``minio/private.key``, ``minio/CAs/ca.crt``: MinIO's ``--certs-dir``.

Made once and reused. A server certificate is issued again when it is missing, expires within
:data:`RENEW_BEFORE`, names other hosts than asked, or was not signed by the CA on disk; the CA
is made again only when its files are missing or unreadable (and then every server
certificate with it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "HOSTS",
    "RENEW_BEFORE",
    "SERVER_VALIDITY",
    "TlsFiles",
    "ensure_tls",
    "main",
]

HOSTS = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a clock a little behind the one that issued


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the server certificates are (all under one directory)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every client trusts."""
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (0600)."""
        return self.root / "ca.key"

    @property
    def kafka_keystore(self) -> Path:
        """Kafka's PEM keystore: private key, then certificate and CA."""
        return self.root / "kafka" / "keystore.pem"

    @property
    def kafka_cert(self) -> Path:
        """Kafka's certificate alone."""
        return self.root / "kafka" / "server.crt"

    @property
    def minio_dir(self) -> Path:
        """MinIO's ``--certs-dir``."""
        return self.root / "minio"

    @property
    def minio_cert(self) -> Path:
        """MinIO's certificate."""
        return self.minio_dir / "public.crt"

    @property
    def minio_key(self) -> Path:
        """MinIO's private key (0600)."""
        return self.minio_dir / "private.key"


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data``; a private file is created 0600 before a byte of it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: the form both Kafka's PEM keystore and MinIO read.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage extension with only the ``allowed`` bits set."""
    bits = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{bit: allowed.get(bit, False) for bit in bits})


CaPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _make_ca(files: TlsFiles, now: dt.datetime) -> CaPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedbus local stack"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"fedbus local CA {now:%Y-%m-%d %H:%M:%S}"),
    ])  # fmt: skip
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files.ca_key, _pem_key(key), private=True)
    _write(files.ca_cert, _pem_cert(cert), private=False)
    return cert, key


def _load_ca(files: TlsFiles) -> CaPair | None:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return cert, key


def _server_cert_ok(
    path: Path, key_path: Path, ca: x509.Certificate, hosts: tuple[str, ...], now: dt.datetime
) -> bool:
    """True when ``path`` holds a certificate of ``ca`` for exactly ``hosts``, not near expiry,
    and ``key_path`` its private key."""
    ca_key = ca.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey):
        return False
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        ca_key.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm or hashes.SHA256()),
        )
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        key.public_key() == cert.public_key()
        and cert.issuer == ca.subject
        and cert.not_valid_after_utc - now > RENEW_BEFORE
        and set(san) == set(_san(hosts))
    )


def _issue_server(
    ca: CaPair,
    common_name: str,
    hosts: tuple[str, ...],
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_tls(
    root: Path, *, hosts: tuple[str, ...] = HOSTS, now: dt.datetime | None = None
) -> tuple[TlsFiles, list[str]]:
    """Make (or keep) the CA and the Kafka and MinIO certificates under ``root``.

    Parameters
    ----------
    root
        The directory for every file (created 0700).
    hosts
        The names and addresses the server certificates must be valid for.
    now
        The time to check expiry against and to issue from (tests pass one); UTC now if None.

    Returns
    -------
    tuple[TlsFiles, list[str]]
        The files, and what was made this time (``"ca"``, ``"kafka"``, ``"minio"``).
    """
    now = now or dt.datetime.now(dt.UTC)
    files = TlsFiles(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    made: list[str] = []
    ca = _load_ca(files)
    if ca is None or ca[0].not_valid_after_utc - now <= RENEW_BEFORE:
        ca = _make_ca(files, now)
        made.append("ca")
    if not _server_cert_ok(files.kafka_cert, files.kafka_keystore, ca[0], hosts, now):
        cert, key = _issue_server(ca, "fedbus local kafka", hosts, now)
        _write(files.kafka_keystore, _pem_key(key) + _pem_cert(cert) + _pem_cert(ca[0]),
               private=True)  # fmt: skip
        _write(files.kafka_cert, _pem_cert(cert), private=False)
        made.append("kafka")
    if not _server_cert_ok(files.minio_cert, files.minio_key, ca[0], hosts, now):
        cert, key = _issue_server(ca, "fedbus local minio", hosts, now)
        _write(files.minio_key, _pem_key(key), private=True)
        _write(files.minio_cert, _pem_cert(cert), private=False)
        made.append("minio")
    # MinIO trusts the CAs under certs-dir/CAs (for its own outgoing calls); keep it current.
    _write(files.minio_dir / "CAs" / "ca.crt", files.ca_cert.read_bytes(), private=False)
    return files, made


def main(argv: list[str]) -> int:
    """``tls.py <dir>``: ensure the files; print what was made."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    files, made = ensure_tls(Path(argv[0]))
    print(f"tls: {', '.join(made) + ' made' if made else 'reused'} under {files.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
