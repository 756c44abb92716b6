"""LoRA on MiniLM: few trainable parameters, only adapters and head returned, DP combines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedbus.events import LoraSpec
from fedbus_executor import (
    DataRef,
    DatasetSpec,
    DPSettings,
    LoRASettings,
    ModelError,
    ModelRef,
    TrainingExecutor,
    TrainingTask,
    base_weights_sha256,
    build_model,
    initial_weights,
    lora_settings,
    merged_weights,
    seeded_model,
)
from fedbus_executor.lora import apply_lora, base_state, merge_lora


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


LORA = LoRASettings(r=4, alpha=8, target_modules=("query", "value"))


def test_initial_lora_weights_are_adapters_and_head_and_repeatable(
    text_file: tuple[Path, DatasetSpec],
) -> None:
    _, spec = text_file

    first = initial_weights("minilm-classifier", 3, spec, lora=LORA, max_length=8)
    again = initial_weights("minilm-classifier", 3, spec, lora=LORA, max_length=8)

    assert first.keys() == again.keys()
    assert all("lora_" in n or ".head." in n for n in first)
    assert all(np.array_equal(first[n], again[n]) for n in first)


def test_base_hash_leaves_the_head_out_and_ignores_the_seed(
    text_file: tuple[Path, DatasetSpec],
) -> None:
    _, spec = text_file

    one = base_weights_sha256("minilm-classifier", 1, spec, lora=LORA)
    two = base_weights_sha256("minilm-classifier", 2, spec, lora=LORA)
    base, _ = seeded_model("minilm-classifier", 1, spec, lora=LORA)

    assert one == two  # the pretrained encoder; the seeded head is not part of the base
    assert len(one) == 64
    assert not any(name.startswith("head.") for name in base)


def test_merged_weights_predict_as_base_plus_adapters(
    lora_task: TrainingTask, text_file: tuple[Path, DatasetSpec]
) -> None:
    _, spec = text_file
    task = lora_task.model_copy(update={"lora": LORA, "seed": 5})
    adapters = TrainingExecutor().train(task).weights
    sha = base_weights_sha256("minilm-classifier", 5, spec, lora=LORA)

    merged = merged_weights("minilm-classifier", 5, spec, adapters, lora=LORA, base_sha256=sha)
    plain = build_model("minilm-classifier", spec, max_length=8)
    plain.load_state_dict(merged, strict=True)
    _, adapted = seeded_model("minilm-classifier", 5, spec, lora=LORA)
    adapted.load_state_dict(adapters, strict=False)
    ids = torch.randint(0, 1000, (4, 8))
    mask = torch.ones_like(ids)
    plain.eval()
    adapted.eval()

    with torch.no_grad():
        assert torch.allclose(plain(ids, mask), adapted(ids, mask), atol=1e-4)
    assert set(merged) == set(plain.state_dict())
    assert not any("lora_" in name for name in merged)
    with pytest.raises(ModelError, match="refusing to merge"):
        merged_weights("minilm-classifier", 5, spec, adapters, lora=LORA, base_sha256="0" * 64)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(4, 4)
        self.value = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


def test_merge_refuses_adapters_that_lack_a_trainable_tensor() -> None:
    settings = LoRASettings(r=2, alpha=4, target_modules=("query", "value"))
    model = apply_lora(_Tiny(), settings)
    full = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    dropped = [n for n in full if "value.lora_B" in n or ".head." in n]
    partial = {n: t for n, t in full.items() if n not in dropped}

    assert len(dropped) == 3  # value's lora_B, the head's weight and bias
    with pytest.raises(ModelError, match="lack 3 of the model's trainable tensors"):
        merge_lora(model, partial)
    with pytest.raises(ModelError, match="refusing to merge"):
        merge_lora(apply_lora(_Tiny(), settings), {})
    assert set(merge_lora(apply_lora(_Tiny(), settings), full)) == set(_Tiny().state_dict())


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(4, 4)
        self.dense = nn.Linear(4, 4)


class _TwoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = _Block()
        self.b = _Block()
        self.head = nn.Linear(4, 2)


def test_a_trainable_name_two_modules_share_trains_one_and_the_other_stays_in_the_base() -> None:
    settings = LoRASettings(r=2, alpha=4, target_modules=("query",), trainable_modules=("dense",))
    model = _TwoBlocks()

    base = base_state(model, settings)
    trainable = {n for n, p in apply_lora(model, settings).named_parameters() if p.requires_grad}

    assert "a.dense.weight" not in base  # trained and sent
    assert any(n.endswith("a.dense.weight") for n in trainable)
    assert {"b.dense.weight", "b.dense.bias", "head.weight"} <= set(base)  # frozen: in the base
    assert not any(".b.dense." in n for n in trainable)
    with pytest.raises(ModelError, match="'classifier' not found"):
        base_state(_TwoBlocks(), settings.model_copy(update={"trainable_modules": ("classifier",)}))


def test_lora_settings_come_from_the_events_lora_field_for_field() -> None:
    spec = LoraSpec(r=4, alpha=8, dropout=0.1, target_modules=["query"], trainable_modules=["cls"])

    assert lora_settings(spec) == LoRASettings(
        r=4, alpha=8, dropout=0.1, target_modules=("query",), trainable_modules=("cls",)
    )
    assert lora_settings(None) is None
