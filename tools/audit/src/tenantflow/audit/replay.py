"""The audit trail as the event log holds it: every audit-relevant event, decoded, attributed
and summarised, read straight from Kafka with no consumer group (``bus.reader``).

Audit-relevant topics (kept forever, hash-chained): ``tenants`` (links, Intune writing,
consent, unlinks), ``deployments`` (changes requested, verified or rejected, applied, failed,
superseded) and ``deadletter`` (what a consumer could not handle, and why). The ``directory``
topic is a cache of Entra ID (users, groups, devices), not a record of anyone's
decision, and is not replayed. Events come in the log's order: each partition in offset order,
the partitions merged by when their records were published, so a replay streams in flat memory
however long the log. An event's time is its producer's clock at the event, so two services'
events may show times a little out of that order. A record that cannot be decoded is kept as
an entry of its own, so an auditor sees it rather than a silent gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from tenantflow.audit.trail import STATE_EVENTS, Trail
from tenantflow.bus.reader import PartitionReader, Record, partition_of
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.audit import AUDIT_TOPICS, audit_fields
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import H_SUBJECT, H_TIME, H_TYPE, Envelope, EnvelopeError, decode


@dataclass(frozen=True)
class Filters:
    """Which entries a replay keeps (None: any)."""

    tenant: UUID | None = None
    app: str | None = None
    actor: str | None = None
    """A user's object id, or part of their display name (any case), or a service's name."""
    change: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keep(self, entry: Entry) -> bool:
        if self.tenant is not None and entry.tenant_id != self.tenant:
            return False
        if self.app is not None and entry.app != self.app:
            return False
        if self.change is not None and entry.change_id != self.change:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        if self.until is not None and entry.time > self.until:
            return False
        return self.actor is None or entry.acted_by(self.actor)


@dataclass(frozen=True)
class Entry:
    """One event of the log, as an auditor reads it."""

    time: datetime
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    """Without tenantflow's prefix: ``deployment.change.applied``."""
    tenant_id: UUID | None
    actor: str
    """``user <object id>`` or ``service <name>`` (a user's display name: ``actor_name``)."""
    actor_object_id: UUID | None
    actor_name: str | None
    change_id: UUID | None
    causation_id: str | None
    app: str | None
    revision: int | None
    summary: str
    source: str = ""
    """The service that recorded the event (CloudEvents source, ``/tenantflow/consent``)."""
    data: EventPayload | None = field(default=None, compare=False, repr=False)

    def acted_by(self, actor: str) -> bool:
        wanted = actor.strip().lower()
        return (
            (self.actor_object_id is not None and str(self.actor_object_id) == wanted)
            or (self.actor_name is not None and wanted in self.actor_name.lower())
            or self.actor.lower() == f"service {wanted}"
        )

    FIELDS = (
        "time",
        "tenant_id",
        "event_type",
        "actor",
        "actor_object_id",
        "actor_name",
        "change_id",
        "causation_id",
        "app",
        "revision",
        "summary",
        "source",
        "event_id",
        "topic",
        "partition",
        "offset",
    )
    """The fields of ``row``, in order (a CSV export's header)."""

    def row(self) -> dict[str, Any]:
        """The entry as flat fields (JSON Lines and CSV export)."""
        return {
            "time": self.time.isoformat(),
            "tenant_id": str(self.tenant_id) if self.tenant_id else None,
            "event_type": self.event_type,
            "actor": self.actor,
            "actor_object_id": str(self.actor_object_id) if self.actor_object_id else None,
            "actor_name": self.actor_name,
            "change_id": str(self.change_id) if self.change_id else None,
            "causation_id": self.causation_id,
            "app": self.app,
            "revision": self.revision,
            "summary": self.summary,
            "source": self.source,
            "event_id": self.event_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


def entry_of(record: Record, prefix: str) -> Entry:
    """The record as an entry; an undecodable record becomes an entry that says why."""
    where = {
        "topic": str(record.topic).removeprefix(prefix),
        "partition": record.partition,
        "offset": record.offset,
    }
    try:
        envelope = decode(list(record.headers or []), record.value)
    except EnvelopeError as exc:
        return Entry(
            time=datetime.fromtimestamp(record.timestamp / 1000).astimezone(),
            event_id="",
            event_type="undecodable",
            tenant_id=None,
            actor="unknown",
            actor_object_id=None,
            actor_name=None,
            change_id=None,
            causation_id=None,
            app=None,
            revision=None,
            summary=f"cannot be decoded: {exc}",
            **where,
        )
    return _entry(envelope, where)


def _entry(envelope: Envelope[EventPayload], where: dict[str, Any]) -> Entry:
    return Entry(**audit_fields(envelope), source=envelope.source, data=envelope.data, **where)


@dataclass
class Replay:
    """Reads the audit topics for ``filters`` (one tenant's partitions when a tenant is
    named), from the beginning or from ``filters.since`` (Kafka's offsets for times)."""

    settings: KafkaSettings
    filters: Filters = field(default_factory=Filters)
    on_progress: Callable[[int, int | None], None] | None = None
    """Called after each fetch with the records read so far and the records planned."""
    on_batch: Callable[[list[Record]], None] | None = None
    """Called with every fetch's records as read (each partition's in offset order), before
    any filter: the chain verifier sees them all."""

    def reader(self) -> PartitionReader:
        only = None
        if self.filters.tenant is not None:
            only = {topic: [partition_of(topic, self.filters.tenant)] for topic in AUDIT_TOPICS}
        return PartitionReader(self.settings, AUDIT_TOPICS, only=only, client_id="tenantflow-audit")

    async def runs(self, since: datetime | None = None) -> AsyncIterator[list[Record]]:
        """The log's records for ``filters.tenant`` (all of them without one), from ``since``,
        a run at a time in the log's order (``PartitionReader.in_time_order``), each handed
        to ``on_batch`` first and counted for ``on_progress`` once the caller is done with it."""
        reader, read = self.reader(), 0
        async for run in reader.in_time_order(since):
            if self.on_batch is not None:
                self.on_batch(run)
            yield run
            read += len(run)
            if self.on_progress is not None:
                self.on_progress(read, reader.planned)

    async def entries(self) -> AsyncIterator[Entry]:
        """The kept entries in the log's order, streamed: each partition in offset order, the
        partitions merged by when Kafka got their records (``PartitionReader.in_time_order``);
        undecodable records always. For an actor: what they did, and the rest of the story of
        every change they asked for (its verification and outcome come from services, after
        the request on the same partition)."""
        theirs: set[UUID] = set()
        filters, actor = replace(self.filters, actor=None), self.filters.actor
        async for run in self.runs(self.filters.since):
            for record in run:
                entry = entry_of(record, self.settings.topic_prefix)
                if entry.event_type != "undecodable":
                    if not filters.keep(entry):
                        continue
                    if actor is not None:
                        if entry.acted_by(actor):
                            if entry.change_id is not None:
                                theirs.add(entry.change_id)
                        elif entry.change_id not in theirs:
                            continue
                yield entry

    async def timeline(self) -> list[Entry]:
        """The kept entries, in the log's order (``entries``)."""
        return [entry async for entry in self.entries()]

    async def trail(self, at: datetime | None = None) -> Trail:
        """Every deployment's state at ``at`` (None: now), of ``filters.tenant`` or of every
        tenant: the log read in publication order, each record's headers scanned and only
        the state's own events of the tenant parsed (``trail.Trail``)."""
        result = Trail(at)
        subject = str(self.filters.tenant).encode() if self.filters.tenant else None
        async for run in self.runs():
            for record in run:
                if subject is not None and record.key != subject:
                    continue  # another tenant's (events are keyed by tenant id)
                fact = _fact(record.headers)
                if fact is None or (subject is not None and fact[1] != subject):
                    continue
                event_type, tenant, time = fact
                try:
                    moment = datetime.fromisoformat(time.decode())
                except ValueError:
                    result.malformed += 1
                    continue
                result.feed(event_type, tenant.decode(), moment, record.value or b"")
        return result


def _fact(headers: Sequence[tuple[str, bytes]]) -> tuple[str, bytes, bytes] | None:
    """(type, tenant, time) of a record of the state's events (``trail.STATE_EVENTS``), read
    from its headers alone; None for any other record."""
    attributes = dict(headers)
    event_type, subject, time = (attributes.get(h) for h in (H_TYPE, H_SUBJECT, H_TIME))
    if event_type is None or subject is None or time is None:
        return None
    kind = _STATE_TYPES.get(event_type)
    return None if kind is None else (kind, subject, time)


_STATE_TYPES = {kind.encode(): kind for kind in STATE_EVENTS}
