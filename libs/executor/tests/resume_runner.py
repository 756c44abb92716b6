"""Child process for the kill -9 resume test (not a test module).

Usage: resume_runner.py DATA CHECKPOINT_DIR [STALL_MARKER]
With STALL_MARKER, the run stalls in the middle of epoch 2 after creating the marker,
waiting to be killed. Prints the result as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from fedbus_executor import (
    CheckpointSettings,
    DataRef,
    DPSettings,
    ModelRef,
    ProgressEvent,
    TrainingExecutor,
    TrainingTask,
    sha256_hex,
)


def run(data: str, ckpt: str, marker: Path | None = None) -> dict[str, object]:
    """Train the fixed task; with ``marker``, stall mid-epoch 2 after touching it."""

    def progress(event: ProgressEvent) -> None:
        if marker is not None and event.phase == "train" and event.details["epoch"] == 2:
            marker.touch()
            time.sleep(600)

    task = TrainingTask(
        model=ModelRef(name="cnn", kwargs={"channels": 8}),
        data=DataRef(path=data),
        epochs=3,
        batch_size=64,
        optimizer="adam",
        learning_rate=1e-3,
        seed=5,
        device="cpu",
        progress_every=5,
        dp=DPSettings(noise_multiplier=1.0),
        checkpoint=CheckpointSettings(directory=ckpt, encrypt=True),
    )
    # DP noise is secret on every run; the test injects a seeded generator so that the
    # uninterrupted and the resumed run can be compared bit for bit.
    executor = TrainingExecutor(dp_generator=lambda: torch.Generator().manual_seed(5))
    result = executor.train(task, progress=progress)
    privacy = result.privacy
    return {
        "sha256": sha256_hex(result.weights_bytes()),
        "loss": result.metrics.loss,
        "accuracy": result.metrics.accuracy,
        "epsilon": None if privacy is None else privacy.epsilon,
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def main() -> None:
    torch.set_num_threads(1)
    marker = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(run(sys.argv[1], sys.argv[2], marker)))


if __name__ == "__main__":
    main()
