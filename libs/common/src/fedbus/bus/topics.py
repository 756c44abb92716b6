"""Creating the catalog's topics (``schemas/topics.yaml``) on a broker at start-up."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fedbus.events import TopicCatalog, load_topics
from fedbus.events.topics import DEAD_LETTER_SUFFIX
from fedbus.settings import FedbusSettings

__all__ = ["dlq_topic", "ensure_topics", "reset_group_to_end"]

log = logging.getLogger(__name__)


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DEAD_LETTER_SUFFIX


async def ensure_topics(
    settings: FedbusSettings,
    catalog: TopicCatalog | None = None,
    *,
    replication_factor: int = 1,
) -> list[str]:
    """Create every catalog topic (dead-letter topics included) that does not exist yet.

    Returns the names created; existing topics are left as they are.
    """
    specs = (catalog or load_topics()).topics
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), client_id="fedbus-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [
                NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.kafka_config())
                for s in missing
            ]
            await admin.create_topics(new)
            log.info("created topics %s", ", ".join(s.name for s in missing))
        return [s.name for s in missing]
    finally:
        await admin.close()


async def reset_group_to_end(settings: FedbusSettings, topic: str, group_id: str) -> None:
    """Commit ``group_id``'s offsets on ``topic`` to the current end of every partition.

    A new consumer group starts at the beginning of the log; this makes it start with the
    next event instead (for example a dashboard that only wants what happens from now on).
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.commit(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
