"""Where a prepared dataset's files live: the one naming convention for client data.

A dataset folder (``fedbus data prepare`` or ``fedbus data import`` writes one) holds::

    <root>/manifest.json           the spec (feature shape, classes) and every file's SHA-256
    <root>/train.parquet           every training example
    <root>/test.parquet            the held-out test set (the aggregator evaluates on it)
    <root>/clients/<client id>.parquet   one client's share of train.parquet

A client's file is named after the client id of the trainer that reads it. Every trainer
already has a client id (``--client-id``; the fedbus chart's pod name, the fedbus-site chart's
``clientId``, the local demo's ``client-000``), so a trainer, a chart template or a script
finds its file from its own id alone, without a table from partition numbers to trainers; a
partition by a column (hospital, site) names each file after the value, which is the site's
natural client id. Numbered partitions are called ``client-000``, ``client-001``, ... unless
the caller gives other names (``client_ids("fedbus-trainer-cpu-{i}", 2)`` for the pods of the
fedbus chart, whose ``$(POD_NAME)`` Kubernetes cannot zero-pad).

This module is torch-free on purpose: the CLI, the trainer, the local demo and the Helm
chart's tests all use it. The charts cannot import Python, so their templates spell the same
path (``<root>/clients/$(POD_NAME).parquet``) and tests/unit/test_helm_charts.py renders them
and compares the path with :func:`client_file`.
"""

from __future__ import annotations

import string
from pathlib import Path

from fedbus.events.rounds import check_client_id

__all__ = [
    "CLIENTS_DIR",
    "CLIENT_FILE_PATTERN",
    "DEFAULT_CLIENT_NAMES",
    "MANIFEST_FILE",
    "TEST_FILE",
    "TRAIN_FILE",
    "client_file",
    "client_ids",
    "client_relpath",
]

MANIFEST_FILE = "manifest.json"
TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
CLIENTS_DIR = "clients"
CLIENT_FILE_PATTERN = CLIENTS_DIR + "/{client_id}.parquet"
"""A client's file, relative to the dataset folder."""
DEFAULT_CLIENT_NAMES = "client-{i:03d}"
"""How numbered partitions are named unless the caller says otherwise."""


def client_relpath(client_id: str) -> str:
    """``clients/<client_id>.parquet``; ``ValueError`` when it cannot be a client id."""
    return CLIENT_FILE_PATTERN.format(client_id=check_client_id(client_id))


def client_file(root: str | Path, client_id: str) -> Path:
    """The file the trainer ``client_id`` reads in the dataset folder ``root``."""
    return Path(root) / client_relpath(client_id)


def client_ids(template: str, count: int) -> list[str]:
    """Names for ``count`` numbered partitions from ``template`` (``{i}`` is 0, 1, ...).

    A template without ``{i}`` names a single partition (``hospital-a``).

    Raises
    ------
    ValueError
        When the template is malformed, uses a field other than ``i``, names several
        partitions alike, or makes a name that cannot be a client id.
    """
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"client names {template!r}: {exc}") from exc
    if fields - {"i"}:
        raise ValueError(f"client names {template!r}: only {{i}} may be used, e.g. site-{{i}}")
    if not fields and count > 1:
        raise ValueError(
            f"client names {template!r} has no {{i}} but {count} clients need distinct names"
        )
    try:
        names = [template.format(i=i) for i in range(count)]
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"client names {template!r}: {exc}") from exc
    for name in names:
        check_client_id(name)
    if len(set(names)) != len(names):
        raise ValueError(f"client names {template!r} gives the same name twice")
    return names
