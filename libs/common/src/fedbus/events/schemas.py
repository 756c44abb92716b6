"""Finding and loading the Avro schemas in ``schemas/`` (the source of truth).

The directory is ``$FEDBUS_SCHEMA_DIR`` when set, else the first ``schemas/`` folder
holding a ``topics.yaml`` found walking up from this file (the repository checkout).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from fedbus.errors import FedbusError

__all__ = [
    "ENVELOPE_FILE",
    "SCHEMA_DIR_ENV",
    "SchemaNotFoundError",
    "envelope_schema",
    "event_schema",
    "event_schema_path",
    "load_json",
    "released_schema",
    "released_schema_path",
    "released_versions",
    "schema_dir",
]

logger = logging.getLogger(__name__)

SCHEMA_DIR_ENV = "FEDBUS_SCHEMA_DIR"
ENVELOPE_FILE = "envelope.avsc"


class SchemaNotFoundError(FedbusError):
    """The schema directory, or a schema in it, does not exist."""


@functools.cache
def schema_dir() -> Path:
    """Return the directory holding the ``.avsc`` files and ``topics.yaml``.

    Raises
    ------
    SchemaNotFoundError
        When neither ``$FEDBUS_SCHEMA_DIR`` nor a checkout's ``schemas/`` exists.
    """
    configured = os.environ.get(SCHEMA_DIR_ENV)
    if configured:
        path = Path(configured)
        if not (path / "topics.yaml").is_file():
            raise SchemaNotFoundError(f"{SCHEMA_DIR_ENV}={configured} holds no topics.yaml")
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "schemas"
        if (candidate / "topics.yaml").is_file():
            logger.debug("using event schemas in %s", candidate)
            return candidate
    raise SchemaNotFoundError(f"no schemas/ directory found; set {SCHEMA_DIR_ENV}")


def load_json(path: Path) -> dict[str, Any]:
    """Return the JSON object in ``path`` (an ``.avsc`` or an example payload)."""
    if not path.is_file():
        raise SchemaNotFoundError(f"{path} does not exist")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise SchemaNotFoundError(f"{path} does not hold a JSON object")
    return loaded


def event_schema_path(event_type: str) -> Path:
    """Return the path of the current schema of ``event_type``."""
    return schema_dir() / f"{event_type}.avsc"


def released_schema_path(event_type: str, version: int) -> Path:
    """Return the path of release ``version`` of ``event_type``'s schema."""
    return schema_dir() / "released" / f"v{version}" / f"{event_type}.avsc"


def released_versions(event_type: str) -> list[int]:
    """Return the released versions of ``event_type``, oldest first."""
    released = schema_dir() / "released"
    versions = [
        int(folder.name[1:])
        for folder in released.glob("v*")
        if folder.name[1:].isdigit() and (folder / f"{event_type}.avsc").is_file()
    ]
    return sorted(versions)


def _parse(raw: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(raw, {})
    if not isinstance(parsed, dict):
        raise SchemaNotFoundError("an event schema must be an Avro record")
    return parsed


@functools.cache
def event_schema(event_type: str) -> dict[str, Any]:
    """Return the parsed (fastavro) current schema of ``event_type``."""
    return _parse(load_json(event_schema_path(event_type)))


@functools.cache
def released_schema(event_type: str, version: int) -> dict[str, Any]:
    """Return the parsed (fastavro) schema of release ``version`` of ``event_type``."""
    return _parse(load_json(released_schema_path(event_type, version)))


@functools.cache
def envelope_schema() -> dict[str, Any]:
    """Return the parsed envelope schema: the leading fields of every event."""
    return _parse(load_json(schema_dir() / ENVELOPE_FILE))
