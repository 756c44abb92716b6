"""The artifact keyring from settings: ``FEDBUS_ARTIFACT_KEYS`` and/or a mounted secret.

- ``FEDBUS_ARTIFACT_KEYS``: ``id:base64key,id2:base64key`` (keys of 16, 24 or 32 bytes).
- ``FEDBUS_ARTIFACT_KEYS_FILE``: a file of ``id: base64key`` lines (``#`` comments and blank
  lines skipped), or a directory holding one file per key, named by its id and holding its
  base64 key, as Kubernetes mounts a Secret (entries starting with ``.`` are skipped).
- ``FEDBUS_ARTIFACT_KEY_ID``: the id of the key new artifacts are written with; needed when
  there is more than one key, else the one key is current.

Without any key, artifacts are stored in plaintext, which only ``development`` and ``test``
allow: in ``production`` building a store refuses to start. Errors name settings and key ids,
never key bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path

from fedbus.settings import Environment, FedbusSettings, InsecureSettingsError
from fedbus.storage.crypto import KEY_ID_PATTERN, AesGcmCipher

__all__ = ["ArtifactKeyError", "artifact_cipher", "parse_keys"]

log = logging.getLogger(__name__)


class ArtifactKeyError(ValueError):
    """The artifact key settings are malformed (the message never holds key material)."""


def artifact_cipher(settings: FedbusSettings) -> AesGcmCipher | None:
    """The keyring the settings name, or ``None`` (plaintext) outside production.

    Raises
    ------
    InsecureSettingsError
        In production when no key is configured.
    ArtifactKeyError
        When a key, key id or the keys file is malformed, or the current key id is unknown.
    """
    keys: dict[str, bytes] = {}
    if settings.artifact_keys is not None:
        text = settings.artifact_keys.get_secret_value()
        _merge(keys, parse_keys(text, separator=",", source="FEDBUS_ARTIFACT_KEYS"))
    if settings.artifact_keys_file is not None:
        _merge(keys, _read_keys_file(settings.artifact_keys_file))
    if not keys:
        if settings.env is Environment.PRODUCTION:
            raise InsecureSettingsError(
                "refusing to start in production without artifact keys: set "
                "FEDBUS_ARTIFACT_KEYS (id:base64key,...) or FEDBUS_ARTIFACT_KEYS_FILE (a file "
                "of 'id: base64key' lines or a directory of files named by key id)"
            )
        log.warning("artifacts are stored in plaintext: no FEDBUS_ARTIFACT_KEYS(_FILE) set")
        return None
    current = settings.artifact_key_id
    if current is None:
        if len(keys) > 1:
            raise ArtifactKeyError(
                f"FEDBUS_ARTIFACT_KEY_ID must name the key to write with, one of {sorted(keys)}"
            )
        current = next(iter(keys))
    if current not in keys:
        raise ArtifactKeyError(
            f"FEDBUS_ARTIFACT_KEY_ID is {current!r}, which is not among the keys {sorted(keys)}"
        )
    log.info("artifacts encrypted at rest with key id %r (key ids held: %s)", current, sorted(keys))
    return AesGcmCipher.from_keys(keys, current=current)


def parse_keys(text: str, *, separator: str, source: str) -> dict[str, bytes]:
    """``id:base64`` entries split by ``separator`` (``,`` or a newline), blanks skipped."""
    keys: dict[str, bytes] = {}
    for number, entry in enumerate(text.split(separator), start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        key_id, colon, encoded = entry.partition(":")
        if not colon:
            raise ArtifactKeyError(f"{source}: entry {number} is not 'id:base64key'")
        _merge(keys, {key_id.strip(): _decode(encoded, key_id.strip(), source)})
    return keys


def _read_keys_file(path: Path) -> dict[str, bytes]:
    source = f"FEDBUS_ARTIFACT_KEYS_FILE ({path})"
    try:
        if path.is_dir():
            return {
                entry.name: _decode(entry.read_text(), entry.name, source)
                for entry in sorted(path.iterdir())
                if not entry.name.startswith(".") and entry.is_file()
            }
        return parse_keys(path.read_text(), separator="\n", source=source)
    except OSError as exc:
        raise ArtifactKeyError(f"{source}: cannot read it: {exc.strerror}") from None


def _decode(encoded: str, key_id: str, source: str) -> bytes:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ArtifactKeyError(
            f"{source}: a key id is 1 to 64 letters, digits, '.', '_' or '-', got {key_id!r}"
        )
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise ArtifactKeyError(f"{source}: key {key_id!r} is not valid base64") from None
    if len(key) not in (16, 24, 32):
        raise ArtifactKeyError(
            f"{source}: key {key_id!r} is {len(key)} bytes; an AES key is 16, 24 or 32"
        )
    return key


def _merge(into: dict[str, bytes], more: dict[str, bytes]) -> None:
    for key_id, key in more.items():
        if into.get(key_id, key) != key:
            raise ArtifactKeyError(f"key id {key_id!r} is given twice with different keys")
        into[key_id] = key
