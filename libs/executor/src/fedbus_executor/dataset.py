"""Parquet datasets: a declared schema, and a loader that validates a file against it.

Image-like datasets store a flattened ``features`` column (fixed-size list of float32)
and an int64 ``label``; text datasets store a string ``text`` column and the label.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from fedbus_executor.errors import DatasetError

__all__ = ["DatasetSpec", "LoadedDataset", "load_dataset", "load_spec"]

logger = logging.getLogger(__name__)

LABEL_COLUMN = "label"

_Number = TypeVar("_Number", bound=np.generic)


class DatasetSpec(BaseModel):
    """The declared shape of a dataset, as written in its manifest.

    Attributes
    ----------
    name
        Dataset name, e.g. ``mnist``.
    kind
        ``image`` (numeric ``features`` column) or ``text`` (string ``text`` column).
    feature_shape
        Shape of one example's features (``[1, 28, 28]``); empty for text.
    classes
        Class names; labels are indices into this list.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["image", "text"] = "image"
    feature_shape: tuple[int, ...] = Field(default=())
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def feature_column(self) -> str:
        """Name of the feature column for this kind."""
        return "features" if self.kind == "image" else "text"

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema every file of this dataset must have."""
        if self.kind == "text":
            feature_type: pa.DataType = pa.string()
        else:
            feature_type = pa.list_(pa.float32(), math.prod(self.feature_shape))
        return pa.schema([(self.feature_column, feature_type), (LABEL_COLUMN, pa.int64())])


@dataclass(frozen=True)
class LoadedDataset:
    """A validated dataset in memory.

    Attributes
    ----------
    spec
        The declared schema it was validated against.
    labels
        int64 labels, one per example.
    features
        float32 array of shape ``(n, *feature_shape)`` for images, else ``None``.
    texts
        The strings for text datasets, else ``None``.
    """

    spec: DatasetSpec
    labels: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32] | None = None
    texts: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_spec(manifest_path: str | Path) -> DatasetSpec:
    """Read the dataset spec from a manifest JSON written by ``fedbus data prepare``.

    Raises
    ------
    DatasetError
        When the manifest is missing or malformed.
    """
    path = Path(manifest_path)
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        return DatasetSpec.model_validate(raw["spec"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(str(path), f"cannot read dataset manifest: {exc}") from exc


def load_dataset(path: str | Path, spec: DatasetSpec) -> LoadedDataset:
    """Read a Parquet file and validate it against ``spec``.

    Raises
    ------
    DatasetError
        Naming the file and the column: missing file, not Parquet, missing column,
        wrong type, wrong feature length, nulls, NaN or inf, label out of range.
    """
    table = _read_table(Path(path))
    _check_columns(str(path), table, spec)
    labels = _labels(str(path), table, spec)
    if spec.kind == "text":
        texts = table.column("text").to_pylist()
        logger.debug("loaded %s text examples from %s", len(texts), path)
        return LoadedDataset(spec=spec, labels=labels, texts=tuple(texts))
    features = _features(str(path), table, spec)
    logger.debug("loaded %s examples from %s", len(labels), path)
    return LoadedDataset(spec=spec, labels=labels, features=features)


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise DatasetError(str(path), "file does not exist")
    try:
        # ParquetFile reads one file without pyarrow.dataset, which imports pandas (about
        # 50 MB and a second of start-up in every process that loads data).
        with pq.ParquetFile(path) as parquet:
            return parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(str(path), f"not a readable Parquet file ({exc})") from exc


def _check_columns(path: str, table: pa.Table, spec: DatasetSpec) -> None:
    for field in spec.arrow_schema():
        if field.name not in table.column_names:
            raise DatasetError(path, "column is missing", column=field.name)
        if table.column(field.name).null_count:
            raise DatasetError(path, "contains null values", column=field.name)
        actual = table.schema.field(field.name).type
        if actual == field.type:
            continue
        if isinstance(actual, pa.ListType | pa.FixedSizeListType) and isinstance(
            field.type, pa.FixedSizeListType
        ):
            _check_list_column(path, table, field, actual)
            continue
        raise DatasetError(path, f"type is {actual}, expected {field.type}", column=field.name)


def _check_list_column(path: str, table: pa.Table, field: pa.Field, actual: pa.DataType) -> None:
    expected_len = field.type.list_size
    if actual.value_type != pa.float32():
        raise DatasetError(
            path, f"element type is {actual.value_type}, expected float32", column=field.name
        )
    lengths = _list_lengths(table.column(field.name), actual)
    bad = np.flatnonzero(lengths != expected_len)
    if bad.size:
        raise DatasetError(
            path,
            f"row {int(bad[0])} has {int(lengths[bad[0]])} values, expected "
            f"{expected_len} (feature shape)",
            column=field.name,
        )


def _list_lengths(column: pa.ChunkedArray, actual: pa.DataType) -> npt.NDArray[np.int64]:
    if isinstance(actual, pa.FixedSizeListType):
        return np.full(len(column), actual.list_size, dtype=np.int64)
    import pyarrow.compute as pc

    lengths = pc.list_value_length(column).combine_chunks().cast(pa.int64())
    return _numbers(lengths, np.int64)


def _numbers(array: pa.Array, dtype: type[_Number]) -> npt.NDArray[_Number]:
    """A primitive Arrow array without nulls as a read-only numpy view of its data.

    pyarrow's ``to_numpy`` imports pandas (tens of MB in every trainer), so the values are
    read straight from the Arrow data buffer instead.
    """
    if array.type != pa.from_numpy_dtype(dtype) or array.null_count:
        raise ValueError(f"expected {dtype.__name__} values without nulls, got {array.type}")
    data = array.buffers()[1]
    if data is None or len(array) == 0:
        return np.empty(0, dtype=dtype)
    width = np.dtype(dtype).itemsize
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * width)


def _labels(path: str, table: pa.Table, spec: DatasetSpec) -> npt.NDArray[np.int64]:
    labels = _numbers(table.column(LABEL_COLUMN).combine_chunks(), np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= spec.num_classes))
    if bad.size:
        raise DatasetError(
            path,
            f"row {int(bad[0])} has label {int(labels[bad[0]])}, outside "
            f"[0, {spec.num_classes - 1}]",
            column=LABEL_COLUMN,
        )
    return labels


def _features(path: str, table: pa.Table, spec: DatasetSpec) -> npt.NDArray[np.float32]:
    values = table.column("features").combine_chunks().flatten()
    if values.null_count:
        raise DatasetError(path, "contains null values inside its lists", column="features")
    features = _numbers(values, np.float32).reshape((len(table), *spec.feature_shape))
    finite = np.isfinite(features.reshape(len(table), -1)).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DatasetError(path, f"row {row} contains NaN or inf", column="features")
    return features
