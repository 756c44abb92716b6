"""Creating the catalog's topics (``schemas/topics.yaml``) on a broker at start-up."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fedbus.events import TopicCatalog, load_topics
from fedbus.events.topics import DEAD_LETTER_SUFFIX
from fedbus.settings import FedbusSettings

__all__ = ["dlq_topic", "ensure_topics"]

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
