"""Accuracy runs of the executor on real data (CPU is fine; takes minutes).

Usage: python bench/executor_accuracy.py {fashion,mnist,mnist-dp,lora} [--data DIR]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

from fedbus_executor import (
    DataRef,
    DPSettings,
    LoRASettings,
    ModelRef,
    PrepareOptions,
    ProgressEvent,
    TrainingExecutor,
    TrainingTask,
    prepare_dataset,
)

DATASETS = {
    "fashion": "fashion-mnist",
    "mnist": "mnist",
    "mnist-dp": "mnist",
    "lora": "text",
    "frozen": "text",
}


def ensure_data(name: str, root: Path) -> Path:
    if not (root / name / "manifest.json").is_file():
        prepare_dataset(name, root, PrepareOptions(num_clients=4, seed=0))
    return root / name


def task_for(exp: str, data: Path, epochs: int | None) -> TrainingTask:
    ref = DataRef(path=str(data / "train.parquet"))
    if exp in ("fashion", "mnist"):
        return TrainingTask(
            model=ModelRef(name="cnn"),
            data=ref,
            epochs=epochs or 5,
            batch_size=64,
            optimizer="adam",
            learning_rate=1e-3,
            seed=0,
        )
    if exp == "mnist-dp":
        return TrainingTask(
            model=ModelRef(name="cnn", kwargs={"channels": 16}),
            data=ref,
            epochs=epochs or 15,
            batch_size=256,
            optimizer="sgd",
            learning_rate=2.0,
            momentum=0.0,
            seed=0,
            dp=DPSettings(target_epsilon=3.0, delta=1e-5, max_grad_norm=1.0),
        )
    text = ModelRef(
        name="minilm-classifier", kwargs={"max_length": 32, "freeze_encoder": exp == "frozen"}
    )
    lora = LoRASettings(r=8, alpha=16) if exp == "lora" else None
    return TrainingTask(
        model=text,
        data=ref,
        epochs=epochs or 3,
        batch_size=32,
        optimizer="adamw",
        learning_rate=2e-3 if exp == "lora" else 5e-3,
        seed=0,
        lora=lora,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("experiment", choices=sorted(DATASETS))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    data = ensure_data(DATASETS[args.experiment], args.data)
    task = task_for(args.experiment, data, args.epochs)

    def progress(event: ProgressEvent) -> None:
        if event.phase == "epoch_end":
            print(
                f"  {event.message}: loss={event.details['loss']:.4f} "
                f"train_acc={event.details['accuracy']:.4f}",
                flush=True,
            )

    executor = TrainingExecutor()
    started = time.perf_counter()
    result = executor.train(task, progress=progress)
    test = executor.evaluate(
        model=task.model,
        weights=result.weights,
        data=DataRef(path=str(data / "test.parquet")),
        lora=task.lora,
    )
    print(
        f"experiment={args.experiment} train_samples={result.num_samples} "
        f"epochs={task.epochs} test_samples={test.num_samples}"
    )
    print(
        f"test_accuracy={test.accuracy:.4f} test_loss={test.loss:.4f} "
        f"train_seconds={time.perf_counter() - started:.1f} device={result.metrics.device}"
    )
    print(
        f"trainable_parameters={result.trainable_parameters} "
        f"total_parameters={result.total_parameters} "
        f"trainable_fraction={result.trainable_fraction:.5f}"
    )
    if result.privacy is not None:
        p = result.privacy
        print(
            f"dp: epsilon={p.epsilon:.3f} delta={p.delta} noise_multiplier="
            f"{p.noise_multiplier:.4f} sample_rate={p.sample_rate:.5f} steps={p.steps}"
        )


if __name__ == "__main__":
    main()
