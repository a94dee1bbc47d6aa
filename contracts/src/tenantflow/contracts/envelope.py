"""CloudEvents 1.0 over Kafka, binary content mode.

The event's attributes travel as ``ce_``-prefixed headers, the payload is the message value as
``application/json``, and the message key is the tenant id (the partitioning key). A W3C
``traceparent``/``tracestate`` pair passes through untouched.
Spec: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar
from uuid import uuid4

from pydantic import ValidationError

from tenantflow.contracts.chain import ChainLink, link_hash
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.registry import REGISTRY

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_SPECVERSION = "ce_specversion"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_SCHEMAVERSION = "ce_schemaversion"
"""Extension attribute: the payload's integer schema version for its ce_type."""
H_CONTENT_TYPE = "content-type"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
H_CHAINSEQ = "ce_chainseq"
H_CHAINPREV = "ce_chainprev"
H_CHAINHASH = "ce_chainhash"
"""Extension attributes: the event's link in its producer's audit chain (``chain``)."""

Headers = list[tuple[str, bytes]]
P = TypeVar("P", bound=EventPayload)


class EnvelopeError(ValueError):
    """The message is not a tenantflow CloudEvent this process can read."""


class UnknownEventType(EnvelopeError):
    pass


@dataclass(frozen=True)
class Envelope(Generic[P]):
    """One event with its CloudEvents attributes."""

    data: P
    source: str
    id: str = field(default_factory=lambda: str(uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    traceparent: str | None = None
    tracestate: str | None = None
    chain: ChainLink | None = None
    payload: bytes | None = field(default=None, compare=False, repr=False)
    """The payload as serialised once (``chained`` keeps it): the bytes that were hashed."""

    @property
    def type(self) -> str:
        return self.data.event_type

    @property
    def schema_version(self) -> int:
        return self.data.schema_version

    @property
    def subject(self) -> str:
        return str(self.data.tenant_id)

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    @property
    def topic(self) -> str:
        return self.data.topic.value

    @property
    def time_attribute(self) -> str:
        """``ce_time`` as it is sent (RFC 3339, UTC, ``Z``)."""
        return self.time.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def link_hash(self, prev: str, seq: int, value: bytes) -> str:
        """This event's hash as link ``seq`` after ``prev``, ``value`` its published bytes."""
        return link_hash(
            prev,
            seq,
            event_id=self.id,
            source=self.source,
            event_type=self.type,
            schema_version=self.schema_version,
            time=self.time_attribute,
            subject=self.subject,
            topic=self.topic,
            value=value,
        )

    def chained(self, prev: str, seq: int) -> Envelope[P]:
        """This event as link ``seq`` of its producer's chain for its tenant, after ``prev``."""
        value = self.value()
        return replace(
            self, chain=ChainLink(seq, prev, self.link_hash(prev, seq, value)), payload=value
        )

    def headers(self) -> Headers:
        headers: Headers = [
            (H_SPECVERSION, SPEC_VERSION.encode()),
            (H_ID, self.id.encode()),
            (H_SOURCE, self.source.encode()),
            (H_TYPE, self.type.encode()),
            (H_TIME, self.time_attribute.encode()),
            (H_SUBJECT, self.subject.encode()),
            (H_SCHEMAVERSION, str(self.schema_version).encode()),
            (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        ]
        if self.traceparent:
            headers.append((H_TRACEPARENT, self.traceparent.encode()))
        if self.tracestate:
            headers.append((H_TRACESTATE, self.tracestate.encode()))
        if self.chain:
            headers.append((H_CHAINSEQ, str(self.chain.seq).encode()))
            headers.append((H_CHAINPREV, self.chain.prev.encode()))
            headers.append((H_CHAINHASH, self.chain.hash.encode()))
        return headers

    def value(self) -> bytes:
        return self.payload if self.payload is not None else self.data.model_dump_json().encode()


def header_map(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Last value wins, as for CloudEvents attributes; invalid UTF-8 is an envelope error."""
    result: dict[str, str] = {}
    for name, raw in headers:
        try:
            result[name] = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"header {name!r} is not UTF-8") from exc
    return result


def read_type(headers: Sequence[tuple[str, bytes]]) -> tuple[str, int]:
    """The (ce_type, schema version) of a message, without decoding its value."""
    return _type_of(header_map(headers))


def _type_of(attributes: dict[str, str]) -> tuple[str, int]:
    event_type = attributes.get(H_TYPE)
    if not event_type:
        raise EnvelopeError("missing ce_type header")
    raw_version = attributes.get(H_SCHEMAVERSION, "1")
    if not raw_version.isdigit():
        raise EnvelopeError(f"ce_schemaversion {raw_version!r} is not an integer")
    return event_type, int(raw_version)


def decode(
    headers: Sequence[tuple[str, bytes]],
    value: bytes | None,
    accept: Iterable[type[EventPayload]] | None = None,
) -> Envelope[EventPayload]:
    """Decode a Kafka record into an envelope.

    ``accept`` limits decoding to the payload classes a consumer handles; any other type raises
    ``UnknownEventType`` (the caller usually skips it). Unknown payload fields are ignored, so an
    additive change by a producer never breaks a consumer.
    """
    attributes = header_map(headers)
    if attributes.get(H_SPECVERSION) != SPEC_VERSION:
        raise EnvelopeError(f"ce_specversion must be {SPEC_VERSION!r}")
    content_type = attributes.get(H_CONTENT_TYPE, CONTENT_TYPE).split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise EnvelopeError(f"content-type {content_type!r} is not {CONTENT_TYPE}")
    for required in (H_ID, H_SOURCE, H_TIME, H_SUBJECT):
        if not attributes.get(required):
            raise EnvelopeError(f"missing {required} header")
    event_type, version = _type_of(attributes)
    candidates = (
        REGISTRY
        if accept is None
        else {(cls.event_type, cls.schema_version): cls for cls in accept}
    )
    payload_class = candidates.get((event_type, version))
    if payload_class is None:
        raise UnknownEventType(f"{event_type} v{version} is not handled here")
    if value is None:
        raise EnvelopeError("message has no value")
    try:
        data = payload_class.model_validate_json(value, extra="ignore")
    except ValidationError as exc:
        raise EnvelopeError(f"payload does not match {event_type} v{version}: {exc}") from exc
    if str(data.tenant_id) != attributes[H_SUBJECT]:
        raise EnvelopeError("ce_subject differs from the payload's tenant_id")
    try:
        time = datetime.fromisoformat(attributes[H_TIME])
    except ValueError as exc:
        raise EnvelopeError(f"ce_time {attributes[H_TIME]!r} is not RFC 3339") from exc
    return Envelope(
        data=data,
        source=attributes[H_SOURCE],
        id=attributes[H_ID],
        time=time,
        traceparent=attributes.get(H_TRACEPARENT),
        tracestate=attributes.get(H_TRACESTATE),
        chain=_chain(attributes),
    )


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _chain(attributes: dict[str, str]) -> ChainLink | None:
    """The audit chain link, if the producer gave one; a malformed one is an envelope error (a
    replay reports it as altered)."""
    if H_CHAINSEQ not in attributes:
        return None
    seq, prev, digest = (attributes.get(h, "") for h in (H_CHAINSEQ, H_CHAINPREV, H_CHAINHASH))
    if not seq.isdigit() or int(seq) < 1:
        raise EnvelopeError(f"ce_chainseq {seq!r} is not a positive integer")
    for name, hexdigest in ((H_CHAINPREV, prev), (H_CHAINHASH, digest)):
        if not _SHA256_HEX.fullmatch(hexdigest):
            raise EnvelopeError(f"{name} is not a hex SHA-256")
    return ChainLink(int(seq), prev, digest)
