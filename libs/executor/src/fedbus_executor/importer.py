"""``fedbus data import``: a user's CSV or Parquet file into the layout trainers read.

The file has one example per row: a label column (integers ``0 .. K-1``), feature columns
(numbers), and optionally a column naming where each row comes from (hospital, site, writer).
The result is the folder ``fedbus data prepare`` writes (``manifest.json``, ``train.parquet``,
``test.parquet``, ``clients/<client id>.parquet``; see :mod:`fedbus.datalayout`), validated
row by row first: an error names the row (1 is the first data row, line 2 of a CSV with its
header) and the column, and nothing is written. The folder is written under a temporary name
next to its destination and renamed into place, so a failure never leaves half a dataset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedbus.datalayout import DEFAULT_CLIENT_NAMES, client_ids
from fedbus.events.rounds import check_client_id
from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.errors import DatasetError
from fedbus_executor.partition import (
    dirichlet_partition,
    iid_partition,
    label_histogram,
    train_test_split,
)
from fedbus_executor.prepare import PreparedDataset, write_dataset_folder
from fedbus_executor.sources import RawDataset

__all__ = ["DataImportError", "ImportOptions", "import_dataset", "read_table"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class DataImportError(DatasetError):
    """The user's file cannot be imported: names the file, and the row and column at fault.

    ``row`` counts data rows from 1 (line ``row + 1`` of a CSV with a header); ``None`` when
    the problem is not one row's (a missing column, too few sites).
    """

    def __init__(
        self, path: str, problem: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        self.row = row
        super().__init__(path, problem if row is None else f"row {row}: {problem}", column=column)


@dataclass(frozen=True)
class ImportOptions:
    """How to read and split the user's file.

    Attributes
    ----------
    label
        The label column: integers ``0 .. K-1``.
    features
        Feature columns, in order; empty: every other numeric column, in file order.
    image_shape
        When set, the features are an image's pixels flattened (``(1, 28, 28)`` needs 784
        columns) and the dataset's feature shape is this; else ``(number of features,)``.
    classes
        Class names (their number is K); empty: ``"0" .. str(max label)``.
    test_fraction
        Share of the rows held out in ``test.parquet`` (seeded, drawn from every client).
    partition_by
        A column whose values name the clients (one file per value); else numbered clients.
    num_clients
        Number of numbered clients (ignored with ``partition_by``).
    dirichlet_alpha
        Non-IID label skew of numbered clients, Dirichlet(alpha); ``None``: IID.
    client_names
        Names of numbered clients, ``{i}`` being 0, 1, ... (default ``client-{i:03d}``).
    seed
        Seed of the test split and the partition: same seed, same files.
    name
        Dataset name (the folder under the output directory); default: the file's stem.
    """

    label: str
    features: tuple[str, ...] = ()
    image_shape: tuple[int, ...] | None = None
    classes: tuple[str, ...] = ()
    test_fraction: float = 0.2
    partition_by: str | None = None
    num_clients: int = 1
    dirichlet_alpha: float | None = None
    client_names: str = DEFAULT_CLIENT_NAMES
    seed: int = 0
    name: str | None = None


@dataclass(frozen=True)
class _Parsed:
    """The validated contents of the user's file."""

    labels: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    feature_columns: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    groups: npt.NDArray[np.str_] | None = field(default=None)


