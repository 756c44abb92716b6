"""Build a dataset into Parquet: held-out test set, full train set, client partitions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from fedbus.datalayout import (
    CLIENT_FILE_PATTERN,
    CLIENTS_DIR,
    DEFAULT_CLIENT_NAMES,
    MANIFEST_FILE,
    client_ids,
    client_relpath,
)
from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.partition import (
    dirichlet_partition,
    iid_partition,
    label_histogram,
    train_test_split,
)
from fedbus_executor.sources import SOURCES, RawDataset

__all__ = [
    "PrepareOptions",
    "PreparedDataset",
    "prepare_dataset",
    "write_dataset_folder",
    "write_parquet",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareOptions:
    """How to split a dataset.

    Attributes
    ----------
    num_clients
        Number of client partitions of the training set.
    partition
        ``iid`` or ``dirichlet`` (non-IID over labels).
    alpha
        Dirichlet concentration; smaller is more skewed.
    seed
        Seed of every random choice; same seed, same files.
    test_fraction
        Share held out for testing when the source has no test split.
    limit
        Keep at most this many training examples (for quick runs); ``None`` keeps all.
    client_names
        Names of the client files, ``{i}`` being 0, 1, ...: ``clients/client-000.parquet``
        by default (:func:`fedbus.datalayout.client_ids`).
    """

    num_clients: int = 4
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = 0.5
    seed: int = 0
    test_fraction: float = 0.2
    limit: int | None = None
    client_names: str = DEFAULT_CLIENT_NAMES


@dataclass(frozen=True)
class PreparedDataset:
    """What ``prepare_dataset`` wrote; ``manifest`` is also saved as ``manifest.json``."""

    root: Path
    spec: DatasetSpec
    manifest: dict[str, object] = field(repr=False)
    client_histograms: list[list[int]] = field(repr=False)


def prepare_dataset(name: str, out_dir: str | Path, options: PrepareOptions) -> PreparedDataset:
    """Load source ``name`` and write ``out_dir/<name>/`` with a JSON manifest.

    Raises
    ------
    KeyError
        When ``name`` is not one of ``mnist``, ``fashion-mnist``, ``digits``, ``text``.
    DatasetError
        When the source data is not installed (the message says how to install it).
    """
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; choose from {sorted(SOURCES)}")
    names = client_ids(options.client_names, options.num_clients)
    raw = SOURCES[name]()
    train, test = _split(raw, options)
    spec = DatasetSpec(
        name=name,
        kind="text" if raw.texts is not None else "image",
        feature_shape=raw.feature_shape,
        classes=raw.classes,
    )
    root = Path(out_dir) / name
    files = {"test.parquet": test, "train.parquet": train}
    parts = {
        cid: _take(train, idx)
        for cid, idx in zip(names, _partition(train.labels, options), strict=True)
    }
    histograms = [label_histogram(p.labels, num_classes=spec.num_classes) for p in parts.values()]
    extra: dict[str, object] = {
        "partition": options.partition,
        "alpha": options.alpha if options.partition == "dirichlet" else None,
        "seed": options.seed,
        "num_clients": options.num_clients,
        "client_label_histograms": histograms,
    }
    manifest = write_dataset_folder(root, spec, files, parts, extra, replace=True)
    return PreparedDataset(root, spec, manifest, histograms)


def _split(raw: RawDataset, options: PrepareOptions) -> tuple[RawDataset, RawDataset]:
    if raw.test is not None:
        train, test = raw, raw.test
    else:
        tr, te = train_test_split(
            n=len(raw.labels), test_fraction=options.test_fraction, seed=options.seed
        )
        train, test = _take(raw, tr), _take(raw, te)
    if options.limit is not None and options.limit < len(train.labels):
        keep = np.sort(np.random.default_rng(options.seed).permutation(len(train.labels)))
        train = _take(train, np.sort(keep[: options.limit]))
    return train, test


def _partition(
    labels: npt.NDArray[np.int64], options: PrepareOptions
) -> list[npt.NDArray[np.int64]]:
    if options.partition == "iid":
        return iid_partition(n=len(labels), num_clients=options.num_clients, seed=options.seed)
    return dirichlet_partition(
        labels=labels, num_clients=options.num_clients, alpha=options.alpha, seed=options.seed
    )


def _take(raw: RawDataset, idx: npt.NDArray[np.int64]) -> RawDataset:
    return RawDataset(
        raw.name,
        raw.classes,
        raw.labels[idx],
        None if raw.features is None else raw.features[idx],
        None if raw.texts is None else tuple(raw.texts[i] for i in idx),
        raw.feature_shape,
    )


def write_parquet(
    path: str | Path,
    spec: DatasetSpec,
    *,
    labels: npt.NDArray[np.int64],
    features: npt.NDArray[np.float32] | None = None,
    texts: tuple[str, ...] | list[str] | None = None,
) -> None:
    """Write one file in the layout ``spec`` declares (used by prepare and by tests)."""
    schema = spec.arrow_schema()
    if spec.kind == "text":
        column: pa.Array = pa.array(list(texts or ()), type=pa.string())
    else:
        flat = np.ascontiguousarray(features, dtype=np.float32).reshape(-1)
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat), schema.field(0).type.list_size)
    table = pa.table([column, pa.array(labels, pa.int64())], schema=schema)
    pq.write_table(table, path, compression="zstd")


def write_dataset_folder(
    root: Path,
    spec: DatasetSpec,
    files: Mapping[str, RawDataset],
    clients: Mapping[str, RawDataset],
    extra: Mapping[str, object],
    *,
    replace: bool,
) -> dict[str, object]:
    """Write a dataset folder at ``root`` in one step: all of it, or nothing.

    ``files`` are written under their names (``train.parquet``, ``test.parquet``), each
    client's data at :func:`fedbus.datalayout.client_relpath`, then ``manifest.json`` (the
    spec, ``extra``, the client ids, each file's rows and SHA-256). Everything goes to a
    temporary folder beside ``root`` that is renamed to ``root`` at the end; an existing
    ``root`` is replaced only when ``replace`` (else ``FileExistsError``).
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the folder keeps the umask's permissions once renamed into place.
    staging = root.parent / f".{root.name}.tmp-{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        (staging / CLIENTS_DIR).mkdir()
        entries: dict[str, dict[str, object]] = {}
        named = {**files, **{client_relpath(cid): data for cid, data in clients.items()}}
        for rel, data in named.items():
            path = staging / rel
            write_parquet(path, spec, labels=data.labels, features=data.features, texts=data.texts)
            entries[rel] = {"rows": len(data.labels), "sha256": _sha256(path)}
            logger.info("wrote %s (%s rows)", root / rel, len(data.labels))
        manifest: dict[str, object] = {
            "dataset": spec.name,
            "spec": spec.model_dump(mode="json"),
            "schema": {f.name: str(f.type) for f in spec.arrow_schema()},
            "classes": list(spec.classes),
            **extra,
            "client_file_pattern": CLIENT_FILE_PATTERN,
            "clients": list(clients),
            "files": entries,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(staging, root, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _move_into_place(staging: Path, root: Path, *, replace: bool) -> None:
    if not root.exists():
        os.rename(staging, root)
        return
    if not replace:
        raise FileExistsError(f"{root} already exists")
    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    os.rename(root, old / root.name)
    try:
        os.rename(staging, root)
    except OSError:
        os.rename(old / root.name, root)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
