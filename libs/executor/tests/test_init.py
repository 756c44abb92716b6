"""Round-1 initial weights: the same in every process for the same model, seed and spec."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import torch

from fedbus_executor import DatasetSpec, build_model, initial_weights

DIGITS = DatasetSpec(name="digits", feature_shape=(1, 8, 8), classes=tuple("0123456789"))


def _digest(weights: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].tobytes())
    return h.hexdigest()


def test_same_seed_gives_identical_weights_and_another_seed_differs() -> None:
    a = initial_weights("cnn", 7, DIGITS)
    b = initial_weights("cnn", 7, DIGITS)
    c = initial_weights("cnn", 8, DIGITS)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_weights_fit_the_model_and_are_float32() -> None:
    weights = initial_weights("mlp", 3, DIGITS)
    model = build_model("mlp", DIGITS)
    assert set(weights) == set(model.state_dict())
    assert all(w.dtype == np.float32 for w in weights.values())
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})


def test_does_not_disturb_the_callers_random_stream() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    initial_weights("mlp", 5, DIGITS)
    assert torch.equal(torch.rand(3), expected)


def test_another_process_builds_the_same_weights() -> None:
    code = (
        "import hashlib;from fedbus_executor import DatasetSpec, initial_weights;"
        "s=DatasetSpec(name='digits',feature_shape=(1,8,8),classes=tuple('0123456789'));"
        "w=initial_weights('cnn',7,s);h=hashlib.sha256()\n"
        "for n in sorted(w): h.update(n.encode()); h.update(w[n].tobytes())\n"
        "print(h.hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == _digest(initial_weights("cnn", 7, DIGITS))
