"""Kafka ACLs from the topic catalog: each principal may do what its role does, nothing more.

``schemas/topics.yaml`` names the roles that produce and consume each topic
(``tests/contract/test_catalog_truth.py`` keeps it true). This module turns a role into
Kafka ACL bindings for one SCRAM principal:

* a service ``svc-<service>`` writes the topics its role produces (dead-letter topics
  included: the catalog lists a topic's consumers as producers of its ``.dlq``), reads
  the topics it consumes, and reads consumer groups whose name starts with the service
  name;
* a trainer ``trainer-<client_id>`` has the ``trainer`` role: it writes heartbeats,
  progress and updates (and dead letters to ``round.assigned.dlq``), reads only its own
  topic ``round.assigned.<client_id>`` (which it may create) and ``key.published``, and
  its own group ``trainer-<client_id>``; it cannot read ``round.started``, another
  trainer's assignments, or ``update.submitted``;
* the aggregator, producer of the ``round.assigned`` family, may write, create and describe
  every ``round.assigned.*`` topic (PREFIXED) and reads none of them;
* the auditor ``auditor`` (:func:`auditor_acls`) reads every catalog topic (dead letters
  included) and every tenant's intake topics (PREFIXED), without a consumer group, and
  writes nothing; it does not read ``round.assigned.*``, whose presigned upload URLs would
  let it write updates;
* an outside producer ``upstream-<tenant>`` has the ``upstream`` role: it writes only its
  own intake topics ``upstream.job.requested.<tenant>`` and
  ``upstream.job.cancel.requested.<tenant>`` and reads only ``key.published``;
  orchestration and the gateway read every tenant's (PREFIXED), and take the tenant from
  the topic
  (:meth:`fedbus.events.TopicCatalog.admit`). Only the gateway writes ``job.requested``.

Every principal may DESCRIBE every catalog topic but the families' members (names and
partitions, never records) and the group ``fedbus-topics``, because
:func:`fedbus.bus.ensure_topics` lists the catalog's topics and finds a group coordinator
at start.

Every principal (service, trainer, outside producer) may READ ``key.published`` (LITERAL),
whatever the catalog's consumers say: it holds the public keys every consumer verifies
signatures with (:mod:`fedbus.bus.signing`, which reads it without a consumer group). No
role produces it, so no principal here may write it: only the operator's super user
publishes keys (``deploy/local/stack.py up`` does, with ``python -m fedbus.bus.signing``).

The broker cannot check payloads; the consumer checks what the topic implies
(docs/security.md).

    python -m fedbus.bus.acls apply --services          # every service principal
    python -m fedbus.bus.acls apply --trainer site-a    # one trainer principal
    python -m fedbus.bus.acls apply --upstream acme     # one tenant's outside producer
    python -m fedbus.bus.acls apply --auditor           # the read-only auditor
    python -m fedbus.bus.acls show --services           # print, apply nothing
    python -m fedbus.bus.acls topics --trainer site-a   # catalog topics + round.assigned.site-a
    python -m fedbus.bus.acls topics --upstream acme    # catalog topics + acme's intake topics
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from fedbus.bus.signing import KEY_TOPIC
from fedbus.bus.topics import AddressedTopics, ensure_topics
from fedbus.events import TopicCatalog, TopicSpec, check_client_id, check_tenant, load_topics
from fedbus.settings import FedbusSettings, load_settings

__all__ = [
    "AUDITOR",
    "AUDITOR_FAMILIES",
    "SERVICES",
    "AclBinding",
    "Operation",
    "PatternType",
    "ResourceType",
    "apply_acls",
    "auditor_acls",
    "auditor_topics",
    "role_acls",
    "service_acls",
    "service_principal",
    "trainer_acls",
    "trainer_principal",
    "upstream_acls",
    "upstream_principal",
]

SERVICES = (
    "gateway",
    "orchestration",
    "aggregator",
    "privacy-accountant",
    "model-registry",
)
"""The services that run once per deployment, each with its principal ``svc-<name>``."""

AUDITOR = "auditor"
"""The read-only principal of ``fedbus audit verify``."""

AUDITOR_FAMILIES = ("upstream.job.requested", "upstream.job.cancel.requested")
"""The topic families the auditor reads every member of (not ``round.assigned``)."""

TOPICS_GROUP = "fedbus-topics"
"""The group :func:`fedbus.bus.ensure_topics` asks the coordinator of at start."""


class ResourceType(IntEnum):
    """Kafka's ``ResourceType`` codes (the wire values of CreateAcls)."""

    TOPIC = 2
    GROUP = 3


