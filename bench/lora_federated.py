"""Federated LoRA on the text task, in process: bytes per update and accuracy (prints figures).

Runs the executor directly and averages the trainers' tensors the way the aggregator's
FedAvg does (weighted by examples), without Kafka or MinIO: on a 2-core machine the full
stack would spend its time in start-up, not in what is measured. Compares, on the Debian
package descriptions task (``fedbus data prepare --dataset text``):

- federated LoRA (adapters + head travel) after ``--rounds`` rounds of ``--clients`` clients;
- centralized LoRA (the ``fedbus train`` path) for as many passes over the same data;
- the frozen-encoder baseline (head only), federated and centralized;
- the same with local DP (Opacus DP-SGD on every trainer) at epsilon ``--epsilon``,
  delta 1e-5, the noise multiplier planned for all rounds as orchestration plans it.

Usage: python bench/lora_federated.py [--data DIR] [--rounds 3] [--clients 3] [--max-length 32]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch

from fedbus.privacy import compute_epsilon, noise_multiplier_for
from fedbus_executor import (
    DataRef,
    DPSettings,
    LoRASettings,
    ModelRef,
    PrepareOptions,
    TrainingExecutor,
    TrainingTask,
    prepare_dataset,
    state_dict_to_bytes,
)

DELTA = 1e-5
LORA = LoRASettings(r=8, alpha=16, target_modules=("query", "value"), trainable_modules=("head",))


@dataclass(frozen=True)
class Setup:
    """One compared configuration."""

    name: str
    lora: LoRASettings | None
    freeze: bool
    dp: bool


SETUPS = (
    Setup("LoRA r=8 (query, value) + head", LORA, freeze=False, dp=False),
    Setup("frozen encoder, head only", None, freeze=True, dp=False),
    Setup("LoRA r=8 + head, local DP", LORA, freeze=False, dp=True),
    Setup("frozen encoder, local DP", None, freeze=True, dp=True),
)


def ensure_data(root: Path, clients: int, limit: int | None) -> Path:
    """The text dataset with ``clients`` client files under ``root/text``."""
    folder = root / "text"
    if not (folder / "clients" / f"client-{clients - 1:03d}.parquet").is_file():
        prepare_dataset("text", root, PrepareOptions(num_clients=clients, seed=0, limit=limit))
    return folder


def task(
    args: argparse.Namespace,
    setup: Setup,
    data: Path,
    *,
    seed: int,
    epochs: int,
    initial: bytes | None,
    noise: float | None,
) -> TrainingTask:
    """One local run (a trainer's round, or the whole centralized run)."""
    dp = None
    if noise is not None:
        dp = DPSettings(noise_multiplier=noise, delta=DELTA, max_grad_norm=args.clip)
    return TrainingTask(
        model=ModelRef(
            name="minilm-classifier",
            kwargs={"max_length": args.max_length, "freeze_encoder": setup.freeze},
        ),
        data=DataRef(path=str(data)),
        epochs=epochs,
        batch_size=args.batch_size,
        optimizer="adamw",
        learning_rate=args.lr_dp if noise is not None else args.lr,
        seed=seed,
        device="cpu",
        lora=setup.lora,
        dp=dp,
        initial_weights=initial,
        progress_every=1000,
    )


def fedavg(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    """Example-weighted mean of each floating tensor (others: the first client's)."""
    total = float(sum(weights))
    out = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            out[name] = first
            continue
        out[name] = sum(s[name] * (w / total) for s, w in zip(states, weights, strict=True))
    return out


def planned_noise(args: argparse.Namespace, samples: int, epochs: int) -> tuple[float, float]:
    """Noise multiplier for ``--epsilon`` over all steps at Poisson rate batch/samples."""
    q = min(1.0, args.batch_size / samples)
    steps = epochs * -(-samples // args.batch_size)
    sigma = noise_multiplier_for(
        target_epsilon=args.epsilon, delta=DELTA, sample_rate=q, steps=steps
    )
    eps = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    return sigma, eps


def federated(args: argparse.Namespace, setup: Setup, folder: Path) -> dict[str, float]:
    """``--rounds`` rounds of FedAvg over the client files; accuracy and bytes per update."""
    ex = TrainingExecutor()
    files = [folder / "clients" / f"client-{i:03d}.parquet" for i in range(args.clients)]
    noise, eps = None, 0.0
    if setup.dp:
        # Every client holds the same number of rows here (iid split): one plan fits all.
        samples = pq.read_metadata(files[0]).num_rows
        noise, eps = planned_noise(args, samples, args.rounds)
    global_bytes: bytes | None = None
    update_bytes = 0
    for rnd in range(1, args.rounds + 1):
        states, counts = [], []
        for i, path in enumerate(files):
            t = task(args, setup, path, seed=1000 * rnd + i, epochs=1, initial=global_bytes,
                     noise=noise)  # fmt: skip
            result = ex.train(t)
            update_bytes = len(result.delta_bytes())
            states.append(result.weights)
            counts.append(result.num_samples)
        global_bytes = state_dict_to_bytes(fedavg(states, counts))
    assert global_bytes is not None
    acc = evaluate(ex, args, setup, folder, global_bytes)
    return {"accuracy": acc, "update_bytes": update_bytes, "epsilon": eps,
            "noise": noise or 0.0}  # fmt: skip


def centralized(args: argparse.Namespace, setup: Setup, folder: Path) -> dict[str, float]:
    """One run on the whole training set, ``--rounds`` epochs (the same passes over the data)."""
    ex = TrainingExecutor()
    path = folder / "train.parquet"
    noise, eps = None, 0.0
    if setup.dp:
        noise, eps = planned_noise(args, pq.read_metadata(path).num_rows, args.rounds)
    result = ex.train(task(args, setup, path, seed=7, epochs=args.rounds, initial=None,
                           noise=noise))  # fmt: skip
    acc = evaluate(ex, args, setup, folder, state_dict_to_bytes(result.weights))
    return {"accuracy": acc, "update_bytes": len(result.delta_bytes()), "epsilon": eps,
            "noise": noise or 0.0}  # fmt: skip


def evaluate(
    ex: TrainingExecutor, args: argparse.Namespace, setup: Setup, folder: Path, weights: bytes
) -> float:
    """Held-out accuracy of ``weights`` (adapters + head with LoRA, else the full model)."""
    model = ModelRef(
        name="minilm-classifier",
        kwargs={"max_length": args.max_length, "freeze_encoder": setup.freeze},
    )
    data = DataRef(path=str(folder / "test.parquet"))
    return ex.evaluate(model=model, weights=weights, data=data, lora=setup.lora).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--lr-dp", type=float, default=0.002)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--limit", type=int, default=None, help="training examples kept")
    parser.add_argument("--only", choices=["plain", "dp"], default=None)
    parser.add_argument("--skip-central-frozen", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    folder = ensure_data(args.data, args.clients, args.limit)
    train = pq.read_metadata(folder / "train.parquet").num_rows
    test = pq.read_metadata(folder / "test.parquet").num_rows
    print(f"text task ({train} training, {test} held-out descriptions), {args.clients} clients, "
          f"{args.rounds} rounds x 1 local epoch, "
          f"max_length {args.max_length}, batch {args.batch_size}, AdamW; torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for setup in SETUPS:
        if args.only is not None and setup.dp != (args.only == "dp"):
            continue
        for how, run in (("federated", federated), ("centralized", centralized)):
            if how == "centralized" and setup.freeze and args.skip_central_frozen:
                continue
            start = time.perf_counter()
            r = run(args, setup, folder)
            line = (f"{setup.name:32s} {how:11s} accuracy {r['accuracy']:.3f}  "
                    f"update {r['update_bytes']:>10,d} B")  # fmt: skip
            if setup.dp:
                line += f"  sigma {r['noise']:.3f} epsilon {r['epsilon']:.2f} (delta {DELTA:g})"
            print(f"{line}  {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
