"""The audit hash chain: each audit event names the hash of the one before it.

One chain per producer and tenant: every event a service (``ce_source``) publishes about a
tenant on an audit topic carries its place in that service's chain for that tenant. A service's
outbox assigns the places in the transaction that stores the event, so a chain has no gap and no
fork whatever crashes when, and it needs no coordination between services (each owns its
database). Three services producing for one tenant make three chains; the replay checks each.

A link's hash is SHA-256 over the previous link's hash, its place, the event's CloudEvents
attributes that say what it is (id, source, type, schema version, time, subject), its topic and
its payload bytes as published. Altering any of them, dropping an event or moving one breaks the
chain at that point, and the replay names it.

The link travels as CloudEvents extension attributes (``ce_chainseq``, ``ce_chainprev``,
``ce_chainhash``): consumers that do not know them ignore them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

GENESIS = "0" * 64
"""The previous hash of a chain's first link."""


@dataclass(frozen=True)
class ChainLink:
    seq: int
    """The event's place in its producer's chain for its tenant: 1, 2, 3, …"""
    prev: str
    """Hex SHA-256 of the link before (``GENESIS`` for the first)."""
    hash: str
    """Hex SHA-256 of this link (``link_hash``)."""


def link_hash(
    prev: str,
    seq: int,
    *,
    event_id: str,
    source: str,
    event_type: str,
    schema_version: int,
    time: str,
    subject: str,
    topic: str,
    value: bytes,
) -> str:
    """The hash of one link; ``time`` as the ``ce_time`` header has it, ``topic`` without any
    deployment's prefix (the contracts' name)."""
    digest = hashlib.sha256()
    for part in (prev, str(seq), event_id, source, event_type, str(schema_version), time, subject):
        digest.update(part.encode())
        digest.update(b"\n")
    digest.update(topic.encode())
    digest.update(b"\n")
    digest.update(value)
    return digest.hexdigest()
