"""LoRA adapters through PEFT: only adapters (and named head modules) train."""

from __future__ import annotations

import logging

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from fedbus_executor.errors import ModelError
from fedbus_executor.task import LoRASettings
from fedbus_executor.training import count_parameters, load_weights
from fedbus_executor.weights import StateDict

__all__ = ["apply_lora", "base_state", "count_parameters", "merge_lora"]

logger = logging.getLogger(__name__)


def apply_lora(model: nn.Module, settings: LoRASettings) -> nn.Module:
    """Wrap ``model`` with LoRA on ``settings.target_modules``; unfreeze the head modules.

    Raises
    ------
    ModelError
        When a target or trainable module is not in the model.
    """
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    try:
        peft_model: nn.Module = get_peft_model(model, config)
    except ValueError as exc:
        raise ModelError(f"cannot apply LoRA: {exc}") from exc
    modules = dict(peft_model.named_modules())
    for name in settings.trainable_modules:
        modules[_resolve(peft_model, name)].requires_grad_(True)
    trainable, total = count_parameters(peft_model)
    logger.info(
        "LoRA: %s of %s parameters trainable (%.3f%%)",
        trainable,
        total,
        100.0 * trainable / max(1, total),
    )
    return peft_model


def _resolve(model: nn.Module, name: str) -> str:
    """The full name of the first module of ``model`` that is ``name`` or ends in ``.name``.

    Only that module is trained: another module with the same last name stays frozen
    and part of the base.
    """
    full: str
    for full, _ in model.named_modules():
        if full == name or full.endswith("." + name):
            return full
    raise ModelError(f"trainable module {name!r} not found in the model")


def base_state(model: nn.Module, settings: LoRASettings) -> StateDict:
    """The frozen base weights of ``model`` (before LoRA): its state less the trainable modules.

    The trainable modules (the head) travel with the adapters, so they are not part of the
    base; what is left is what the adapters apply to, and what its SHA-256 names. Each
    trainable name resolves to one module as in :func:`apply_lora` (the first whose path
    ends in it), and only the tensors under that module's full name are left out.

    Raises
    ------
    ModelError
        When a trainable module is not in the model.
    """
    heads = tuple(_resolve(model, name) + "." for name in settings.trainable_modules)
    return {
        name: tensor.detach().cpu()
        for name, tensor in model.state_dict().items()
        if not name.startswith(heads)
    }


def merge_lora(peft_model: nn.Module, adapters: StateDict) -> StateDict:
    """Load ``adapters`` (adapters + head) into ``peft_model`` and merge them into full weights.

    Returns the plain model's state dict (its own parameter names), as if it had been
    trained in full: PEFT's ``merge_and_unload`` folds ``B @ A * alpha / r`` into each
    adapted weight.

    Raises
    ------
    ModelError
        When ``peft_model`` has no adapters, or ``adapters`` lack one of its trainable
        tensors (an adapter or a head tensor) or do not fit it.
    """
    if not isinstance(peft_model, PeftModel):
        raise ModelError("merging needs a model with LoRA adapters applied")
    expected = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    missing = sorted(expected - set(adapters))
    if missing:
        raise ModelError(
            f"adapters lack {len(missing)} of the model's trainable tensors, refusing to merge: "
            f"{missing[:5]}"
        )
    load_weights(peft_model, adapters, partial=True)
    merged: nn.Module = peft_model.merge_and_unload()
    return {name: tensor.detach().cpu().clone() for name, tensor in merged.state_dict().items()}
