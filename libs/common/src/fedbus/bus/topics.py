"""Creating the catalog's topics (``schemas/topics.yaml``) on a broker at start-up."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from fedbus.errors import RetryableError
from fedbus.events import TopicCatalog, load_topics
from fedbus.events.topics import DEAD_LETTER_SUFFIX
from fedbus.settings import FedbusSettings

__all__ = [
    "AddressedTopics",
    "TopicsUnavailableError",
    "catalog",
    "dlq_topic",
    "ensure_topics",
    "reset_group_to_end",
]

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
"""How long :func:`ensure_topics` waits for new partitions' leaders and the group coordinator."""


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``; a family's members share one
    (``round.assigned.c1`` -> ``round.assigned.dlq``)."""
    family = catalog().family_of(topic)
    return (family.name if family is not None else topic) + DEAD_LETTER_SUFFIX


@functools.cache
def catalog() -> TopicCatalog:
    """The topic catalog (``schemas/topics.yaml``), loaded once per process."""
    return load_topics()


async def ensure_topics(
    settings: FedbusSettings,
    catalog: TopicCatalog | None = None,
    *,
    replication_factor: int = 1,
) -> list[str]:
    """Create every catalog topic (dead-letter topics included) that does not exist yet.

    A family's members (``round.assigned.<client_id>``) are not created here: see
    :class:`AddressedTopics`.

    Then wait until every new partition has a leader and the broker's group coordinator
    answers: on a fresh broker a client that comes first would retry (and log each retry)
    until then. Returns the names created; existing topics are left as they are.
    """
    specs = [s for s in (catalog or load_topics()).topics if s.addressed_by is None]
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
            new_partitions = [
                TopicPartition(s.name, p) for s in missing for p in range(s.partitions)
            ]
            await _wait_for_leaders(settings, new_partitions)
        await _wait(lambda: _coordinator_found(admin), "the group coordinator")
        return [s.name for s in missing]
    finally:
        await admin.close()


class TopicsUnavailableError(RetryableError):
    """Topics could not be created now (broker unreachable, or no CREATE permission)."""


class AddressedTopics:
    """Creates the members of a topic family (``round.assigned.<client_id>``) on demand.

    Remembers the names known to exist, so a publisher asks the broker once per addressee
    and process. Each member gets the family's partitions and configuration.

    Parameters
    ----------
    settings
        Connection settings; the principal needs CREATE (and DESCRIBE) on the members.
    family
        The catalog name of the family (``round.assigned``).
    """

    def __init__(
        self,
        settings: FedbusSettings,
        family: str,
        *,
        catalog: TopicCatalog | None = None,
        replication_factor: int = 1,
    ) -> None:
        self._settings = settings
        self._spec = (catalog or load_topics()).get(family)
        if self._spec.addressed_by is None:
            raise ValueError(f"topic {family} is not a family")
        self._replication = replication_factor
        self._known: set[str] = set()

    async def ensure(self, values: Iterable[str]) -> list[str]:
        """Make sure the member of each value exists; returns the names created."""
        wanted = {self._spec.member(v) for v in values} - self._known
        if not wanted:
            return []
        try:
            created = await self._create_missing(sorted(wanted))
        except KafkaError as exc:  # the broker, or this principal's ACLs: retried, then DLQ
            raise TopicsUnavailableError(f"creating {', '.join(sorted(wanted))}: {exc}") from exc
        if created:
            log.info("created topics %s", ", ".join(created))
            parts = [TopicPartition(t, p) for t in created for p in range(self._spec.partitions)]
            await _wait_for_leaders(self._settings, parts)
        self._known |= wanted
        return created

    async def _create_missing(self, wanted: list[str]) -> list[str]:
        admin = AIOKafkaAdminClient(
            **self._settings.kafka_client_options(), client_id="fedbus-topics"
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            return await self._create(admin, [n for n in wanted if n not in existing])
        finally:
            await admin.close()

    async def _create(self, admin: AIOKafkaAdminClient, names: list[str]) -> list[str]:
        if not names:
            return []
        config = self._spec.kafka_config()
        new = [NewTopic(n, self._spec.partitions, self._replication, topic_configs=config)
               for n in names]  # fmt: skip
        response = await admin.create_topics(new)
        created = []
        for name, code, *_ in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:  # made meanwhile by someone else
                raise for_code(code)(f"create topic {name}")
        return created


async def _wait(ready: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``ready()`` until true; after :data:`READY_TIMEOUT_S` leave it to the clients."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await ready():
        if time.monotonic() > deadline:
            log.warning("kafka: still waiting for %s after %.0fs; going on", what, READY_TIMEOUT_S)
            return
        await asyncio.sleep(0.1)


async def _wait_for_leaders(settings: FedbusSettings, partitions: list[TopicPartition]) -> None:
    """Wait until every new partition's leader answers a ListOffsets request.

    The broker names a new partition's leader in its metadata a moment before that leader
    serves it; aiokafka retries the request meanwhile and logs each retry at ERROR. Those
    retries are what this waits through, so they are muted here (and only here).
    """
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None)
    await consumer.start()
    fetcher_log = logging.getLogger("aiokafka.consumer.fetcher")
    level = fetcher_log.level
    fetcher_log.setLevel(logging.CRITICAL)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await consumer.end_offsets(partitions)
    except (KafkaError, TimeoutError) as exc:
        log.warning("kafka: new partitions not served yet (%s); going on", exc)
    finally:
        fetcher_log.setLevel(level)
        await consumer.stop()


async def _coordinator_found(admin: AIOKafkaAdminClient) -> bool:
    # The first FindCoordinator on a fresh broker also creates __consumer_offsets.
    try:
        await admin.find_coordinator("fedbus-topics")
    except KafkaError:
        return False
    return True


async def reset_group_to_end(settings: FedbusSettings, topic: str, group_id: str) -> None:
    """Commit ``group_id``'s offsets on ``topic`` to the current end of every partition.

    A new consumer group starts at the beginning of the log; this makes it start with the
    next event instead (for example a dashboard that only wants what happens from now on).
    ``topic`` may name a family (``upstream.job.requested``): then every member that exists
    now is moved to its end (a member made later is read from its beginning).
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topics = catalog()
        is_family = any(f.name == topic for f in topics.families())
        partitions = None if is_family else consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
        if is_family:
            members = [t for t in consumer._client.cluster.topics()
                       if (f := topics.family_of(t)) is not None and f.name == topic]  # fmt: skip
        else:
            members = [topic]
        tps = [
            TopicPartition(name, p)
            for name in sorted(members)
            for p in sorted(consumer.partitions_for_topic(name) or set())
        ]
        if not tps:  # no such topic (a family without members, or not created yet)
            return
        consumer.assign(tps)
        await consumer.commit(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