class PatternType(IntEnum):
    """Kafka's ``PatternType`` codes: a name matched exactly or as a prefix."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's ``AclOperation`` codes used here (READ and WRITE imply DESCRIBE)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


ALLOW = 3  # AclPermissionType.ALLOW
ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` on the resource, from any host."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern: PatternType
    operation: Operation

    def __str__(self) -> str:
        pattern = "*" if self.pattern is PatternType.PREFIXED else ""
        return (
            f"User:{self.principal} {self.operation.name} "
            f"{self.resource_type.name} {self.resource_name}{pattern}"
        )


def service_principal(service: str) -> str:
    """The SCRAM user of a service: ``svc-<service>``."""
    return f"svc-{service}"


def trainer_principal(client_id: str) -> str:
    """The SCRAM user of one trainer: ``trainer-<client_id>``."""
    return f"trainer-{client_id}"


def upstream_principal(tenant: str) -> str:
    """The SCRAM user of one tenant's outside producer: ``upstream-<tenant>``."""
    return f"upstream-{tenant}"


def role_acls(
    catalog: TopicCatalog,
    role: str,
    principal: str,
    *,
    groups: Iterable[tuple[str, PatternType]] = (),
    address: str | None = None,
) -> list[AclBinding]:
    """The bindings of ``principal`` acting as catalog role ``role``, sorted.

    A topic family (``addressed_by``, e.g. ``round.assigned``) is no topic itself: its
    producers may WRITE, CREATE and DESCRIBE every member (PREFIXED ``round.assigned.``);
    a consumer may READ, DESCRIBE and CREATE only the member of its own ``address``
    (``round.assigned.<client_id>``), and nothing of the family without one.

    Every principal may READ (and DESCRIBE) ``key.published``, to verify signatures.
    """
    out: set[AclBinding] = {_topic(principal, KEY_TOPIC, Operation.READ)}
    for topic in catalog.topics:
        if topic.addressed_by is not None:
            out |= _family_acls(topic, role, principal, address)
            continue
        out.add(_topic(principal, topic.name, Operation.DESCRIBE))
        if role in topic.producers:
            out.add(_topic(principal, topic.name, Operation.WRITE))
        if role in topic.consumers:
            out.add(_topic(principal, topic.name, Operation.READ))
    out.add(AclBinding(principal, ResourceType.GROUP, TOPICS_GROUP, PatternType.LITERAL,
                       Operation.DESCRIBE))  # fmt: skip
    for name, pattern in groups:
        out.add(AclBinding(principal, ResourceType.GROUP, name, pattern, Operation.READ))
    return sorted(out)


def _family_acls(
    family: TopicSpec, role: str, principal: str, address: str | None
) -> set[AclBinding]:
    """A family's bindings: a service reaches every member, an addressed party its own.

    A service (no ``address``) that produces the family may WRITE, CREATE and DESCRIBE every
    member (PREFIXED ``round.assigned.``); one that consumes it may READ and DESCRIBE every
    member (``upstream.job.requested.*``). A party with an address (a trainer, a tenant's
    outside producer) gets the same operations on its own member only, and never CREATE on a
    family it writes (its topic is made for it, with the catalog's configuration).
    """
    ops: set[Operation] = set()
    if role in family.producers:
        ops |= {Operation.WRITE, Operation.DESCRIBE}
    if role in family.consumers:
        ops |= {Operation.READ, Operation.DESCRIBE}
    if not ops:
        return set()
    if address is None:
        if role in family.producers:
            ops.add(Operation.CREATE)
        return {
            AclBinding(principal, ResourceType.TOPIC, f"{family.name}.", PatternType.PREFIXED, op)
            for op in ops
        }
    if role in family.consumers:
        ops.add(Operation.CREATE)  # a trainer makes its own topic at start
    return {_topic(principal, family.member(address), op) for op in ops}


def service_acls(catalog: TopicCatalog, service: str) -> list[AclBinding]:
    """A service's bindings; its consumer groups are those whose name starts with it."""
    return role_acls(
        catalog, service, service_principal(service), groups=[(service, PatternType.PREFIXED)]
    )


def trainer_acls(catalog: TopicCatalog, client_id: str) -> list[AclBinding]:
    """One trainer's bindings: its only consumer group is ``trainer-<client_id>`` and the only
    records it reads are its own ``round.assigned.<client_id>`` and ``key.published``."""
    check_client_id(client_id)
    principal = trainer_principal(client_id)
    return role_acls(catalog, "trainer", principal, groups=[(principal, PatternType.LITERAL)],
                     address=client_id)  # fmt: skip


