"""``fedbus models list|versions|download``: the tenant's registered models via the gateway."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from fedbus_cli.commands._gateway import (
    GatewayClient,
    GatewayError,
    add_connection_flags,
    run_with_client,
)
from fedbus_cli.commands.available import add_available_parser
from fedbus_cli.commands.predict import add_predict_parser

__all__ = ["register", "version_sha256"]


def register(subparsers: Any) -> None:
    """Add the ``models`` group to the top-level subparsers."""
    group = subparsers.add_parser("models", help="registered models, through the gateway")
    commands = group.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    listing = commands.add_parser("list", help="your tenant's models")
    listing.add_argument("--json", action="store_true", help="print the raw JSON")
    listing.set_defaults(handler=_list)
    versions = commands.add_parser("versions", help="the versions of one model")
    versions.add_argument("name")
    versions.add_argument("--json", action="store_true", help="print the raw JSON")
    versions.set_defaults(handler=_versions)
    download = commands.add_parser("download", help="download a version, checking its SHA-256")
    download.add_argument("name")
    download.add_argument("version", type=int)
    download.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    download.set_defaults(handler=_download)
    for parser in (listing, versions, download):
        add_connection_flags(parser)
    add_predict_parser(commands)
    add_available_parser(commands)


def _list(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        body = client.request("GET", "/v1/models")
        if args.json:
            print(json.dumps(body, indent=2))
            return 0
        print(f"{'NAME':<32}  {'LATEST':>6}  UPDATED")
        for model in body.get("models", []):
            latest = model.get("latest_version", "?")
            print(f"{model.get('name', '?'):<32}  {latest!s:>6}  {model.get('updated_at', '')}")
        return 0

    return run_with_client(args, act)


def _versions(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        body = client.request("GET", f"/v1/models/{args.name}/versions")
        if args.json:
            print(json.dumps(body, indent=2))
            return 0
        print(f"{'VERSION':>7}  {'STATUS':<16}  {'ROUNDS':>6}  {'ACCURACY':>8}  JOB")
        for v in body.get("versions", []):
            accuracy = (v.get("metrics") or {}).get("accuracy")
            acc = f"{accuracy:.4f}" if isinstance(accuracy, float | int) else "-"
            print(f"{v.get('version', '?')!s:>7}  {v.get('status', '?'):<16}  "
                  f"{v.get('rounds', '?')!s:>6}  {acc:>8}  {v.get('job_id', '')}")  # fmt: skip
        return 0

    return run_with_client(args, act)


def version_sha256(version: dict[str, Any]) -> str | None:
    """The artifact's SHA-256 in a registry version record (flat or under ``artifact``)."""
    for holder in (version, version.get("artifact") or {}):
        for key in ("sha256", "artifact_sha256"):
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, str) and value:
                return value.lower()
    return None


def _download(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        version = client.request("GET", f"/v1/models/{args.name}/versions/{args.version}")
        url, expected = version.get("download_url"), version_sha256(version)
        if not url or not expected:
            raise GatewayError("the registry's answer has no download_url or SHA-256")
        object_key = (version.get("artifact") or {}).get("object_key")
        return _fetch(client, url, expected, args.output, object_key=object_key)

    return run_with_client(args, act)


def _fetch(
    client: GatewayClient, url: str, expected: str, output: Path, *, object_key: str | None
) -> int:
    partial = output.with_name(output.name + ".part")
    digest, size = hashlib.sha256(), 0
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with partial.open("wb") as out:
            for chunk in client.download(url):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected and object_key and _is_envelope(partial):
            plain = _decrypt(partial.read_bytes(), object_key)
            partial.write_bytes(plain)
            digest, size = hashlib.sha256(plain), len(plain)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        print(
            f"error: SHA-256 mismatch: expected {expected}, got {digest.hexdigest()}; "
            f"nothing written",
            file=sys.stderr,
        )
        return 1
    partial.replace(output)
    print(f"wrote {output} ({size} bytes, sha256 {expected})")
    return 0


def _is_envelope(path: Path) -> bool:
    with path.open("rb") as body:
        return body.read(4) in (b"FBE2", b"FBE1")


def _decrypt(body: bytes, object_key: str) -> bytes:
    """Open an artifact stored encrypted at rest with the keyring of this machine's settings.

    A presigned link serves the object as stored; the registry's SHA-256 names the plaintext.
    """
    from fedbus.settings import load_settings
    from fedbus.storage import DecryptionError, artifact_cipher

    try:
        cipher = artifact_cipher(load_settings())
    except ValueError as exc:
        raise GatewayError(
            f"the artifact is encrypted at rest; the keys are unusable: {exc}"
        ) from None
    if cipher is None:
        raise GatewayError(
            "the artifact is encrypted at rest: set FEDBUS_ARTIFACT_KEYS or "
            "FEDBUS_ARTIFACT_KEYS_FILE to the key it was written with to decrypt it; "
            "nothing written"
        )
    try:
        return cipher.decrypt(body, associated=object_key.encode())
    except DecryptionError as exc:
        raise GatewayError(f"cannot decrypt the artifact: {exc}; nothing written") from None
