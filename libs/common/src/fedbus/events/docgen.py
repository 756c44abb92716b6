"""Generate ``docs/events.md`` from the schemas, the topic catalog and the examples.

Run ``python -m fedbus.events.docgen`` to rewrite the page, or with ``--check`` to exit
with status 1 when the committed page differs from what the schemas generate.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedbus.events import _doctext
from fedbus.events.registry import event_types
from fedbus.events.schemas import ENVELOPE_FILE, event_schema_path, load_json, schema_dir
from fedbus.events.topics import TopicCatalog, TopicSpec, load_topics

__all__ = ["default_output", "main", "render", "write_or_check"]

logger = logging.getLogger(__name__)


def default_output() -> Path:
    """Return ``docs/events.md`` beside the schema directory."""
    return schema_dir().parent / "docs" / "events.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, list):
        return " | ".join(_type_name(branch) for branch in schema if branch != "null")
    kind = schema["type"]
    if "logicalType" in schema:
        return str(schema["logicalType"])
    if kind == "array":
        return f"array<{_type_name(schema['items'])}>"
    if kind == "map":
        return f"map<{_type_name(schema['values'])}>"
    if kind == "enum":
        return f"enum {schema['name']} ({', '.join(schema['symbols'])})"
    return str(schema["name"]) if kind in ("record", "fixed") else _type_name(kind)


def _presence(field: dict[str, Any]) -> str:
    if "default" not in field:
        return "required"
    return f"default `{json.dumps(field['default'])}`"


def _nested_record(schema: Any) -> dict[str, Any] | None:
    """Return the record definition inside a field type (directly, optional, array, map)."""
    if isinstance(schema, list):
        inner = [branch for branch in schema if branch != "null"]
        return _nested_record(inner[0]) if len(inner) == 1 else None
    if not isinstance(schema, dict):
        return None
    if schema["type"] == "record":
        return schema
    if schema["type"] == "array":
        return _nested_record(schema["items"])
    if schema["type"] == "map":
        return _nested_record(schema["values"])
    return None


def _suffix(schema: Any) -> str:
    inner = [b for b in schema if b != "null"] if isinstance(schema, list) else [schema]
    kind = inner[0]["type"] if len(inner) == 1 and isinstance(inner[0], dict) else None
    return {"array": "[]", "map": "{}"}.get(str(kind), "")


def _field_rows(fields: list[dict[str, Any]], prefix: str = "") -> list[str]:
    rows = []
    for field in fields:
        path = f"{prefix}{field['name']}"
        doc = _cell(field.get("doc", ""))
        kind = _cell(_type_name(field["type"]))
        rows.append(f"| `{path}` | `{kind}` | {_presence(field)} | {doc} |")
        nested = _nested_record(field["type"])
        if nested is not None:
            rows += _field_rows(nested["fields"], f"{path}{_suffix(field['type'])}.")
    return rows


def _table(fields: list[dict[str, Any]]) -> str:
    head = "| field | type | required / default | meaning |\n| --- | --- | --- | --- |"
    return "\n".join([head, *_field_rows(fields)])


def _envelope_section(envelope: dict[str, Any]) -> str:
    intro = (
        "## The envelope\n\nEvery event starts with these fields, flattened into its record "
        "(not wrapped in a `data` field), in this order and with these types "
        f"(`schemas/{ENVELOPE_FILE}`). The tables below list each event's own fields "
        "after them.\n"
    )
    return f"{intro}\n{_table(envelope['fields'])}\n"


def _retention(topic: TopicSpec) -> str:
    retention = topic.config.get("retention.ms", "")
    if retention == "-1":
        return "forever"
    if retention.isdigit():
        return f"{int(retention) // 86_400_000} d"
    return retention or "broker default"


def _shown(topic: TopicSpec) -> str:
    """The topic's name; a family's as its members are named (``round.assigned.<client_id>``)."""
    return topic.member(f"<{topic.addressed_by}>") if topic.addressed_by else topic.name


def _topic_row(topic: TopicSpec) -> str:
    cells = [
        f"`{_shown(topic)}`",
        ", ".join(f"`{event}`" for event in topic.event_types),
        f"`{topic.key}`",
        str(topic.partitions),
        topic.config.get("cleanup.policy", "delete"),
        _retention(topic),
        ", ".join(topic.producers) or "-",
        ", ".join(topic.consumers) or "-",
    ]
    return "| " + " | ".join(cells) + " |"


def _topics_section(catalog: TopicCatalog) -> str:
    head = (
        "| topic | event | key | partitions | cleanup | retention | producers | consumers |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    rows = [_topic_row(topic) for topic in catalog.event_topics()]
    dlq = next((t for t in catalog.topics if t.dead_letter_of is not None), None)
    dlq_line = ""
    if dlq is not None:
        dlq_line = (
            f"\n\nDead-letter topics (`<topic>.dlq`, one per topic above): key `{dlq.key}`, "
            f"{dlq.partitions} partition(s), {dlq.config.get('cleanup.policy', 'delete')}, "
            f"retention {_retention(dlq)}.\n"
        )
    body = "\n".join([head, *rows])
    return f"{_doctext.TOPICS_INTRO}\n{body}{dlq_line}\n{_doctext.DEAD_LETTERS}"


def _event_section(event_type: str, catalog: TopicCatalog, envelope_size: int) -> str:
    schema = load_json(event_schema_path(event_type))
    topics = [t for t in catalog.topics if event_type in t.event_types]
    where = ", ".join(f"`{_shown(t)}`" for t in topics)
    first = topics[0] if topics else None
    routes = ""
    if first is not None and first.dead_letter_of is None:
        producers, consumers = ", ".join(first.producers), ", ".join(first.consumers) or "-"
        routes = f" Key `{first.key}`. Produced by {producers}; consumed by {consumers}."
    example = (schema_dir() / "examples" / f"{event_type}.json").read_text(encoding="utf-8")
    return (
        f"### `{event_type}`\n\n{schema.get('doc', '')}\n\n"
        f"Record `{schema['namespace']}.{schema['name']}`, schema version "
        f"{schema['fedbus.schema_version']}, on {where}.{routes}\n\n"
        f"{_table(schema['fields'][envelope_size:])}\n\n"
        f"<details><summary>Example</summary>\n\n```json\n{example.rstrip()}\n```\n\n</details>\n"
    )


def _outside_section() -> str:
    example = load_json(schema_dir() / "examples" / "job.requested.json")
    return _doctext.OUTSIDE.format(example=json.dumps(example, indent=2))


def render() -> str:
    """Return the Markdown of ``docs/events.md`` as the schemas define it now."""
    catalog = load_topics()
    envelope = load_json(schema_dir() / ENVELOPE_FILE)
    size = len(envelope["fields"])
    events = [_event_section(t, catalog, size) for t in event_types()]
    parts = [
        _doctext.HEADER,
        _topics_section(catalog),
        _envelope_section(envelope),
        _doctext.ENCODINGS,
        _outside_section(),
        "## Events\n",
        *events,
        _doctext.COMPATIBILITY,
    ]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def write_or_check(
    argv: Sequence[str] | None,
    *,
    module: str,
    description: str | None,
    output: Path,
    render_text: Callable[[], str],
) -> int:
    """The command line of a generated page: write it, or with ``--check`` report it stale.

    Returns
    -------
    int
        0 on success or a fresh page; 1 when ``--check`` finds the page stale.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    parser.add_argument("--output", type=Path, default=None, help=f"default: {output}")
    args = parser.parse_args(argv)
    target: Path = args.output if args.output is not None else output
    page = render_text()
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != page:
            sys.stderr.write(f"{target} is stale: run python -m {module}\n")
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``docs/events.md``, or with ``--check`` report whether it is stale."""
    return write_or_check(argv, module="fedbus.events.docgen", description=__doc__,
                          output=default_output(), render_text=render)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