def upstream_acls(catalog: TopicCatalog, tenant: str) -> list[AclBinding]:
    """The bindings of one tenant's outside producer (no consumer group): it writes only its
    own ``upstream.job.requested.<tenant>`` and ``upstream.job.cancel.requested.<tenant>``
    and reads only ``key.published``."""
    check_tenant(tenant)
    return role_acls(catalog, "upstream", upstream_principal(tenant), address=tenant)


def auditor_topics(catalog: TopicCatalog) -> list[str]:
    """The plain catalog topics the auditor reads: all but the families and
    ``round.assigned.dlq`` (a dead letter carries its record, presigned URLs included)."""
    return [t.name for t in catalog.topics
            if t.addressed_by is None and t.dead_letter_of != "round.assigned"]  # fmt: skip


def auditor_acls(catalog: TopicCatalog) -> list[AclBinding]:
    """The auditor's bindings: READ (and DESCRIBE) of :func:`auditor_topics` and of every
    member of :data:`AUDITOR_FAMILIES`; no WRITE, no CREATE, no consumer group (it reads
    partitions it assigns itself, committing nothing)."""
    out = {_topic(AUDITOR, name, op) for name in auditor_topics(catalog)
           for op in (Operation.READ, Operation.DESCRIBE)}  # fmt: skip
    out |= {
        AclBinding(AUDITOR, ResourceType.TOPIC, f"{family}.", PatternType.PREFIXED, op)
        for family in AUDITOR_FAMILIES
        for op in (Operation.READ, Operation.DESCRIBE)
    }
    return sorted(out)


def _topic(principal: str, name: str, operation: Operation) -> AclBinding:
    return AclBinding(principal, ResourceType.TOPIC, name, PatternType.LITERAL, operation)


class AclError(Exception):
    """The broker refused to create an ACL."""


async def apply_acls(settings: FedbusSettings, bindings: Sequence[AclBinding]) -> None:
    """Create ``bindings`` on the broker (as ``settings``' principal, a super user).

    Creating a binding that exists already is a no-op on the broker, so this is idempotent.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), client_id="fedbus-acls")
    await admin.start()
    try:
        for b in bindings:
            request = CreateAclsRequest(
                b.resource_type, b.resource_name, b.pattern, f"User:{b.principal}",
                ANY_HOST, b.operation, ALLOW,
            )  # fmt: skip
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise AclError(f"{b}: error {error_code} {message}")
    finally:
        await admin.close()


def _bindings(args: argparse.Namespace, catalog: TopicCatalog) -> list[AclBinding]:
    out: list[AclBinding] = []
    if args.services:
        for service in SERVICES:
            out += service_acls(catalog, service)
    for client_id in args.trainer:
        out += trainer_acls(catalog, client_id)
    for tenant in args.upstream:
        out += upstream_acls(catalog, tenant)
    if args.auditor:
        out += auditor_acls(catalog)
    return out


async def _ensure_topics(
    settings: FedbusSettings, trainers: Sequence[str], tenants: Sequence[str] = ()
) -> list[str]:
    for client_id in trainers:
        check_client_id(client_id)
    for tenant in tenants:
        check_tenant(tenant)
    created = await ensure_topics(settings)
    created += await AddressedTopics(settings, "round.assigned").ensure(trainers)
    for family in ("upstream.job.requested", "upstream.job.cancel.requested"):
        created += await AddressedTopics(settings, family).ensure(tenants)
    return created


def main(argv: Sequence[str] | None = None) -> int:
    """``apply`` (as the admin of the ``.env``) or ``show`` the bindings asked for; ``topics``
    creates the catalog's topics and each ``--trainer``'s ``round.assigned.<client_id>``."""
    parser = argparse.ArgumentParser(prog="python -m fedbus.bus.acls", description=__doc__)
    parser.add_argument("command", choices=["apply", "show", "topics"])
    parser.add_argument("--services", action="store_true", help="every service principal")
    parser.add_argument("--trainer", action="append", default=[], metavar="CLIENT_ID")
    parser.add_argument("--upstream", action="append", default=[], metavar="TENANT")
    parser.add_argument("--auditor", action="store_true", help="the read-only auditor")
    args = parser.parse_args(argv)
    if args.command == "topics":
        created = asyncio.run(_ensure_topics(load_settings(), args.trainer, args.upstream))
        print(f"created {len(created)} topics: {', '.join(created) or 'none'}")
        return 0
    bindings = _bindings(args, load_topics())
    if args.command == "show":
        print("\n".join(str(b) for b in bindings))
        return 0
    asyncio.run(apply_acls(load_settings(), bindings))
    print(f"applied {len(bindings)} ACL bindings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
