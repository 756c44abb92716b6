"""Orchestration's default model list is exactly what the executor can build, and the docs say so.

Orchestration stays free of torch, so it mirrors the executor's model names as a literal
(``DEFAULT_KNOWN_MODELS``); this test, which may import both, keeps the two equal.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedbus_orchestration.settings import DEFAULT_KNOWN_MODELS, OrchestrationSettings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the executor's registry imports torch and transformers


def _buildable() -> set[str]:
    """The models ``fedbus-executor`` itself provides (its entry points; other installed
    plugin packages, such as examples/plugins, are accepted through ``FEDBUS_KNOWN_MODELS``)."""
    from fedbus_executor import available_models, get_model_entry

    return {m for m in available_models() if get_model_entry(m).distribution == "fedbus-executor"}


def test_every_default_model_is_one_the_executor_builds() -> None:
    unbuildable = set(DEFAULT_KNOWN_MODELS) - _buildable()

    assert unbuildable == set(), f"orchestration accepts models no trainer builds: {unbuildable}"


def test_every_model_the_executor_builds_is_accepted_by_default() -> None:
    refused = _buildable() - set(DEFAULT_KNOWN_MODELS)

    assert refused == set(), f"orchestration refuses models the executor builds: {refused}"


def test_the_settings_default_is_the_mirrored_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDBUS_KNOWN_MODELS", raising=False)

    settings = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.known_models == list(DEFAULT_KNOWN_MODELS)


def test_docs_state_the_default_model_list() -> None:
    text = (REPO / "docs" / "services.md").read_text(encoding="utf-8")

    (stated,) = re.findall(r"`FEDBUS_KNOWN_MODELS`, default `([^`]*)`", text)

    assert sorted(stated.split(",")) == sorted(DEFAULT_KNOWN_MODELS)
