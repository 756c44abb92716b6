"""The optimizer and learning-rate schedule a task names (JobSpec.training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fedbus_executor import DataRef, ModelError, ModelRef, TrainingExecutor, TrainingTask
from fedbus_executor.training import lr_factor, make_optimizer, make_scheduler

MODEL = torch.nn.Linear(4, 2)


def _task(**fields: object) -> TrainingTask:
    base = TrainingTask(model=ModelRef(name="mlp"), data=DataRef(path="x.parquet"))
    return base.model_copy(update=fields)


def test_the_default_is_plain_sgd_without_a_schedule() -> None:
    task = _task()
    optimizer = make_optimizer(task, MODEL)

    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.01, 0.0, False, 0.0,
    )  # fmt: skip
    assert make_scheduler(task, optimizer, steps_per_epoch=10) is None


def test_sgd_takes_momentum_nesterov_and_weight_decay() -> None:
    group = make_optimizer(
        _task(momentum=0.9, nesterov=True, weight_decay=5e-4), MODEL
    ).param_groups[0]

    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    with pytest.raises(ModelError, match="nesterov needs"):
        make_optimizer(_task(nesterov=True), MODEL)


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_adam_and_adamw(name: str, cls: type[torch.optim.Optimizer]) -> None:
    optimizer = make_optimizer(_task(optimizer=name, weight_decay=0.01), MODEL)

    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_step_schedule_decays_every_n_epochs() -> None:
    task = _task(learning_rate=0.1, epochs=5, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5)
    optimizer = make_optimizer(task, MODEL)
    scheduler = make_scheduler(task, optimizer, steps_per_epoch=3)
    assert scheduler is not None

    rates = []
    for _ in range(15):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    assert rates == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 3)


def test_cosine_schedule_anneals_to_lr_min_like_pytorchs() -> None:
    task = _task(learning_rate=0.1, epochs=2, lr_schedule="cosine", lr_min=0.01)
    ours = make_optimizer(task, MODEL)
    scheduler = make_scheduler(task, ours, steps_per_epoch=5)
    theirs = torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=10, eta_min=0.01)
    assert scheduler is not None

    for _ in range(10):
        ours.step()
        scheduler.step()
        theirs.step()
        reference.step()
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"])
    assert ours.param_groups[0]["lr"] == pytest.approx(0.01)
    assert lr_factor(task, 5, 5) == pytest.approx(
        (0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi / 2))) / 0.1
    )


def test_a_run_with_nesterov_and_a_schedule_trains(digits_root: Path) -> None:
    executor = TrainingExecutor()
    base = TrainingTask(
        model=ModelRef(name="mlp", kwargs={"hidden": [32]}),
        data=DataRef(path=str(digits_root / "train.parquet")),
        epochs=2,
        batch_size=64,
        learning_rate=0.1,
        seed=3,
        device="cpu",
    )
    tuned = base.model_copy(
        update={"momentum": 0.9, "nesterov": True, "lr_schedule": "cosine", "weight_decay": 1e-4}
    )

    plain, better = executor.train(base), executor.train(tuned)

    assert better.metrics.loss < plain.metrics.loss
    assert base.fingerprint() != tuned.fingerprint()
