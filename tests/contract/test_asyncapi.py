"""docs/asyncapi.yaml: the event API as an AsyncAPI 3.0 document, fresh and valid.

Validated against the AsyncAPI 3.0.0 JSON Schema (vendored from ``@asyncapi/specs``, see
``vendor/README.md``) with ``jsonschema-rs``; every topic of the catalog is a channel, every
producer and consumer an operation, every event's payload its current Avro schema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from fedbus.events import event_types, load_topics
from fedbus.events.asyncapi import default_output, main, render
from fedbus.events.schemas import event_schema_path, load_json

pytestmark = pytest.mark.contract

SPEC = Path(__file__).parent / "vendor" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SPEC.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(default_output().read_text(encoding="utf-8"))
    return loaded


def test_committed_document_is_fresh(tmp_path: Path) -> None:
    assert default_output().read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.yaml is stale: python -m fedbus.events.asyncapi"
    )
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(render() + "# hand edit\n", encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1


def test_document_is_valid_asyncapi_3(validator: Any, doc: dict[str, Any]) -> None:
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(doc)]

    assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("operations", "gateway.send.job.requested", "action"), "publish"),
        (("channels", "job.requested", "address"), 42),
        (("asyncapi",), "2.6.0"),
    ],
    ids=["action-of-asyncapi-2", "address-not-a-string", "other-version"],
)
def test_the_validator_refuses_a_broken_document(
    validator: Any, doc: dict[str, Any], path: tuple[str, ...], value: object
) -> None:
    broken = copy.deepcopy(doc)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    assert list(validator.iter_errors(broken))


def test_every_topic_party_and_event_is_in_the_document(doc: dict[str, Any]) -> None:
    catalog = load_topics()

    assert {c["address"].split(".{")[0] for c in doc["channels"].values()} == {
        t.name for t in catalog.topics
    }
    for topic in catalog.topics:
        for party in topic.producers:
            assert doc["operations"][f"{party}.send.{topic.name}"]["action"] == "send"
        for party in topic.consumers:
            assert doc["operations"][f"{party}.receive.{topic.name}"]["action"] == "receive"
    for event_type in event_types():
        payload = doc["components"]["messages"][event_type]["payload"]
        assert payload["schema"] == load_json(event_schema_path(event_type))
