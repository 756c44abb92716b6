"""The local stack's CA and certificates (deploy/local/tls.py) and stack.py's TLS choice.

Nothing is started: certificates are checked with ``cryptography`` and with a real TLS
handshake between two in-memory ``ssl`` endpoints, as a client of the stack would make it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import ssl
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedbus.settings import FedbusSettings, load_settings

LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local"


def _load(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fedbus_{name}_under_test", LOCAL / f"{name}.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tls(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _load(monkeypatch, "tls")


def load_stack(monkeypatch: pytest.MonkeyPatch, state: Path, tls_choice: str | None) -> ModuleType:
    """A fresh import of stack.py for state directory ``state`` (its paths are module-level)."""
    monkeypatch.setenv("FEDBUS_STATE_DIR", str(state))
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(state / "test.env"))
    monkeypatch.delenv("FEDBUS_KAFKA_AUTH", raising=False)
    if tls_choice is None:
        monkeypatch.delenv("FEDBUS_TLS", raising=False)
    else:
        monkeypatch.setenv("FEDBUS_TLS", tls_choice)
    return _load(monkeypatch, "stack")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A full TLS handshake between two memory endpoints; raises what the client raises."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    conn = client.wrap_bio(c_in, c_out, server_hostname=host)
    peer = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        ends = (("client", conn, c_out, s_in), ("server", peer, s_out, c_in))
        for side, obj, out, other_in in ends:
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            other_in.write(out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_server_certificates_name_the_local_hosts_and_serve_only(
    tls: ModuleType, tmp_path: Path
) -> None:
    files, made = tls.ensure_tls(tmp_path / "tls")

    assert made == ["ca", "kafka", "minio"]
    for path in (files.kafka_cert, files.minio_cert):
        cert = _cert(path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {"localhost"}
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        }
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_each_server_certificate_is_signed_by_the_ca_a_client_trusts(
    tls: ModuleType, tmp_path: Path
) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")
    ca = _cert(files.ca_cert)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)

    for path in (files.kafka_cert, files.minio_cert):
        cert = _cert(path)
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        assert cert.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=3650)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_a_client_trusting_the_ca_completes_a_handshake_with_either_server(
    tls: ModuleType, tmp_path: Path, host: str
) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")
    client = ssl.create_default_context(cafile=str(files.ca_cert))

    _handshake(_server_context(files.minio_cert, files.minio_key), client, host)
    # Kafka's keystore is one PEM with the key first, then its chain: what Kafka reads.
    _handshake(_server_context(files.kafka_keystore, files.kafka_keystore), client, host)


def test_a_client_that_does_not_trust_the_ca_or_asks_for_another_host_is_refused(
    tls: ModuleType, tmp_path: Path
) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")
    server = _server_context(files.minio_cert, files.minio_key)
    other_ca, _ = tls.ensure_tls(tmp_path / "other")

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(server, ssl.create_default_context(), "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(server, ssl.create_default_context(cafile=str(other_ca.ca_cert)), "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(server, ssl.create_default_context(cafile=str(files.ca_cert)), "minio.example")


def test_private_keys_are_readable_by_the_owner_only(tls: ModuleType, tmp_path: Path) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")

    for key in (files.ca_key, files.kafka_keystore, files.minio_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" not in files.ca_cert.read_bytes()
    assert b"PRIVATE KEY" not in files.minio_cert.read_bytes()


def test_files_are_made_once_and_reused(tls: ModuleType, tmp_path: Path) -> None:
    tls.ensure_tls(tmp_path / "tls")
    before = {p: p.read_bytes() for p in (tmp_path / "tls").rglob("*") if p.is_file()}

    _, made = tls.ensure_tls(tmp_path / "tls")

    assert made == []
    assert {p: p.read_bytes() for p in before} == before


def test_a_server_certificate_near_expiry_is_issued_again_under_the_same_ca(
    tls: ModuleType, tmp_path: Path
) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")
    ca_before, old = files.ca_cert.read_bytes(), _cert(files.minio_cert)
    later = dt.datetime.now(dt.UTC) + tls.SERVER_VALIDITY - dt.timedelta(days=10)

    _, made = tls.ensure_tls(tmp_path / "tls", now=later)

    assert made == ["kafka", "minio"]
    assert files.ca_cert.read_bytes() == ca_before
    assert _cert(files.minio_cert).not_valid_after_utc > old.not_valid_after_utc


def test_a_server_certificate_for_other_hosts_is_issued_again(
    tls: ModuleType, tmp_path: Path
) -> None:
    tls.ensure_tls(tmp_path / "tls", hosts=("localhost",))

    files, made = tls.ensure_tls(tmp_path / "tls")

    assert made == ["kafka", "minio"]
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    _handshake(_server_context(files.minio_cert, files.minio_key), client, "127.0.0.1")


def test_a_new_ca_replaces_every_server_certificate(tls: ModuleType, tmp_path: Path) -> None:
    files, _ = tls.ensure_tls(tmp_path / "tls")
    files.ca_key.unlink()

    _, made = tls.ensure_tls(tmp_path / "tls")

    assert made == ["ca", "kafka", "minio"]
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    _handshake(_server_context(files.kafka_keystore, files.kafka_keystore), client, "localhost")
    assert (files.minio_dir / "CAs" / "ca.crt").read_bytes() == files.ca_cert.read_bytes()


def test_a_new_state_directory_gets_tls_in_its_env_file_and_kafka_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)

    stack.ensure_tls()
    env = dict(line.split("=", 1) for line in stack.env_lines() if "=" in line)
    conf = stack.kafka_config_text()

    assert (tmp_path / "tls-mode").read_text().strip() == "on"
    assert env["FEDBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["FEDBUS_KAFKA_SSL_CAFILE"] == str(tmp_path / "tls" / "ca.crt")
    assert env["FEDBUS_MINIO_ENDPOINT"].startswith("https://127.0.0.1:")
    assert env["FEDBUS_MINIO_CA_FILE"] == str(tmp_path / "tls" / "ca.crt")
    assert (tmp_path / "tls" / "ca.crt").is_file()
    assert "listeners=SASL_SSL://127.0.0.1:" in conf
    assert "CONTROLLER:SASL_PLAINTEXT" in conf
    assert "ssl.keystore.type=PEM" in conf
    assert "ssl.enabled.protocols=TLSv1.3,TLSv1.2" in conf
    assert "SASL_PLAINTEXT://" not in conf
    assert "SASL_SSL" in stack.kafka_tool_properties()
    assert f"ssl.truststore.location={tmp_path / 'tls' / 'ca.crt'}" in (
        stack.kafka_tool_properties()
    )


def test_principal_files_follow_the_stack_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)
    path = tmp_path / "principals" / "trainer-a.env"
    path.parent.mkdir()
    path.write_text(
        "FEDBUS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\nFEDBUS_KAFKA_SASL_PASSWORD=kept\n"
    )

    assert stack.principal_password("trainer-a") == "kept"
    assert "FEDBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in path.read_text()
    assert f"FEDBUS_KAFKA_SSL_CAFILE={tmp_path / 'tls' / 'ca.crt'}" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_tls_off_is_kept_by_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, "off")
    stack.ensure_tls()

    stack = load_stack(monkeypatch, tmp_path, "on")
    env = dict(line.split("=", 1) for line in stack.env_lines() if "=" in line)

    assert stack.tls_mode() == "off"
    assert env["FEDBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["FEDBUS_MINIO_ENDPOINT"].startswith("http://")
    assert "FEDBUS_MINIO_CA_FILE" not in env
    assert not (tmp_path / "tls").exists()
    assert "ssl.keystore" not in stack.kafka_config_text()


def test_a_state_directory_with_minio_data_from_before_stays_plaintext(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "minio").mkdir()
    stack = load_stack(monkeypatch, tmp_path, "on")

    assert stack.tls_mode() == "off"


def test_an_unknown_tls_choice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = load_stack(monkeypatch, tmp_path, "maybe")

    with pytest.raises(stack.StackError, match="FEDBUS_TLS"):
        stack.tls_mode()


def test_clients_built_from_the_written_env_file_trust_the_stack_and_only_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls: ModuleType
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)
    stack.ensure_tls()
    stack.write_env()
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(tmp_path / "test.env"))
    settings = load_settings(FedbusSettings)
    files = tls.TlsFiles(tmp_path / "tls")
    kafka = _server_context(files.kafka_keystore, files.kafka_keystore)
    minio = _server_context(files.minio_cert, files.minio_key)

    _handshake(kafka, settings.kafka_client_options()["ssl_context"], "127.0.0.1")
    _handshake(minio, settings.minio_ssl_context(), "127.0.0.1")
    plain = settings.model_copy(update={"minio_ca_file": None})
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(minio, plain.minio_ssl_context(), "127.0.0.1")


def test_an_empty_ca_file_setting_means_the_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBUS_MINIO_CA_FILE", "")
    monkeypatch.setenv("FEDBUS_KAFKA_SSL_CAFILE", "")

    settings = FedbusSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.minio_ca_file is None
    assert settings.kafka_ssl_cafile is None
