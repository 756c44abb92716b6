"""Executor overhead vs a bare PyTorch loop, and DP-SGD epoch time vs non-DP.

Usage: python bench/executor_speed.py [--data DIR] [--repeats N]
Overhead: same model (small CNN), data (MNIST-5k train split), batch size and optimizer.
DP-SGD: steady-state epoch time (epochs 2-4 of a 4-epoch run, so set-up and the final
epsilon computation are not counted) with and without DP, at batch 240 (Opacus's MNIST
example: sample rate 0.004 of 60,000 images, where it reports 22 s vs 14 s per epoch on
CPU, 1.6x) and 64; for fedbus's CNN and for the example's own CNN (SampleConvNet).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from fedbus_executor import (
    DataRef,
    DPSettings,
    ModelRef,
    PrepareOptions,
    ProgressEvent,
    TrainingExecutor,
    TrainingTask,
    build_model,
    load_dataset,
    load_spec,
    prepare_dataset,
)
from fedbus_executor.models import register_model

BATCH = 64
LR = 0.05


def bare_loop(train: Path, seed: int) -> float:
    """Seconds for one epoch of a plain PyTorch loop, data loading included."""
    start = time.perf_counter()
    spec = load_spec(train.parent / "manifest.json")
    data = load_dataset(train, spec)
    assert data.features is not None
    torch.manual_seed(seed)
    model = build_model("cnn", spec)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    ds = TensorDataset(torch.from_numpy(data.features.copy()), torch.from_numpy(data.labels))
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True)
    model.train()
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def executor_epoch(train: Path, seed: int) -> float:
    """Seconds for one epoch through the executor (setup and data validation included)."""
    task = TrainingTask(
        model=ModelRef(name="cnn"),
        data=DataRef(path=str(train)),
        epochs=1,
        batch_size=BATCH,
        learning_rate=LR,
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    TrainingExecutor().train(task)
    return time.perf_counter() - start


class SampleConvNet(nn.Module):
    """The CNN of Opacus's MNIST example (examples/mnist.py), for the reference figure."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.max_pool2d(functional.relu(self.conv1(x)), 2, 1)
        x = functional.max_pool2d(functional.relu(self.conv2(x)), 2, 1)
        return self.fc2(functional.relu(self.fc1(x.flatten(1))))  # type: ignore[no-any-return]


register_model("opacus-example-cnn")(lambda spec: SampleConvNet())


def steady_epoch(train: Path, model: str, batch: int, dp: DPSettings | None) -> float:
    """Median seconds per epoch over epochs 2-4 of a 4-epoch executor run."""
    ends: list[float] = []

    def on_progress(event: ProgressEvent) -> None:
        if event.phase == "train" and event.details.get("step") == event.details.get("total"):
            ends.append(time.perf_counter())

    task = TrainingTask(
        model=ModelRef(name=model),
        data=DataRef(path=str(train)),
        epochs=4,
        batch_size=batch,
        learning_rate=LR,
        seed=0,
        device="cpu",
        dp=dp,
    )
    TrainingExecutor().train(task, progress=on_progress)
    return statistics.median(b - a for a, b in itertools.pairwise(ends))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    if not (args.data / "mnist" / "manifest.json").is_file():
        prepare_dataset("mnist", args.data, PrepareOptions(seed=0))
    train = args.data / "mnist" / "train.parquet"
    bare, ex = [], []
    for seed in range(args.repeats):  # interleaved so drifts in machine load hit both
        bare.append(bare_loop(train, seed))
        ex.append(executor_epoch(train, seed))
    b, e = min(bare), min(ex)
    print(f"threads={torch.get_num_threads()} samples=4000 batch={BATCH} repeats={args.repeats}")
    print(f"bare_pytorch_epoch_s={b:.2f} executor_epoch_s={e:.2f}")
    print(f"executor_overhead={100 * (e - b) / b:.1f}% (goal <= 5%)")
    noise = DPSettings(noise_multiplier=1.0)
    for model in ("cnn", "opacus-example-cnn"):
        for batch in (240, 64):
            plain, private = [], []
            for _ in range(args.repeats):
                plain.append(steady_epoch(train, model, batch, None))
                private.append(steady_epoch(train, model, batch, noise))
            n, d = min(plain), min(private)
            print(
                f"model={model} batch={batch} epoch_s={n:.3f} dp_epoch_s={d:.3f} "
                f"dp_vs_nondp={d / n:.2f}x (goal <= 1.6x)"
            )


if __name__ == "__main__":
    main()
