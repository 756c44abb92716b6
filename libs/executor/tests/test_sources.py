"""Raw data sources: missing packages are explained; Debian control files parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus_executor import DatasetError
from fedbus_executor.sources import _parse_control, load_digits, load_fashion_mnist

STATUS = """Package: 0ad
Section: games
Description: Real-time strategy game of ancient warfare
 long text that is not the short description

Package: fonts-dejavu
Section: contrib/fonts
Description: Vera font family derivate with additional characters

Package: no-section
Description: nothing to label
"""


def test_missing_fashion_mnist_says_which_apt_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_control_stanzas_give_section_and_short_description() -> None:
    assert list(_parse_control(STATUS)) == [
        ("games", "Real-time strategy game of ancient warfare"),
        ("fonts", "Vera font family derivate with additional characters"),
    ]


def test_digits_are_scaled_images_with_ten_classes() -> None:
    raw = load_digits()
    assert raw.features is not None
    assert raw.features.shape == (1797, 1, 8, 8)
    assert 0.0 <= float(raw.features.min()) <= float(raw.features.max()) <= 1.0
    assert sorted(set(raw.labels.tolist())) == list(range(10))
