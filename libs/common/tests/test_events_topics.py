"""The topic catalog loader validates what it reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fedbus.events import load_topics

TOPIC = """
  - name: {name}
    description: d
    event_types: [{name}]
    key: job_id
    partitions: 3
    config: {{cleanup.policy: delete, retention.ms: "-1"}}
    producers: [orchestration]
    consumers: [gateway]
"""


def _write(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text("version: 1\ntopics:" + "".join(TOPIC.format(name=n) for n in names))
    return path


def test_catalog_loads_and_finds_topics(tmp_path: Path) -> None:
    catalog = load_topics(_write(tmp_path, "progress", "progress.dlq"))

    assert catalog.get("progress").kafka_config() == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
    }
    assert catalog.dead_letter_topic("progress").name == "progress.dlq"


def test_duplicate_topics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="declared twice"):
        load_topics(_write(tmp_path, "progress", "progress"))


def test_the_repository_catalog_loads() -> None:
    assert load_topics().get("job.requested").key == "job_id"