def import_dataset(
    path: str | Path, out_dir: str | Path, options: ImportOptions, *, replace: bool = False
) -> PreparedDataset:
    """Validate ``path`` (``.csv`` or ``.parquet``) and write ``out_dir/<name>/``.

    Raises
    ------
    DataImportError
        Naming the file, the row and the column of the first problem found; nothing is
        written. Also when ``out_dir/<name>`` exists and ``replace`` is false.
    """
    source = Path(path)
    name = options.name if options.name is not None else _default_name(source)
    if not _NAME.fullmatch(name):
        raise DataImportError(
            str(source), f"dataset name {name!r}: use letters, digits, '.', '_' and '-'"
        )
    target = Path(out_dir) / name
    if target.exists() and not replace:
        raise DataImportError(str(target), "already exists (pass --force to replace it)")
    _check_options(str(source), options)
    table = read_table(source)
    parsed = _parse(str(source), table, options)
    classes = _classes(str(source), parsed.labels, options)
    shape = options.image_shape or (len(parsed.feature_columns),)
    spec = DatasetSpec(name=name, kind="image", feature_shape=shape, classes=classes)
    everything = RawDataset(
        name, classes, parsed.labels, parsed.features.reshape(-1, *shape), feature_shape=shape
    )
    train_idx, test_idx = train_test_split(
        n=len(parsed.labels), test_fraction=options.test_fraction, seed=options.seed
    )
    train, test = _take(everything, train_idx), _take(everything, test_idx)
    clients, values = _clients(str(source), options, train.labels, parsed.groups, train_idx)
    files = {"train.parquet": train, "test.parquet": test}
    parts = {cid: _take(train, idx) for cid, idx in clients.items()}
    histograms = [label_histogram(p.labels, num_classes=len(classes)) for p in parts.values()]
    manifest = write_dataset_folder(
        target,
        spec,
        files,
        parts,
        {
            "source": {
                "file": source.name,
                "format": source.suffix.lstrip(".").lower(),
                "rows": len(parsed.labels),
                "label": options.label,
                "features": list(parsed.feature_columns),
                "ignored_columns": list(parsed.ignored_columns),
                "image_shape": list(options.image_shape) if options.image_shape else None,
                "partition_by": options.partition_by,
            },
            "partition": _partition_kind(options),
            "alpha": options.dirichlet_alpha,
            "seed": options.seed,
            "test_fraction": options.test_fraction,
            "num_clients": len(parts),
            "client_values": values,
            "client_label_histograms": histograms,
        },
        replace=replace,
    )
    return PreparedDataset(target, spec, manifest, histograms)


