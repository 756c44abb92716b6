"""Generate ``docs/asyncapi.yaml``, the AsyncAPI 3.0 document of fedbus's event API.

It is written from the same sources as ``docs/events.md``: the topic catalog
(``schemas/topics.yaml``) gives the channels (a topic family is one channel with an address
parameter, every topic's dead-letter topic its own channel) and who sends and receives on each
(the operations); the Avro schemas are the messages' payloads (``schemaFormat`` Avro 1.9.0),
with the examples of ``schemas/examples``. Run ``python -m fedbus.events.asyncapi`` to rewrite
it, or with ``--check`` to exit with status 1 when the committed document is stale.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fedbus.events.docgen import write_or_check
from fedbus.events.registry import event_types
from fedbus.events.schemas import event_schema_path, load_json, schema_dir
from fedbus.events.topics import TopicSpec, load_topics

__all__ = ["default_output", "document", "main", "render"]

ASYNCAPI_VERSION = "3.0.0"
AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
KAFKA_BINDING = "0.5.0"

HEADERS: dict[str, Any] = {
    "type": "object",
    "description": (
        "Kafka record headers (bytes). `content-type` says the value's encoding; the three "
        "`fedbus-*` headers carry the producer's signature (docs/events.md, Signing a record; "
        "docs/security.md); `traceparent` and `tracestate` (W3C Trace Context) are the event's "
        "own fields repeated for tracing, never a decision."
    ),
    "properties": {
        "content-type": {
            "type": "string",
            "enum": ["application/json", "avro/binary"],
            "description": "JSON (UTF-8) or Avro binary of the event's schema.",
        },
        "fedbus-key-id": {
            "type": "string",
            "description": "Hex of the first 16 bytes of SHA-256 of the signer's Ed25519 key.",
        },
        "fedbus-signature": {
            "type": "string",
            "description": "64 raw bytes: Ed25519 over the label, batch size and Merkle root.",
        },
        "fedbus-proof": {
            "type": "string",
            "description": "Raw bytes: index and batch size (4 bytes each), then the audit path.",
        },
        "traceparent": {"type": "string"},
        "tracestate": {"type": "string"},
    },
    "required": ["content-type", "fedbus-key-id", "fedbus-signature", "fedbus-proof"],
}


def default_output() -> Path:
    """Return ``docs/asyncapi.yaml`` beside the schema directory."""
    return schema_dir().parent / "docs" / "asyncapi.yaml"


def _id(name: str) -> str:
    """A component key for ``name`` (AsyncAPI keys allow letters, digits, ``.``, ``-``, ``_``)."""
    return re.sub(r"[^\w.\-]", "_", name)


def _address(topic: TopicSpec) -> str:
    if topic.addressed_by is None:
        return topic.name
    return f"{topic.name}.{{{topic.addressed_by}}}"


def _config(topic: TopicSpec) -> dict[str, Any]:
    """The Kafka binding's topicConfiguration: the keys it defines, typed as it wants."""
    out: dict[str, Any] = {}
    for key, value in topic.config.items():
        if key == "cleanup.policy":
            out[key] = value.split(",")
        elif key in ("retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"):
            out[key] = int(value)
    return out


def _channel(topic: TopicSpec, messages: list[str]) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": _address(topic),
        "description": topic.description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "kafka": {
                "topic": topic.name if topic.addressed_by is None else None,
                "partitions": topic.partitions,
                "topicConfiguration": _config(topic),
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    kafka = channel["bindings"]["kafka"]
    if kafka["topic"] is None:
        del kafka["topic"]
    if topic.addressed_by is not None:
        writer = f" Written only by `{topic.writer}`." if topic.writer else ""
        channel["parameters"] = {
            topic.addressed_by: {
                "description": (
                    f"One topic per `{topic.addressed_by}` (the event field of that name).{writer}"
                )
            }
        }
    return channel


def _message(event_type: str, key: str) -> dict[str, Any]:
    schema = load_json(event_schema_path(event_type))
    example_path = schema_dir() / "examples" / f"{event_type}.json"
    message: dict[str, Any] = {
        "name": event_type,
        "title": event_type,
        "summary": schema.get("doc", ""),
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/headers"},
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": schema},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"The event's `{key}` (UTF-8).",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    if example_path.is_file():
        message["examples"] = [{"name": "example", "payload": load_json(example_path)}]
    return message


def document() -> dict[str, Any]:
    """The AsyncAPI document as a mapping."""
    catalog = load_topics()
    known = set(event_types())
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in catalog.topics:
        types = [t for t in topic.event_types if t in known]
        for t in types:
            messages.setdefault(_id(t), _message(t, topic.key))
        channel_id = _id(topic.name)
        channels[channel_id] = _channel(topic, [_id(t) for t in types])
        ref = {"$ref": f"#/channels/{channel_id}"}
        for action, parties in (("send", topic.producers), ("receive", topic.consumers)):
            for party in parties:
                operations[_id(f"{party}.{action}.{topic.name}")] = {
                    "action": action,
                    "channel": ref,
                    "summary": f"{party} {'publishes on' if action == 'send' else 'reads'} "
                    f"{_address(topic)}",
                    "messages": [
                        {"$ref": f"#/channels/{channel_id}/messages/{_id(t)}"} for t in types
                    ],
                }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "fedbus events",
            "version": str(catalog.version),
            "description": (
                "Every event fedbus services and outside systems exchange on Kafka. Generated "
                "by `python -m fedbus.events.asyncapi` from schemas/topics.yaml and the Avro "
                "schemas; docs/events.md explains them. Every record is signed (headers)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka-secure",
                "description": (
                    "The local stack of `make up`: SASL_SSL with SCRAM-SHA-256, one principal "
                    "per service, trainer and upstream tenant (docs/security.md)."
                ),
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": {"headers": HEADERS}, "messages": messages},
    }


def render() -> str:
    """The document as YAML text."""
    header = "# Generated by `python -m fedbus.events.asyncapi`: do not edit by hand.\n"
    return header + yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``docs/asyncapi.yaml``, or with ``--check`` report whether it is stale."""
    return write_or_check(argv, module="fedbus.events.asyncapi", description=__doc__,
                          output=default_output(), render_text=render)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
