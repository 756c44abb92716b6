"""The datasets a trainer holds: ``NAME=PATH`` arguments, validated once at start-up.

Each path is a client Parquet file written by ``fedbus data prepare`` or ``fedbus data
import``, or the dataset folder they write, where the trainer reads its own file
``clients/<client id>.parquet`` (:func:`fedbus.datalayout.client_file`). Its spec comes from
the ``manifest.json`` found in a parent folder, exactly as the executor's ``DataRef`` finds
it. A file that does not validate stops the trainer before it announces anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fedbus.datalayout import MANIFEST_FILE, client_file
from fedbus.events import DatasetInfo
from fedbus_executor import DataRef, DatasetError, DatasetSpec, load_dataset

__all__ = ["DataArgumentError", "LocalDataset", "load_local_datasets", "parse_data_args"]


class DataArgumentError(ValueError):
    """A ``--data`` argument is not ``NAME=PATH``, or a name is given twice."""


@dataclass(frozen=True)
class LocalDataset:
    """A validated local dataset: its announced name, file, declared spec and size."""

    name: str
    path: Path
    spec: DatasetSpec
    num_samples: int

    def data_ref(self) -> DataRef:
        """The executor's reference to this file (with its spec inline)."""
        return DataRef(path=str(self.path), spec=self.spec)

    def info(self) -> DatasetInfo:
        """What a heartbeat says about it."""
        return DatasetInfo(name=self.name, num_samples=self.num_samples)


def parse_data_args(values: Iterable[str]) -> dict[str, Path]:
    """Turn ``NAME=PATH`` strings (commas also separate pairs) into a name -> path map.

    Raises
    ------
    DataArgumentError
        When an entry has no ``=``, an empty side, or a name repeats.
    """
    pairs: dict[str, Path] = {}
    for value in values:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            name, sep, path = entry.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise DataArgumentError(f"--data {entry!r}: expected NAME=PATH")
            if name.strip() in pairs:
                raise DataArgumentError(f"--data: dataset name {name.strip()!r} given twice")
            pairs[name.strip()] = Path(path.strip())
    return pairs


def load_local_datasets(
    paths: dict[str, Path], client_id: str | None = None
) -> dict[str, LocalDataset]:
    """Validate every file with the executor's loader and count its examples.

    A path that is a dataset folder (it holds ``manifest.json``) stands for the file of
    ``client_id`` in it, ``clients/<client_id>.parquet``.

    Raises
    ------
    DatasetError
        Naming the file, when one is missing, has no manifest or breaks its schema.
    """
    loaded: dict[str, LocalDataset] = {}
    for name, given in paths.items():
        path = given
        if given.is_dir() and (given / MANIFEST_FILE).is_file():
            if client_id is None:
                raise DatasetError(str(given), "a dataset folder needs the trainer's client id")
            path = client_file(given, client_id)
            if not path.is_file():
                raise DatasetError(
                    str(path),
                    f"no file for client {client_id!r} in this dataset folder (write it with "
                    f"`fedbus data prepare/import --client-names`, docs/data.md)",
                )
        if not path.is_file():
            raise DatasetError(str(path), "no such file")
        spec = DataRef(path=str(path)).resolve_spec()
        data = load_dataset(path, spec)
        loaded[name] = LocalDataset(name=name, path=path, spec=spec, num_samples=len(data))
    return loaded
