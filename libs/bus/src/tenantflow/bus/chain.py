"""Checking the audit hash chains (``contracts.chain``) of records as read from Kafka.

Feed every record of the audit topics, each partition in offset order (``PartitionReader``
gives them so); ``finish`` then lists every break with the topic, partition and offset of the
record where it shows:

- ``altered``: the record's hash is not what its content gives, or its link is malformed;
- ``gap``: a place in the chain is missing (an event dropped, or never published);
- ``reordered``: a place comes after a later one of the same chain on the same partition;
- ``forked``: a link does not name the hash of the place before it (an event replaced);
- ``unchained``: an event on an audit topic without a link.

A chain is one producer's (``ce_source``) for one tenant; its events may be on several topics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tenantflow.contracts.chain import GENESIS
from tenantflow.contracts.envelope import EnvelopeError, decode, header_map

Position = tuple[str, int, int]
"""(topic, partition, offset) of a record."""


@dataclass(frozen=True)
class Break:
    kind: str
    position: Position
    chain: tuple[str, str]
    """(producer, tenant) of the chain, as far as the record tells."""
    detail: str


@dataclass
class _Seen:
    hash: str
    prev: str
    position: Position


@dataclass
class ChainVerifier:
    topic_prefix: str = ""
    """The deployment's topic prefix (``KAFKA_TOPIC_PREFIX``), not part of what is hashed."""
    links: dict[tuple[str, str], dict[int, _Seen]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    breaks: list[Break] = field(default_factory=list)
    checked: int = 0
    _last: dict[tuple[str, str, str, int], tuple[int, Position]] = field(default_factory=dict)

    def feed(self, records: Iterable[Any]) -> None:
        """``records``: aiokafka records (topic, partition, offset, headers, value)."""
        for record in records:
            self._one(record, record.topic.removeprefix(self.topic_prefix))

    def _one(self, record: Any, topic: str) -> None:
        position = (record.topic, record.partition, record.offset)
        attributes = header_map(record.headers)
        chain = (attributes.get("ce_source", "?"), attributes.get("ce_subject", "?"))
        self.checked += 1
        try:
            envelope = decode(record.headers, record.value)
        except EnvelopeError as exc:
            self.breaks.append(Break("altered", position, chain, str(exc)))
            return
        link = envelope.chain
        if link is None:
            self.breaks.append(Break("unchained", position, chain, "no audit chain link"))
            return
        if envelope.topic != topic:
            self.breaks.append(Break("altered", position, chain, f"a {envelope.topic} event"))
            return
        if envelope.link_hash(link.prev, link.seq, record.value) != link.hash:
            self.breaks.append(Break("altered", position, chain, f"place {link.seq}: bad hash"))
            return
        where = (*chain, record.topic, record.partition)
        last = self._last.get(where)
        if last is not None and last[0] > link.seq:
            self.breaks.append(
                Break(
                    "reordered",
                    position,
                    chain,
                    f"place {link.seq} after place {last[0]} (offset {last[1][2]})",
                )
            )
        self._last[where] = (max(link.seq, last[0]) if last else link.seq, position)
        seen = self.links[chain]
        if link.seq in seen:
            if seen[link.seq].hash != link.hash:
                self.breaks.append(
                    Break("forked", position, chain, f"place {link.seq} twice, different events")
                )
            return  # the same event read twice (a producer's retry): not a break
        seen[link.seq] = _Seen(link.hash, link.prev, position)

    def finish(self) -> list[Break]:
        """Every break found, the chains' gaps and forks included, in log order."""
        for chain, seen in self.links.items():
            expected_prev = GENESIS
            for seq in range(1, max(seen) + 1):
                here = seen.get(seq)
                if here is None:
                    after = next(seen[s] for s in sorted(seen) if s > seq)
                    self.breaks.append(
                        Break("gap", after.position, chain, f"place {seq} is missing")
                    )
                    expected_prev = ""
                    continue
                if expected_prev and here.prev != expected_prev:
                    self.breaks.append(
                        Break("forked", here.position, chain, f"place {seq} follows another event")
                    )
                expected_prev = here.hash
        return sorted(set(self.breaks), key=lambda b: (b.position, b.kind))