def read_table(path: Path) -> pa.Table:
    """Every column of a CSV as strings (so that no value is guessed away), or a Parquet file.

    Empty cells and ``NA``/``NaN``/``null`` (pyarrow's defaults) read as missing.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataImportError(str(path), "file does not exist")
    try:
        if suffix == ".parquet":
            with pq.ParquetFile(path) as parquet:
                table = parquet.read()
        elif suffix in (".csv", ".tsv"):
            table = _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise DataImportError(str(path), "expected a .csv, .tsv or .parquet file")
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise DataImportError(str(path), f"cannot read the file ({exc})") from exc
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataImportError(str(path), f"column names appear twice: {', '.join(dupes)}")
    if table.num_rows == 0:
        raise DataImportError(str(path), "has no rows")
    return table


def _read_csv(path: Path, *, delimiter: str) -> pa.Table:
    import pyarrow.csv as pacsv

    with path.open(encoding="utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n")
    names = [n.strip().strip('"') for n in header.split(delimiter)] if header else []
    if not names or not any(names):
        raise DataImportError(str(path), "has no header row (the first line names the columns)")
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        row = _ragged_row(path, delimiter, len(names))
        if row is None:
            raise
        raise DataImportError(
            str(path), f"has {row[1]} cells, the header names {len(names)}", row=row[0]
        ) from exc


def _ragged_row(path: Path, delimiter: str, width: int) -> tuple[int, int] | None:
    """The first data row (from 1) whose number of cells is not ``width``, and that number."""
    import csv

    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        for number, cells in enumerate(reader, start=1):
            if cells and len(cells) != width:
                return number, len(cells)
    return None


def _check_options(path: str, options: ImportOptions) -> None:
    if not 0.0 < options.test_fraction < 1.0:
        raise DataImportError(path, f"test fraction must be in (0, 1), got {options.test_fraction}")
    if options.image_shape is not None and (
        not options.image_shape or min(options.image_shape) < 1
    ):
        raise DataImportError(path, f"image shape {options.image_shape}: positive sizes only")
    if options.partition_by is None:
        if options.num_clients < 1:
            raise DataImportError(path, f"clients must be >= 1, got {options.num_clients}")
        if options.dirichlet_alpha is not None and options.dirichlet_alpha <= 0:
            raise DataImportError(
                path, f"dirichlet alpha must be > 0, got {options.dirichlet_alpha}"
            )
        try:
            client_ids(options.client_names, options.num_clients)
        except ValueError as exc:
            raise DataImportError(path, str(exc)) from exc
    else:
        if options.dirichlet_alpha is not None:
            raise DataImportError(path, "--dirichlet splits numbered clients, not --partition-by")
        if options.partition_by == options.label:
            raise DataImportError(path, "the partition column cannot be the label")
        if options.partition_by in options.features:
            raise DataImportError(path, "the partition column cannot be a feature")
    if options.label in options.features:
        raise DataImportError(path, "the label cannot be a feature", column=options.label)
    if len(set(options.features)) != len(options.features):
        raise DataImportError(path, "a feature column is named twice")


def _parse(path: str, table: pa.Table, options: ImportOptions) -> _Parsed:
    names = table.column_names
    for wanted in (options.label, options.partition_by, *options.features):
        if wanted is not None and wanted not in names:
            raise DataImportError(
                path, f"column is missing (the file has: {', '.join(names)})", column=wanted
            )
    labels = _label_values(path, table, options.label)
    reserved = {options.label, options.partition_by}
    ignored: list[str] = []
    if options.features:
        chosen = list(options.features)
    else:
        chosen = []
        for name in names:
            if name in reserved:
                continue
            if _numeric_share(table.column(name)) > 0:
                chosen.append(name)
            else:
                ignored.append(name)
        if not chosen:
            raise DataImportError(path, "no numeric feature columns besides the label")
    if options.image_shape is not None and len(chosen) != math.prod(options.image_shape):
        shape = "x".join(map(str, options.image_shape))
        raise DataImportError(
            path,
            f"image shape {shape} needs {math.prod(options.image_shape)} pixel columns, "
            f"found {len(chosen)} feature columns ({_first(chosen)})",
        )
    columns = [_float_values(path, table, name) for name in chosen]
    features = np.stack(columns, axis=1) if columns else np.empty((len(labels), 0))
    _check_finite(path, features, chosen)
    groups = None
    if options.partition_by is not None:
        groups = _group_values(path, table, options.partition_by)
    return _Parsed(
        labels=labels,
        features=features.astype(np.float32),
        feature_columns=tuple(chosen),
        ignored_columns=tuple(ignored),
        groups=groups,
    )


def _numeric_share(column: pa.ChunkedArray) -> float:
    """Share of the non-missing values that are numbers (1.0 for a numeric column)."""
    if _is_number_type(column.type):
        return 1.0
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return 0.0
    values = [v for v in column.to_pylist() if v is not None]
    if not values:
        return 0.0
    return sum(_parses(v) for v in values) / len(values)


def _is_number_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _parses(value: str) -> bool:
    try:
        pc.cast(pa.array([value]), pa.float64())
    except pa.ArrowInvalid:
        return False
    return True


def _float_values(path: str, table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    """The column as float64 with NaN for missing cells; the first non-number is an error."""
    column = table.column(name).combine_chunks()
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    if not (_is_number_type(column.type) or pa.types.is_string(column.type)):
        raise DataImportError(path, f"type {column.type} is not numeric", column=name)
    try:
        numbers = pc.cast(column, pa.float64())
    except pa.ArrowInvalid:
        values = column.to_pylist()
        row = next(i for i, v in enumerate(values) if v is not None and not _parses(v))
        raise DataImportError(
            path, f"{values[row]!r} is not a number", column=name, row=row + 1
        ) from None
    return np.asarray(numbers.fill_null(math.nan).to_numpy(zero_copy_only=False), np.float64)


def _check_finite(path: str, features: npt.NDArray[np.float64], names: Sequence[str]) -> None:
    # float32 is what the Parquet files hold: a value beyond its range would become inf.
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(features.astype(np.float32))
    if not bad.any():
        return
    row, col = (int(x) for x in np.argwhere(bad)[0])
    value = features[row, col]
    if math.isnan(value):
        problem = "value is missing (empty, NA or NaN)"
    elif math.isinf(value):
        problem = f"value is {value} (features must be finite)"
    else:
        problem = f"value {value!r} does not fit in float32"
    raise DataImportError(path, problem, column=names[col], row=row + 1)


def _label_values(path: str, table: pa.Table, name: str) -> npt.NDArray[np.int64]:
    values = _float_values(path, table, name)
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        raise DataImportError(path, "label is missing", column=name, row=int(missing[0]) + 1)
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        row = int(np.flatnonzero(~whole)[0])
        raise DataImportError(
            path,
            f"label {float(values[row])!r} is not an integer (labels are class numbers 0 .. K-1)",
            column=name,
            row=row + 1,
        )
    negative = np.flatnonzero(values < 0)
    if negative.size:
        row = int(negative[0])
        raise DataImportError(
            path, f"label {int(values[row])} is negative", column=name, row=row + 1
        )
    return values.astype(np.int64)


def _classes(path: str, labels: npt.NDArray[np.int64], options: ImportOptions) -> tuple[str, ...]:
    if not options.classes:
        return tuple(str(i) for i in range(int(labels.max()) + 1))
    if len(set(options.classes)) != len(options.classes):
        raise DataImportError(path, "a class name is given twice")
    over = np.flatnonzero(labels >= len(options.classes))
    if over.size:
        row = int(over[0])
        raise DataImportError(
            path,
            f"label {int(labels[row])} is outside 0 .. {len(options.classes) - 1} "
            f"(--classes names {len(options.classes)})",
            column=options.label,
            row=row + 1,
        )
    return options.classes


def _group_values(path: str, table: pa.Table, name: str) -> npt.NDArray[np.str_]:
    column = table.column(name).combine_chunks()
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataImportError(path, "value is missing", column=name, row=row + 1)
    try:
        strings = pc.cast(column, pa.string()).to_pylist()
    except pa.ArrowException as exc:
        raise DataImportError(path, f"type {column.type} cannot name clients", column=name) from exc
    values = np.array([s.strip() for s in strings], dtype=np.str_)
    distinct = np.unique(values)
    if len(distinct) < 2:
        raise DataImportError(
            path,
            f"has {len(distinct)} distinct value ({_first(list(distinct))}); "
            "partitioning by it needs at least 2",
            column=name,
        )
    return values


def _client_id_for(value: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._")[:100]
    return check_client_id(slug)


def _clients(
    path: str,
    options: ImportOptions,
    labels: npt.NDArray[np.int64],
    groups: npt.NDArray[np.str_] | None,
    train_idx: npt.NDArray[np.int64],
) -> tuple[dict[str, npt.NDArray[np.int64]], dict[str, str] | None]:
    """Client id -> indices into the training rows, and client id -> column value."""
    if groups is None:
        names = client_ids(options.client_names, options.num_clients)
        if options.num_clients > len(labels):
            raise DataImportError(
                path, f"{options.num_clients} clients but only {len(labels)} training rows"
            )
        if options.dirichlet_alpha is None:
            parts = iid_partition(n=len(labels), num_clients=len(names), seed=options.seed)
        else:
            try:
                parts = dirichlet_partition(
                    labels=labels,
                    num_clients=len(names),
                    alpha=options.dirichlet_alpha,
                    seed=options.seed,
                )
            except ValueError as exc:
                raise DataImportError(path, str(exc)) from exc
        return dict(zip(names, parts, strict=True)), None
    column = options.partition_by
    train_groups = groups[train_idx]
    clients: dict[str, npt.NDArray[np.int64]] = {}
    values: dict[str, str] = {}
    for value in sorted(set(groups.tolist())):
        try:
            cid = _client_id_for(value)
        except ValueError as exc:
            raise DataImportError(
                path, f"value {value!r} cannot name a client ({exc})", column=column
            ) from exc
        if cid in values:
            raise DataImportError(
                path,
                f"values {values[cid]!r} and {value!r} both make the client id {cid!r}",
                column=column,
            )
        idx = np.flatnonzero(train_groups == value).astype(np.int64)
        if idx.size == 0:
            raise DataImportError(
                path,
                f"every row of {value!r} went to the test split; lower --test-fraction",
                column=column,
            )
        values[cid] = value
        clients[cid] = idx
    return clients, values


def _partition_kind(options: ImportOptions) -> Literal["column", "iid", "dirichlet"]:
    if options.partition_by is not None:
        return "column"
    return "iid" if options.dirichlet_alpha is None else "dirichlet"


def _take(raw: RawDataset, idx: npt.NDArray[np.int64]) -> RawDataset:
    assert raw.features is not None
    return RawDataset(
        raw.name, raw.classes, raw.labels[idx], raw.features[idx], feature_shape=raw.feature_shape
    )


def _default_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._") or "dataset"


def _first(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(map(str, names[:n]))
    return shown + (f", ... {len(names) - n} more" if len(names) > n else "")
