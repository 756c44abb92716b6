"""Where the audit reads from: the Kafka log (from each partition's beginning to its end at
the time of reading, no consumer group, nothing committed), ``key.published``, and MinIO."""

from __future__ import annotations

from collections.abc import Sequence

from fedbus.bus.acls import AUDITOR_FAMILIES, auditor_topics
from fedbus.bus.signing import KEY_TOPIC, KafkaKeyDirectory
from fedbus.events import TopicCatalog
from fedbus.settings import FedbusSettings
from fedbus_cli.audit.signatures import LogRecord

__all__ = ["audited_topics", "open_key_directory", "read_records"]


def audited_topics(catalog: TopicCatalog, existing: Sequence[str]) -> list[str]:
    """What the auditor's ACLs let it read (:func:`fedbus.bus.acls.auditor_topics`) but
    ``key.published`` (read by the key directory), and the members of
    :data:`~fedbus.bus.acls.AUDITOR_FAMILIES` in ``existing`` (the broker's topic names): a
    tenant's intake topic whose name ends in ``.dlq`` (tenant ``acme.dlq``) too; the family's
    own dead-letter topic is no member (``TopicCatalog.family_of``).
    Trainers' assignments are left out: they carry live presigned upload URLs."""
    plain = [name for name in auditor_topics(catalog) if name != KEY_TOPIC]
    members = [
        name for name in existing
        if (family := catalog.family_of(name)) is not None and family.name in AUDITOR_FAMILIES
    ]  # fmt: skip
    return sorted(set(plain) | set(members))


async def read_records(
    settings: FedbusSettings,
    topics: Sequence[str] | TopicCatalog,
    *,
    key: bytes | None = None,
) -> list[LogRecord]:
    """The records of ``topics`` (a catalog: :func:`audited_topics`) from the beginning up to
    the end each partition had when reading began; with ``key``, only the records of that
    Kafka key (a job id)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        if isinstance(topics, TopicCatalog):
            topics = audited_topics(topics, sorted(await consumer.topics()))
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or ())]  # fmt: skip
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[LogRecord] = []
        todo = {tp for tp in parts if ends[tp] > 0}
        todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        while todo:
            for tp, batch in (await consumer.getmany(*todo, timeout_ms=500)).items():
                out += [
                    LogRecord(r.topic, r.partition, r.offset, r.key, r.value,
                              tuple(r.headers or ()))
                    for r in batch if r.offset < ends[tp] and (key is None or r.key == key)
                ]  # fmt: skip
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return out
    finally:
        await consumer.stop()


async def open_key_directory(
    settings: FedbusSettings, catalog: TopicCatalog
) -> KafkaKeyDirectory | None:
    """The keys of ``key.published`` checked with ``FEDBUS_ROOT_PUBLIC_KEYS``; None without
    root keys. The caller stops it."""
    if not settings.root_public_keys.strip():
        return None
    keys = KafkaKeyDirectory(settings, catalog)
    await keys.start()
    return keys
