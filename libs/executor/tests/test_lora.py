"""LoRA on MiniLM: few trainable parameters, only adapters and head returned, DP combines."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus_executor import (
    DataRef,
    DatasetSpec,
    DPSettings,
    LoRASettings,
    ModelRef,
    TrainingExecutor,
    TrainingTask,
)


@pytest.fixture
def lora_task(text_file: tuple[Path, DatasetSpec]) -> TrainingTask:
    path, spec = text_file
    return TrainingTask(
        model=ModelRef(name="minilm-classifier", kwargs={"max_length": 8}),
        data=DataRef(path=str(path), spec=spec),
        epochs=1,
        batch_size=8,
        optimizer="adamw",
        learning_rate=1e-3,
        device="cpu",
        lora=LoRASettings(r=4, alpha=8, target_modules=("query", "value")),
    )


def test_only_adapters_and_head_train_and_return(lora_task: TrainingTask) -> None:
    result = TrainingExecutor().train(lora_task)

    assert result.trainable_fraction < 0.01
    names = set(result.weights)
    assert names
    assert all("lora_" in n or ".head." in n for n in names)
    assert any("lora_A" in n for n in names)
    assert any(n.endswith("head.weight") for n in names)
    # 6 layers x (query, value) x (A: r x 384, B: 384 x r) + head (2 x 384 + 2)
    assert sum(t.numel() for t in result.weights.values()) == 6 * 2 * 2 * 4 * 384 + 770
    assert result.delta.keys() == result.weights.keys()


def test_adapter_weights_load_back_for_evaluation(lora_task: TrainingTask) -> None:
    ex = TrainingExecutor()
    result = ex.train(lora_task)
    ev = ex.evaluate(
        model=lora_task.model,
        weights=result.weights_bytes(),
        data=lora_task.data,
        lora=lora_task.lora,
    )
    assert ev.num_samples == 24
    assert 0.0 <= ev.accuracy <= 1.0


def test_lora_with_dp_reports_privacy(lora_task: TrainingTask) -> None:
    task = lora_task.model_copy(update={"dp": DPSettings(noise_multiplier=1.0)})
    result = TrainingExecutor().train(task)
    assert result.privacy is not None
    assert result.privacy.epsilon > 0
    assert all("lora_" in n or ".head." in n for n in result.weights)
