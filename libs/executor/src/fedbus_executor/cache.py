"""Validated datasets kept in memory between runs, keyed by the file's identity.

A trainer trains on the same partition every round and the aggregator evaluates on the same
test set after every round: reading and validating the Parquet file each time is repeated
work. :class:`DatasetCache` loads a file once and hands back the same validated dataset
while the file's path, device, inode, size and modification time stay the same; a file that
changed is read and validated again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from fedbus_executor.dataset import DatasetSpec, LoadedDataset, load_dataset

__all__ = ["DatasetCache"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _FileKey:
    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    spec: DatasetSpec


def _file_key(path: Path, spec: DatasetSpec) -> _FileKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # load_dataset names the problem
    return _FileKey(str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, spec)


class DatasetCache:
    """The last ``capacity`` datasets loaded through it, least recently used dropped first.

    Their arrays are made read-only: every run shares them, so none may change them.
    Safe to use from several threads (the aggregator evaluates in worker threads).

    Parameters
    ----------
    capacity
        How many datasets to keep (each is held in memory in full).
    """

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError("a dataset cache holds at least one dataset")
        self._capacity = capacity
        self._entries: OrderedDict[_FileKey, LoadedDataset] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def load(self, path: str | Path, spec: DatasetSpec) -> LoadedDataset:
        """The validated dataset of ``path``, read only when it is new or changed.

        Raises
        ------
        DatasetError
            As :func:`~fedbus_executor.load_dataset` does.
        """
        path = Path(path)
        key = _file_key(path, spec)
        if key is not None:
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None:
                    self._entries.move_to_end(key)
                    return cached
        data = _frozen(load_dataset(path, spec))
        # Remember it only if the file did not change while it was read.
        if key is not None and _file_key(path, spec) == key:
            with self._lock:
                self._entries[key] = data
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
        logger.debug("dataset %s loaded into the cache", path)
        return data

    def clear(self) -> None:
        """Forget every dataset."""
        with self._lock:
            self._entries.clear()


def _frozen(data: LoadedDataset) -> LoadedDataset:
    data.labels.setflags(write=False)
    if data.features is not None:
        data.features.setflags(write=False)
    return data
