#!/usr/bin/env python3
"""Run fedbus's local infrastructure as plain processes: Kafka (KRaft), MinIO, PostgreSQL.

Standard library only, so it runs before the project's virtualenv exists.

    python3 deploy/local/stack.py up [kafka|minio|postgres ...]
    python3 deploy/local/stack.py down | status | clean | env
    python3 deploy/local/stack.py principal trainer <client_id> | upstream <tenant> | auditor

Binaries and jars are built once into ``$FEDBUS_CACHE_DIR`` (default ``~/.cache/fedbus``);
data, logs and pid files live under ``$FEDBUS_STATE_DIR`` (default ``<repo>/.fedbus``).
``up`` writes ``$FEDBUS_ENV_FILE`` (default ``<repo>/.env``) with the ``FEDBUS_*`` settings the
services and tests read.

Kafka runs with a SASL/SCRAM-SHA-256 listener and the standard authorizer
(``FEDBUS_KAFKA_AUTH=scram``, the default for a new state directory; ``FEDBUS_KAFKA_AUTH=none``
gives the old PLAINTEXT broker with no authorizer; the choice is kept once Kafka's storage is
formatted, and a state directory formatted before this setting existed stays ``none``). The
env file holds the super user ``admin``; each service gets its own principal ``svc-<name>``
(credentials in ``<state>/principals/svc-<name>.env``, mode 0600) and the ACLs of its role in
``schemas/topics.yaml`` (``python -m fedbus.bus.acls``). ``principal trainer <client_id>``
and ``principal upstream <tenant>`` create one more principal with its ACLs. A trainer's file
``principals/trainer-<client_id>.env`` is its complete env file (``FEDBUS_ENV_FILE``): Kafka,
the CA, the artifact keys, and no PostgreSQL DSN or MinIO keys (it gets presigned URLs);
it is written, with the trainer's topic ``round.assigned.<client_id>``, without SASL too.

Every event is signed (``fedbus.bus.signing``), with or without SASL. Under ``<state>/keys/``
(0700) ``up`` makes, once, the operator's root key ``root.pem`` (its public half in
``root.pub``), the operator's key ``operator.pem`` and one key ``svc-<name>.pem`` per service,
and publishes each key's record on ``key.published``, signed by the root, as admin
(``python -m fedbus.bus.signing issue``): ``operator.pem`` as principal ``admin`` with role
``operator`` (it may sign any topic), ``svc-<name>.pem`` as ``svc-<name>`` with role
``<name>``. ``keys/published`` remembers what was published to this Kafka cluster with this
root, so a later ``up`` publishes only new keys (delete it to publish every key again). The
env file signs with ``operator.pem`` and requires signatures (``FEDBUS_SIGNING_KEY_FILE``,
``FEDBUS_ROOT_PUBLIC_KEYS``, ``FEDBUS_REQUIRE_SIGNATURES=true``); each service's
``principals/svc-<name>.env`` (written without SASL too) names its own key, so a service
started as its principal signs as itself. ``principal trainer <client_id>`` issues
``trainer-<client_id>.pem`` (role ``trainer``, bound to ``client_id=<client_id>``), named with
the root keys in the trainer's env file; ``principal upstream <tenant>`` issues
``upstream-<tenant>.pem`` (role ``upstream``, bound to ``tenant=<tenant>``), named in its
principal env file.

Kafka's client listener and MinIO speak TLS (``FEDBUS_TLS=on``, the default for a new state
directory; ``FEDBUS_TLS=off`` opts out; the choice is kept in ``<state>/tls-mode``, and a state
directory that held Kafka or MinIO data before this setting existed stays ``off``). The CA and
the server certificates are made by ``deploy/local/tls.py`` (with the virtualenv's
``cryptography``) under ``<state>/tls/``, once, and issued again near expiry; the env file
points clients at ``<state>/tls/ca.crt``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

KAFKA_VERSION = "4.1.1"
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"  # MinIO master of 2026-02-12
POSTGRES_MAJOR = "15"  # Debian 12's postgresql package

CACHE = Path(os.environ.get("FEDBUS_CACHE_DIR", Path.home() / ".cache" / "fedbus"))
STATE = Path(os.environ.get("FEDBUS_STATE_DIR", REPO / ".fedbus"))
LOGS = STATE / "logs"
RUN = STATE / "run"

PORTS = {
    "kafka": int(os.environ.get("FEDBUS_KAFKA_PORT", "19092")),
    "kafka-controller": int(os.environ.get("FEDBUS_KAFKA_CONTROLLER_PORT", "19093")),
    "minio": int(os.environ.get("FEDBUS_MINIO_PORT", "19000")),
    "minio-console": int(os.environ.get("FEDBUS_MINIO_CONSOLE_PORT", "19001")),
    "postgres": int(os.environ.get("FEDBUS_POSTGRES_PORT", "15432")),
}
ENV_FILE = Path(os.environ.get("FEDBUS_ENV_FILE") or REPO / ".env")
PRINCIPALS = STATE / "principals"
KAFKA_AUTH_FILE = STATE / "kafka" / "auth"
TLS_MODE_FILE = STATE / "tls-mode"
TLS_DIR = STATE / "tls"
TLS_CA = TLS_DIR / "ca.crt"
KEYS = STATE / "keys"
ROOT_KEY = KEYS / "root.pem"
ROOT_PUB = KEYS / "root.pub"
PUBLISHED_KEYS = KEYS / "published"
SERVICES = ("gateway", "orchestration", "aggregator", "privacy-accountant", "model-registry")
START_TIMEOUT_S = float(os.environ.get("FEDBUS_START_TIMEOUT_S", "120"))


class StackError(Exception):
    """One clear line for the user: which component, what went wrong, where the log is."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# --------------------------------------------------------------------------- helpers


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def need_tool(component: str, tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise StackError(f"{component}: `{tool}` not found on PATH; {hint}")
    return found


def run_logged(component: str, cmd: list[str], log: Path, **kw: object) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        shown = re.sub(r"password=[^],\s]+", "password=***", " ".join(cmd))
        out.write(f"\n$ {shown}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise StackError(
            f"{component}: `{cmd[0]}` failed (exit {proc.returncode}); see {log}\n{tail(log)}"
        )


def wait_until(component: str, ready: Callable[[], bool], pid: int | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(f"{component}: process exited during start; see {log}\n{tail(log)}")
        time.sleep(0.3)
    raise StackError(f"{component}: not ready after {START_TIMEOUT_S:.0f}s; see {log}\n{tail(log)}")


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    log = LOGS / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(
            f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
        )
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=STATE,
        )
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def check_port_free(component: str, port: int) -> None:
    if port_open(port):
        raise StackError(
            f"{component}: port {port} is already in use by another process; "
            f"stop it or set FEDBUS_{component.upper().replace('-', '_')}_PORT"
        )


def stop_pid(name: str, pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        say(f"{name}: did not stop in {timeout_s:.0f}s, killing")
        os.killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- secrets / env


def credentials() -> dict[str, str]:
    """Generated once per state directory; never committed, never a default."""
    path = STATE / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    STATE.mkdir(parents=True, exist_ok=True)
    creds = {
        "minio_user": "fedbus-" + secrets.token_hex(4),
        "minio_password": secrets.token_urlsafe(24),
        "postgres_password": secrets.token_urlsafe(24),
    }
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds


def artifact_keys_file() -> Path:
    """The local artifact keyring (``id: base64`` lines, 0600), made once per state directory.

    Services read it through ``FEDBUS_ARTIFACT_KEYS_FILE``, so the local stack and the demo
    store artifacts encrypted as production must. To rotate, append a line and set
    ``FEDBUS_ARTIFACT_KEY_ID`` to its id; keep the old lines while their objects are kept.
    """
    path = STATE / "artifact-keys"
    if not path.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        key_id = "local-" + secrets.token_hex(4)
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(f"# AES-256 keys for artifacts at rest (stack.py)\n{key_id}: {key}\n")
    return path


def kafka_auth() -> str:
    """``scram`` or ``none``: the state directory's choice once formatted, else the env's."""
    if KAFKA_AUTH_FILE.exists():
        return KAFKA_AUTH_FILE.read_text().strip()
    if (STATE / "kafka" / "data" / "meta.properties").exists():
        return "none"  # formatted before this setting existed: no SCRAM users in it
    auth = os.environ.get("FEDBUS_KAFKA_AUTH", "scram")
    if auth not in {"none", "scram"}:
        raise StackError(f"kafka: FEDBUS_KAFKA_AUTH={auth!r}; choose none or scram")
    return auth


def kafka_admin_password() -> str:
    c = credentials()
    if "kafka_admin_password" not in c:
        c["kafka_admin_password"] = secrets.token_urlsafe(24)
        path = STATE / "secrets.json"
        path.write_text(json.dumps(c, indent=2))
        path.chmod(0o600)
    return c["kafka_admin_password"]


def tls_mode() -> str:
    """``on`` or ``off``: the state directory's choice once made, else ``FEDBUS_TLS``'s."""
    if TLS_MODE_FILE.exists():
        return TLS_MODE_FILE.read_text().strip()
    if (STATE / "kafka" / "data" / "meta.properties").exists() or (STATE / "minio").exists():
        return "off"  # a stack started before this setting existed: its clients speak plaintext
    mode = os.environ.get("FEDBUS_TLS", "on")
    if mode not in {"on", "off"}:
        raise StackError(f"tls: FEDBUS_TLS={mode!r}; choose on or off")
    return mode


def tls_on() -> bool:
    return tls_mode() == "on"


def ensure_tls() -> None:
    """Record the TLS choice; with TLS on, make or renew the CA and server certificates."""
    STATE.mkdir(parents=True, exist_ok=True)
    mode = tls_mode()
    if not TLS_MODE_FILE.exists():
        TLS_MODE_FILE.write_text(mode + "\n")
    if mode == "on":
        run_logged("tls", [venv_python(), str(HERE / "tls.py"), str(TLS_DIR)], LOGS / "tls.log")


def client_ssl_context() -> ssl.SSLContext:
    """A TLS client context that trusts the local CA only."""
    return ssl.create_default_context(cafile=str(TLS_CA))


def kafka_protocol() -> str:
    """The client listener's ``security.protocol``."""
    sasl = kafka_auth() == "scram"
    if tls_on():
        return "SASL_SSL" if sasl else "SSL"
    return "SASL_PLAINTEXT" if sasl else "PLAINTEXT"


def kafka_env_lines(username: str | None = None, password: str | None = None) -> list[str]:
    lines = [f"FEDBUS_KAFKA_SECURITY_PROTOCOL={kafka_protocol()}"]
    if tls_on():
        lines.append(f"FEDBUS_KAFKA_SSL_CAFILE={TLS_CA}")
    if username is not None and password is not None:
        lines += [
            "FEDBUS_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
            f"FEDBUS_KAFKA_SASL_USERNAME={username}",
            f"FEDBUS_KAFKA_SASL_PASSWORD={password}",
        ]
    return lines


def principal_password(name: str) -> str:
    """The password of principal ``name``, made once; its env file is ``<name>.env`` (0600).

    The file is written again each time with the stack's current protocol and CA file.
    """
    path = PRINCIPALS / f"{name}.env"
    password = None
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("FEDBUS_KAFKA_SASL_PASSWORD="):
                password = line.partition("=")[2]
    password = password or secrets.token_urlsafe(24)
    write_principal_env(name, password)
    return password


def write_principal_env(name: str, password: str | None) -> Path:
    """``<state>/principals/<name>.env`` (0600): Kafka (its SCRAM user when ``password`` is
    given) and its own signing key ``<state>/keys/<name>.pem``, written anew each time."""
    path = PRINCIPALS / f"{name}.env"
    PRINCIPALS.mkdir(parents=True, exist_ok=True)
    PRINCIPALS.chmod(0o700)
    path.touch(mode=0o600)
    path.chmod(0o600)
    kafka = kafka_env_lines(name, password) if password is not None else kafka_env_lines()
    path.write_text(
        f"# Principal {name} (deploy/local/stack.py); its process's own credentials.\n"
        + "\n".join([*kafka, f"FEDBUS_SIGNING_KEY_FILE={signing_key_file(name)}"])
        + "\n"
    )
    path.chmod(0o600)
    return path


def signing_key_file(name: str) -> Path:
    """The signing key of principal ``name`` (``operator`` for the env file's admin)."""
    return KEYS / f"{name}.pem"


def root_public_key() -> str:
    """The root key's public half (``FEDBUS_ROOT_PUBLIC_KEYS``); empty before ``up`` made it."""
    return ROOT_PUB.read_text().strip() if ROOT_PUB.exists() else ""


def signature_env_lines(name: str) -> list[str]:
    """Sign as principal ``name``'s key, check with the root key, refuse what is unsigned."""
    return [
        f"FEDBUS_SIGNING_KEY_FILE={signing_key_file(name)}",
        f"FEDBUS_ROOT_PUBLIC_KEYS={root_public_key()}",
        "FEDBUS_REQUIRE_SIGNATURES=true",
    ]


def env_lines() -> list[str]:
    c = credentials()
    pg = f"postgresql://fedbus:{c['postgres_password']}@127.0.0.1:{PORTS['postgres']}/fedbus"
    if kafka_auth() == "scram":
        kafka = kafka_env_lines("admin", kafka_admin_password())
    else:
        kafka = kafka_env_lines()
    minio = [f"FEDBUS_MINIO_ENDPOINT={minio_url()}"]
    if tls_on():
        minio.append(f"FEDBUS_MINIO_CA_FILE={TLS_CA}")
    return [
        "# Written by `make up` (deploy/local/stack.py). Local development only; do not commit.",
        "FEDBUS_ENV=development",
        f"FEDBUS_STATE_DIR={STATE}",
        f"FEDBUS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{PORTS['kafka']}",
        *kafka,
        *minio,
        f"FEDBUS_MINIO_ACCESS_KEY={c['minio_user']}",
        f"FEDBUS_MINIO_SECRET_KEY={c['minio_password']}",
        "FEDBUS_MINIO_BUCKET=fedbus",
        f"FEDBUS_POSTGRES_DSN={pg}",
        f"FEDBUS_ARTIFACT_KEYS_FILE={artifact_keys_file()}",
        *signature_env_lines("operator"),
        "FEDBUS_LOG_LEVEL=INFO",
    ]


def write_env() -> Path:
    path = ENV_FILE
    path.write_text("\n".join(env_lines()) + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- Kafka


def kafka_libs() -> Path:
    home = CACHE / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".complete"
    if marker.exists():
        return libs
    need_tool("kafka", "java", "install a JDK 17+ (apt-get install -y openjdk-17-jre-headless)")
    mvn = need_tool("kafka", "mvn", "install Maven (apt-get install -y maven)")
    say(f"kafka: resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "kafka" / "pom.xml", home / "pom.xml")
    if libs.exists():
        shutil.rmtree(libs)
    run_logged(
        "kafka",
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        CACHE / "logs" / f"kafka-{KAFKA_VERSION}-fetch.log",
    )
    marker.write_text(KAFKA_VERSION)
    return libs


def kafka_ready(log: Path, since: int) -> Callable[[], bool]:
    def ready() -> bool:
        if not port_open(PORTS["kafka"]):
            return False
        with log.open("rb") as f:
            f.seek(since)
            return b"Kafka Server started" in f.read()

    return ready


def kafka_config_text() -> str:
    """The broker's server.properties for this state directory's auth and TLS choices."""
    scram = kafka_auth() == "scram"
    template = "server-scram.properties.in" if scram else "server.properties.in"
    text = (HERE / "kafka" / template).read_text()
    listener = kafka_protocol()
    for key, val in {
        "KAFKA_PORT": PORTS["kafka"],
        "KAFKA_CONTROLLER_PORT": PORTS["kafka-controller"],
        "KAFKA_DATA": STATE / "kafka" / "data",
        "KAFKA_ADMIN_PASSWORD": kafka_admin_password() if scram else "",
        "LISTENER": listener,
        "listener": listener.lower(),
        "TLS_SETTINGS": kafka_tls_settings(),
    }.items():
        text = text.replace(f"@{key}@", str(val))
    return text


def kafka_up() -> None:
    libs = kafka_libs()
    java = need_tool("kafka", "java", "install a JDK 17+")
    data = STATE / "kafka" / "data"
    conf = STATE / "kafka" / "server.properties"
    conf.parent.mkdir(parents=True, exist_ok=True)
    scram = kafka_auth() == "scram"
    text = kafka_config_text()
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(text)
    cp = ["-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}"]
    log = LOGS / "kafka.log"
    if not (data / "meta.properties").exists():
        cluster_id_file = STATE / "kafka" / "cluster-id"
        if not cluster_id_file.exists():
            out = subprocess.run(
                [java, *cp, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise StackError(
                    f"kafka: StorageTool random-uuid failed: {out.stderr.strip()[-500:]}"
                )
            cluster_id_file.write_text(out.stdout.strip().splitlines()[-1])
        say("kafka: formatting storage (first start)")
        run_logged(
            "kafka",
            [
                java,
                *cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(conf),
                "--standalone",
                *(scram_bootstrap_users() if scram else []),
            ],
            log,
        )
        KAFKA_AUTH_FILE.write_text("scram" if scram else "none")
    for port in ("kafka", "kafka-controller"):
        check_port_free(port, PORTS[port])
    since = log.stat().st_size if log.exists() else 0
    heap = os.environ.get("FEDBUS_KAFKA_HEAP", "-Xms256m -Xmx1g").split()
    pid = spawn(
        "kafka",
        [java, *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true", *cp, "kafka.Kafka", str(conf)],
    )
    wait_until("kafka", kafka_ready(log, since), pid, log)
    if scram:  # the raw probe below speaks no SASL; ensure_topics waits for coordinators
        return
    # A fresh broker creates __consumer_offsets on the first FindCoordinator and answers
    # COORDINATOR_NOT_AVAILABLE until every partition is loaded; Kafka clients log each retry
    # (hundreds of lines from `make demo`). Wait here, so no client ever sees it missing.
    partitions = int(_property(text, "offsets.topic.num.partitions", "50"))
    wait_until("kafka", group_coordinators_ready(partitions), pid, log)


def kafka_tls_settings() -> str:
    """The broker's TLS properties (PEM keystore and truststore), or nothing with TLS off."""
    if not tls_on():
        return "# TLS off (FEDBUS_TLS=off, or a state directory from before TLS)"
    return "\n".join([
        "# TLS (FEDBUS_TLS=on): certificates from deploy/local/tls.py under the state dir.",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={TLS_DIR / 'kafka' / 'keystore.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={TLS_CA}",
        "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
        "ssl.protocol=TLSv1.3",
        "ssl.client.auth=none",
    ])  # fmt: skip


def kafka_tool_properties() -> str:
    """A Java client's properties (ConfigCommand) for the client listener, as admin."""
    lines = [f"security.protocol={kafka_protocol()}"]
    if kafka_auth() == "scram":
        lines += [
            "sasl.mechanism=SCRAM-SHA-256",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{kafka_admin_password()}";',
        ]
    if tls_on():
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={TLS_CA}"]
    return "\n".join(lines) + "\n"


def scram_bootstrap_users() -> list[str]:
    """``--add-scram`` arguments: admin and one principal per service, before first start."""
    users = [("admin", kafka_admin_password())]
    users += [(f"svc-{s}", principal_password(f"svc-{s}")) for s in SERVICES]
    args: list[str] = []
    for name, password in users:
        args += ["--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]"]
    return args


def venv_python() -> str:
    path = REPO / ".venv" / "bin" / "python"
    if not path.exists():
        raise StackError(
            "stack: Kafka's ACLs and the TLS certificates need the virtualenv (make install)"
        )
    return str(path)


def apply_acls(args: list[str]) -> None:
    """Apply catalog ACLs as admin with ``python -m fedbus.bus.acls apply <args>``."""
    run_logged(
        "kafka",
        [venv_python(), "-m", "fedbus.bus.acls", "apply", *args],
        LOGS / "kafka-acls.log",
        env=dict(os.environ, FEDBUS_ENV_FILE=str(ENV_FILE)),
        cwd=REPO,
    )


# --------------------------------------------------------------------------- signing keys


def keys_dir() -> Path:
    """``<state>/keys/``, mode 0700."""
    KEYS.mkdir(parents=True, exist_ok=True)
    KEYS.chmod(0o700)
    return KEYS


def ensure_root_key() -> str:
    """Make the root key once (``python -m fedbus.bus.signing root``); its public half."""
    keys_dir()
    if ROOT_KEY.exists() and root_public_key():
        return root_public_key()
    out = subprocess.run(
        [venv_python(), "-m", "fedbus.bus.signing", "root", "--key", str(ROOT_KEY)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(f"keys: making the root key failed: {out.stderr.strip()[-500:]}")
    public = out.stdout.strip().splitlines()[-1]
    ROOT_PUB.write_text(public + "\n")
    say(f"keys: root key {ROOT_KEY} made (FEDBUS_ROOT_PUBLIC_KEYS={public})")
    return public


@dataclass(frozen=True)
class KeySpec:
    """One signing key and the record ``key.published`` holds for it."""

    name: str  # the key file's stem under <state>/keys/
    principal: str
    role: str
    binds: tuple[tuple[str, str], ...] = ()


def service_key_specs() -> list[KeySpec]:
    """The operator's key (principal ``admin``) and one per service principal."""
    specs = [KeySpec("operator", "admin", "operator")]
    return specs + [KeySpec(f"svc-{s}", f"svc-{s}", s) for s in SERVICES]


def _published_line(spec: KeySpec) -> str | None:
    """What ``keys/published`` says once ``spec``'s key is published on this cluster with this
    root; None while its key file does not exist."""
    key = signing_key_file(spec.name)
    cluster = STATE / "kafka" / "cluster-id"
    if not key.exists() or not ROOT_KEY.exists() or not cluster.exists():
        return None
    digest = hashlib.sha256(key.read_bytes() + b"\0" + ROOT_KEY.read_bytes()).hexdigest()[:32]
    binds = ",".join(f"{k}={v}" for k, v in spec.binds) or "-"
    return f"{cluster.read_text().strip()} {digest} {spec.principal} {spec.role} {binds}"


def unpublished(specs: list[KeySpec]) -> list[KeySpec]:
    """The keys of ``specs`` that ``keys/published`` does not list (or that are missing)."""
    done = set(PUBLISHED_KEYS.read_text().splitlines()) if PUBLISHED_KEYS.exists() else set()
    return [s for s in specs if (line := _published_line(s)) is None or line not in done]


def publish_keys(specs: list[KeySpec]) -> int:
    """Make each missing key and publish the records of those :func:`unpublished` names
    (signed by the root, as admin; in parallel processes). How many were published."""
    keys_dir()
    todo = unpublished(specs)
    log = LOGS / "keys.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    procs = []
    for spec in todo:
        cmd = [venv_python(), "-m", "fedbus.bus.signing", "issue", "--root", str(ROOT_KEY),
               "--key", str(signing_key_file(spec.name)), "--principal", spec.principal,
               "--role", spec.role, *[f"--bind={k}={v}" for k, v in spec.binds]]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
            env=dict(os.environ, FEDBUS_ENV_FILE=str(ENV_FILE)),
        )  # fmt: skip
        procs.append((spec, cmd, proc))
    failed = []
    with log.open("ab") as out:
        for spec, cmd, proc in procs:
            output, _ = proc.communicate()
            out.write(f"\n$ {' '.join(cmd)}\n".encode() + output)
            if proc.returncode != 0:
                failed.append(spec.name)
                continue
            line = _published_line(spec)
            if line is not None:
                with PUBLISHED_KEYS.open("a") as marker:
                    marker.write(line + "\n")
    if failed:
        raise StackError(f"keys: publishing {', '.join(failed)} failed; see {log}\n{tail(log)}")
    return len(todo)


def add_scram_user(name: str) -> None:
    """Create (or reset to the stored password) SCRAM user ``name`` on the running broker."""
    admin_conf = STATE / "kafka" / "admin.properties"
    admin_conf.touch(mode=0o600)
    admin_conf.chmod(0o600)
    admin_conf.write_text(kafka_tool_properties())
    libs = kafka_libs()
    java = need_tool("kafka", "java", "install a JDK 17+")
    run_logged(
        "kafka",
        [
            java, "-cp", f"{libs}/*",
            f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server", f"127.0.0.1:{PORTS['kafka']}",
            "--command-config", str(admin_conf),
            "--alter", "--entity-type", "users", "--entity-name", name,
            "--add-config", f"SCRAM-SHA-256=[password={principal_password(name)}]",
        ],
        LOGS / "kafka-acls.log",
    )  # fmt: skip


def cmd_principal(args: list[str]) -> None:
    """``principal trainer <client_id>``, ``principal upstream <tenant>`` or ``principal
    auditor`` (:func:`cmd_auditor`).

    A trainer also gets its topic ``round.assigned.<client_id>`` and a complete env file of its
    own (without SASL too): Kafka, the CAs, the artifact keys; no DSN, no MinIO keys. An
    outside producer gets its intake topics ``upstream.job.requested.<tenant>`` and
    ``upstream.job.cancel.requested.<tenant>`` (without SASL too: then anyone may write them,
    and ``job.requested`` as well).
    """
    if args == ["auditor"]:
        return cmd_auditor()
    if len(args) != 2 or args[0] not in {"trainer", "upstream"}:
        raise StackError(
            "usage: stack.py principal trainer <client_id> | upstream <tenant> | auditor"
        )
    role, ident = args
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", ident):
        raise StackError(
            f"{role} id {ident!r}: use letters, digits, '.', '_' and '-' (it names a principal "
            "and its credentials file)"
        )
    if ident == "dlq":
        raise StackError(f"{role} id 'dlq' is reserved (it would name a dead-letter topic)")
    scram = kafka_auth() == "scram"
    name = f"{role}-{ident}"
    ensure_root_key()
    if scram:
        add_scram_user(name)
        apply_acls([f"--{role}", ident])
    if role == "trainer":
        write_trainer_env(ident, principal_password(name) if scram else None)
        provision_topics(["--trainer", ident])
    else:  # its intake topics, upstream.job.requested.<tenant> and the cancel one
        if not scram:
            write_principal_env(name, None)  # its signing key (add_scram_user wrote it with SASL)
        provision_topics(["--upstream", ident])
    bind = "client_id" if role == "trainer" else "tenant"
    publish_keys([KeySpec(name, name, role, ((bind, ident),))])
    say(f"principal {name}: credentials in {PRINCIPALS / (name + '.env')}, "
        f"signing key {signing_key_file(name)}")  # fmt: skip


def cmd_auditor() -> None:
    """``principal auditor``: the read-only party of ``fedbus audit verify``.

    Kafka principal ``auditor`` reading every event topic but the trainers' assignments and
    writing none (``python -m fedbus.bus.acls apply --auditor``); MinIO credentials that may
    only read the bucket, valid 7 days (``python -m fedbus.storage.readonly``: run this again
    to renew); the root public key; the artifact keys, since the SHA-256 in events is the
    plaintext's. No signing key (it publishes nothing), no DSN. Written to
    ``principals/auditor.env`` (0600).
    """
    scram = kafka_auth() == "scram"
    ensure_root_key()
    if scram:
        add_scram_user("auditor")
        apply_acls(["--auditor"])
    out = subprocess.run(
        [venv_python(), "-m", "fedbus.storage.readonly"], capture_output=True, text=True,
        check=False, cwd=REPO, env=dict(os.environ, FEDBUS_ENV_FILE=str(ENV_FILE)),
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(f"minio: read-only credentials failed: {out.stderr.strip()[-500:]}")
    password = principal_password("auditor") if scram else None
    kafka = kafka_env_lines("auditor", password) if password else kafka_env_lines()
    lines = [
        "# The auditor (deploy/local/stack.py principal auditor): read-only; signs nothing.",
        "FEDBUS_ENV=development",
        f"FEDBUS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{PORTS['kafka']}",
        *kafka,
        f"FEDBUS_MINIO_ENDPOINT={minio_url()}",
        *([f"FEDBUS_MINIO_CA_FILE={TLS_CA}"] if tls_on() else []),
        "FEDBUS_MINIO_BUCKET=fedbus",
        *out.stdout.strip().splitlines(),
        *[line for line in stack_env_file_lines() if line.startswith("FEDBUS_ARTIFACT_KEY")],
        f"FEDBUS_ROOT_PUBLIC_KEYS={root_public_key()}",
        "FEDBUS_REQUIRE_SIGNATURES=true",
    ]
    path = PRINCIPALS / "auditor.env"
    PRINCIPALS.mkdir(parents=True, exist_ok=True)
    PRINCIPALS.chmod(0o700)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")
    say(f"principal auditor: read-only credentials in {path}")


def trainer_env_lines(client_id: str, password: str | None) -> list[str]:
    """A trainer's whole configuration: what it needs and nothing it must not hold."""
    name = f"trainer-{client_id}"
    kafka = kafka_env_lines(name, password) if password is not None else kafka_env_lines()
    return [
        f"# Trainer {client_id} (deploy/local/stack.py principal trainer): its complete env file.",
        "# No PostgreSQL DSN and no MinIO keys: it reads and writes through presigned URLs.",
        "FEDBUS_ENV=development",
        f"FEDBUS_STATE_DIR={STATE}",
        f"FEDBUS_CLIENT_ID={client_id}",
        f"FEDBUS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{PORTS['kafka']}",
        *kafka,
        *([f"FEDBUS_MINIO_CA_FILE={TLS_CA}"] if tls_on() else []),
        # The services' keyring, as the stack's env file names it (none: none written here).
        *[line for line in stack_env_file_lines() if line.startswith("FEDBUS_ARTIFACT_KEY")],
        *signature_env_lines(name),
        "FEDBUS_LOG_LEVEL=INFO",
    ]


def stack_env_file_lines() -> list[str]:
    """The lines of the env file ``up`` wrote (empty when there is none)."""
    return ENV_FILE.read_text().splitlines() if ENV_FILE.exists() else []


def write_trainer_env(client_id: str, password: str | None) -> Path:
    """``<state>/principals/trainer-<client_id>.env`` (0600), written anew each time."""
    PRINCIPALS.mkdir(parents=True, exist_ok=True)
    PRINCIPALS.chmod(0o700)
    path = PRINCIPALS / f"trainer-{client_id}.env"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(trainer_env_lines(client_id, password)) + "\n")
    return path


def provision_topics(args: list[str]) -> None:
    """Create the catalog's topics and the named trainers' ones as admin (``acls topics``)."""
    run_logged(
        "kafka",
        [venv_python(), "-m", "fedbus.bus.acls", "topics", *args],
        LOGS / "kafka-acls.log",
        env=dict(os.environ, FEDBUS_ENV_FILE=str(ENV_FILE)),
        cwd=REPO,
    )


def _property(text: str, key: str, default: str) -> str:
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return default


def _java_hash(text: str) -> int:
    """``String.hashCode()``, to place a group id on a partition of __consumer_offsets."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def probe_groups(partitions: int) -> list[str]:
    """One group id per __consumer_offsets partition (``abs(hashCode) % partitions``)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        group = f"fedbus-stack-probe-{n}"
        h = _java_hash(group)
        found.setdefault((0 if h == -(1 << 31) else abs(h)) % partitions, group)
        n += 1
    return [found[p] for p in sorted(found)]


def _kafka_string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def find_coordinator_error(group: str) -> int:
    """The error code of a FindCoordinator (v1) for ``group``: 0 when its coordinator is up."""
    body = _kafka_string(group) + struct.pack(">b", 0)  # key type 0: a consumer group
    header = struct.pack(">hhi", 10, 1, 1) + _kafka_string("fedbus-stack")
    request = header + body
    with socket.create_connection(("127.0.0.1", PORTS["kafka"]), timeout=5) as raw:
        conn = raw
        if tls_on():
            conn = client_ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
        conn.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _read_exactly(conn, 4))[0]
        response = _read_exactly(conn, size)
    # correlation id (4), throttle time (4), then the error code.
    return int(struct.unpack(">h", response[8:10])[0])


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("kafka closed the connection")
        data += chunk
    return data


def group_coordinators_ready(partitions: int) -> Callable[[], bool]:
    """True once a group on every __consumer_offsets partition finds its coordinator."""
    waiting = probe_groups(partitions)

    def ready() -> bool:
        try:
            waiting[:] = [g for g in waiting if find_coordinator_error(g) != 0]
        except OSError:
            return False
        return not waiting

    return ready


# --------------------------------------------------------------------------- MinIO


def minio_bin() -> Path:
    path = CACHE / f"minio-{MINIO_VERSION}" / "bin" / "minio"
    if path.exists():
        return path
    go = need_tool("minio", "go", "install Go 1.24+ (https://go.dev/doc/install or apt)")
    say(
        f"minio: building {MINIO_MODULE}@{MINIO_VERSION} with `go install` "
        "(first time: several minutes)"
    )
    env = dict(os.environ, GOBIN=str(path.parent), CGO_ENABLED="0")
    run_logged(
        "minio",
        [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
        CACHE / "logs" / f"minio-{MINIO_VERSION}-build.log",
        env=env,
    )
    return path


def minio_url() -> str:
    """MinIO's S3 endpoint: https with TLS on."""
    return f"{'https' if tls_on() else 'http'}://127.0.0.1:{PORTS['minio']}"


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (an https URL must present a certificate of the local CA)."""
    context = client_ssl_context() if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def minio_up() -> None:
    binary = minio_bin()
    for port in ("minio", "minio-console"):
        check_port_free(port, PORTS[port])
    c = credentials()
    env = dict(
        os.environ,
        MINIO_ROOT_USER=c["minio_user"],
        MINIO_ROOT_PASSWORD=c["minio_password"],
        MINIO_BROWSER="off",
        MINIO_UPDATE="off",
    )
    (STATE / "minio").mkdir(parents=True, exist_ok=True)
    pid = spawn(
        "minio",
        [
            str(binary),
            "server",
            str(STATE / "minio"),
            "--address",
            f"127.0.0.1:{PORTS['minio']}",
            "--console-address",
            f"127.0.0.1:{PORTS['minio-console']}",
            *(["--certs-dir", str(TLS_DIR / "minio")] if tls_on() else []),
            "--quiet",
        ],
        env,
    )
    url = f"{minio_url()}/minio/health/live"
    wait_until("minio", lambda: http_ok(url), pid, LOGS / "minio.log")


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if not candidates:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise StackError(
                "postgres: server not installed; run `sudo apt-get install -y postgresql`"
            )
        say("postgres: installing Debian's postgresql package")
        log = CACHE / "logs" / "postgres-apt.log"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_logged("postgres", ["apt-get", "update", "-q"], log, env=env)
        run_logged(
            "postgres",
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
            log,
            env=env,
        )
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    return candidates[0].parent


# initdb's superuser: `postgres` when we drop to that account as root, else the invoking user
# (local connections use peer authentication, which needs the names to match).
PG_SUPERUSER = "postgres" if os.geteuid() == 0 else getpass.getuser()


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; drop to the packaged `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def pg_ready(bindir: Path) -> Callable[[], bool]:
    def ready() -> bool:
        cmd = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(PORTS["postgres"])]
        return subprocess.run(cmd, check=False).returncode == 0

    return ready


def pg_init(bindir: Path, data: Path, log: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        probe = subprocess.run(as_postgres(["test", "-w", str(data)]), check=False)
        if probe.returncode != 0:
            raise StackError(
                f"postgres: the `postgres` user cannot reach {data}; "
                "set FEDBUS_STATE_DIR to a directory it can traverse (e.g. under /tmp)"
            )
    data.chmod(0o700)
    pwfile = STATE / "run" / "pg-pw"
    pwfile.parent.mkdir(parents=True, exist_ok=True)
    pwfile.write_text(credentials()["postgres_password"])
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    say("postgres: initdb (first start)")
    run_logged(
        "postgres",
        as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_SUPERUSER,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        log,
    )
    pwfile.unlink()


def pg_bootstrap(bindir: Path, log: Path) -> None:
    """Create the fedbus role and database (idempotent)."""
    pw = credentials()["postgres_password"].replace("'", "''")
    sock = str(STATE / "run")
    psql = as_postgres(
        [
            str(bindir / "psql"),
            "-h",
            sock,
            "-p",
            str(PORTS["postgres"]),
            "-U",
            PG_SUPERUSER,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-d",
            "postgres",
            "-c",
        ]
    )
    run_logged(
        "postgres",
        [
            *psql,
            f"""DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fedbus') THEN
        CREATE ROLE fedbus LOGIN PASSWORD '{pw}';
      ELSE ALTER ROLE fedbus PASSWORD '{pw}'; END IF; END $$;""",
        ],
        log,
    )
    exists = subprocess.run(
        [*psql, "SELECT 1 FROM pg_database WHERE datname='fedbus'", "-tA"],
        capture_output=True,
        text=True,
        check=False,
    )
    if exists.stdout.strip() != "1":
        run_logged("postgres", [*psql, "CREATE DATABASE fedbus OWNER fedbus"], log)


def postgres_up() -> None:
    bindir = pg_bindir()
    data = STATE / "postgres" / "data"
    log = LOGS / "postgres.log"
    RUN.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for d in (STATE / "postgres", RUN, LOGS):
            d.mkdir(parents=True, exist_ok=True)
            if d != LOGS:
                shutil.chown(d, "postgres", "postgres")
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        pg_init(bindir, data, log)
    check_port_free("postgres", PORTS["postgres"])
    opts = f"-p {PORTS['postgres']} -k {RUN} -c listen_addresses=127.0.0.1"
    run_logged(
        "postgres",
        as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "start",
            ]
        ),
        LOGS / "postgres-ctl.log",
    )
    wait_until("postgres", pg_ready(bindir), None, log)
    pid_line = (data / "postmaster.pid").read_text().splitlines()[0]
    (RUN / "postgres.pid").write_text(pid_line)
    pg_bootstrap(bindir, LOGS / "postgres-ctl.log")


def postgres_down(pid: int) -> None:
    bindir = pg_bindir()
    data = STATE / "postgres" / "data"
    cmd = as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        stop_pid("postgres", pid)


# --------------------------------------------------------------------------- commands

COMPONENTS: dict[str, Callable[[], None]] = {
    "kafka": kafka_up,
    "minio": minio_up,
    "postgres": postgres_up,
}
HEALTH: dict[str, Callable[[], bool]] = {
    "kafka": lambda: port_open(PORTS["kafka"]),
    "minio": lambda: http_ok(f"{minio_url()}/minio/health/live"),
    "postgres": lambda: port_open(PORTS["postgres"]),
}


def cmd_up(names: list[str]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_tls()
    for name in names:
        pid = read_pid(name)
        if pid is not None and HEALTH[name]():
            say(f"{name}: already running (pid {pid})")
            if name == "postgres":  # idempotent: repairs a first start that failed half-way
                pg_bootstrap(pg_bindir(), LOGS / "postgres-ctl.log")
            continue
        if pid is not None:
            raise StackError(
                f"{name}: pid {pid} is alive but not answering; see {LOGS / (name + '.log')}"
            )
        t0 = time.monotonic()
        COMPONENTS[name]()
        say(
            f"{name}: up in {time.monotonic() - t0:.1f}s "
            f"(pid {read_pid(name)}, log {LOGS / (name + '.log')})"
        )
    ensure_root_key()
    say(f"wrote {write_env()}")
    scram = kafka_auth() == "scram"
    for service in SERVICES:  # each names its signing key; with SASL, its password too
        name = f"svc-{service}"
        if not scram:
            write_principal_env(name, None)
        elif (PRINCIPALS / f"{name}.env").exists():  # made with its SCRAM user at format
            principal_password(name)
    if "kafka" in names and scram:
        apply_acls(["--services"])
        say(f"kafka: service principals' ACLs applied; credentials under {PRINCIPALS}")
    if "kafka" in names:
        specs = service_key_specs()
        if unpublished(specs):
            provision_topics([])  # key.published among the catalog's topics
        count = publish_keys(specs)
        say(f"keys: {count} key records published ({len(specs) - count} already); "
            f"keys under {KEYS}")  # fmt: skip


def cmd_down(names: list[str]) -> None:
    for name in reversed(names):
        pid = read_pid(name)
        if pid is None:
            say(f"{name}: not running")
            continue
        if name == "postgres":
            postgres_down(pid)
        else:
            stop_pid(name, pid)
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        say(f"{name}: stopped (data kept under {STATE})")


def cmd_status(names: list[str]) -> int:
    bad = 0
    for name in names:
        pid = read_pid(name)
        healthy = pid is not None and HEALTH[name]()
        state = "healthy" if healthy else ("running, not answering" if pid else "stopped")
        port = PORTS[name]
        print(
            f"{name:9} {state:24} pid={pid or '-':<8} 127.0.0.1:{port}  "
            f"log={LOGS / (name + '.log')}"
        )
        bad += 0 if healthy else 1
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"up", "down", "status", "clean", "env", "principal"}:
        print(__doc__)
        return 2
    if argv[0] == "principal":
        try:
            cmd_principal(argv[1:])
        except StackError as exc:
            print(f"[stack] ERROR {exc}", file=sys.stderr)
            return 1
        return 0
    cmd, names = argv[0], argv[1:] or list(COMPONENTS)
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        print(f"unknown component(s): {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}")
        return 2
    try:
        if cmd == "up":
            cmd_up(names)
        elif cmd == "down":
            cmd_down(names)
        elif cmd == "status":
            return cmd_status(names)
        elif cmd == "env":
            print("\n".join(env_lines()))
        elif cmd == "clean":
            cmd_down(list(COMPONENTS))
            shutil.rmtree(STATE, ignore_errors=True)
            ENV_FILE.unlink(missing_ok=True)
            say(f"removed {STATE} and {ENV_FILE} (caches under {CACHE} kept)")
    except StackError as exc:
        print(f"[stack] ERROR {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
