"""Executor overhead vs a bare PyTorch loop, and DP-SGD epoch time vs non-DP.

Usage: python bench/executor_speed.py [--data DIR] [--repeats N]
Same model (small CNN), data (MNIST-5k train split), batch size and optimizer throughout.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedbus_executor import (
    DataRef,
    DPSettings,
    ModelRef,
    PrepareOptions,
    TrainingExecutor,
    TrainingTask,
    build_model,
    load_dataset,
    load_spec,
    prepare_dataset,
)

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


def executor_epoch(train: Path, seed: int, dp: DPSettings | None) -> float:
    """Seconds for one epoch through the executor (setup and data validation included)."""
    task = TrainingTask(
        model=ModelRef(name="cnn"),
        data=DataRef(path=str(train)),
        epochs=1,
        batch_size=BATCH,
        learning_rate=LR,
        seed=seed,
        device="cpu",
        dp=dp,
    )
    start = time.perf_counter()
    TrainingExecutor().train(task)
    return time.perf_counter() - start


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
    bare, ex, dp = [], [], []
    for seed in range(args.repeats):  # interleaved so drifts in machine load hit all three
        bare.append(bare_loop(train, seed))
        ex.append(executor_epoch(train, seed, None))
        dp.append(executor_epoch(train, seed, DPSettings(noise_multiplier=1.0)))
    b, e, d = min(bare), min(ex), min(dp)
    print(f"threads={torch.get_num_threads()} samples=4000 batch={BATCH} repeats={args.repeats}")
    print(f"bare_pytorch_epoch_s={b:.2f} executor_epoch_s={e:.2f} dp_executor_epoch_s={d:.2f}")
    print(f"executor_overhead={100 * (e - b) / b:.1f}% (goal <= 5%)")
    print(f"dp_vs_nondp={d / e:.2f}x (goal <= 1.6x)")


if __name__ == "__main__":
    main()
