"""``fedbus train --config job.yaml``: a centralized run with no infrastructure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``train`` command to the top-level subparsers."""
    parser = subparsers.add_parser("train", help="train centrally from a job YAML")
    parser.add_argument("--config", required=True, type=Path, help="job YAML file")
    parser.add_argument("--output", type=Path, default=None, help="override `output` dir")
    parser.set_defaults(handler=train)


def train(args: argparse.Namespace) -> int:
    """Run ``fedbus train``; prints metrics and where the model was written."""
    from fedbus_cli.jobfile import JobFileError, load_job
    from fedbus_executor import ExecutorError

    try:
        job = load_job(args.config)
        return _run(job, args.output)
    except (JobFileError, ExecutorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(job: Any, output: Path | None) -> int:
    import json

    from fedbus_cli.progressbar import TqdmProgress
    from fedbus_executor import TrainingExecutor

    executor = TrainingExecutor()
    with TqdmProgress() as bar:
        result = executor.train(job.task, progress=bar)
    out_dir = output or job.output
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.safetensors").write_bytes(result.weights_bytes())
    summary = _summary(job, result, executor)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    for key, value in summary.items():
        print(f"{key}: {value}")
    print(f"model written to {out_dir / 'model.safetensors'}")
    return 0


def _summary(job: Any, result: Any, executor: Any) -> dict[str, Any]:
    from fedbus_executor import sha256_hex

    m = result.metrics
    summary: dict[str, Any] = {
        "train_loss": round(m.loss, 4),
        "train_accuracy": round(m.accuracy, 4),
        "samples": result.num_samples,
        "epochs": m.epochs,
        "steps": m.steps,
        "duration_s": round(m.duration_s, 2),
        "device": m.device,
        "trainable_fraction": round(result.trainable_fraction, 6),
        "weights_sha256": sha256_hex(result.weights_bytes()),
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    if result.privacy is not None:
        p = result.privacy
        summary |= {
            "epsilon": round(p.epsilon, 4),
            "delta": p.delta,
            "noise_multiplier": round(p.noise_multiplier, 4),
        }
    if job.test is not None:
        ev = executor.evaluate(
            model=job.task.model, weights=result.weights, data=job.test, lora=job.task.lora
        )
        summary |= {"test_loss": round(ev.loss, 4), "test_accuracy": round(ev.accuracy, 4)}
    return summary
