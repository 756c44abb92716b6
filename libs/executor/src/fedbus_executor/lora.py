"""LoRA adapters through PEFT: only adapters (and named head modules) train."""

from __future__ import annotations

import logging

from peft import LoraConfig, get_peft_model
from torch import nn

from fedbus_executor.errors import ModelError
from fedbus_executor.task import LoRASettings
from fedbus_executor.training import count_parameters

__all__ = ["apply_lora", "count_parameters"]

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
    for name in settings.trainable_modules:
        module = _find(peft_model, name)
        module.requires_grad_(True)
    trainable, total = count_parameters(peft_model)
    logger.info(
        "LoRA: %s of %s parameters trainable (%.3f%%)",
        trainable,
        total,
        100.0 * trainable / max(1, total),
    )
    return peft_model


def _find(model: nn.Module, name: str) -> nn.Module:
    for full, module in model.named_modules():
        if full == name or full.endswith("." + name):
            found: nn.Module = module
            return found
    raise ModelError(f"trainable module {name!r} not found in the model")
