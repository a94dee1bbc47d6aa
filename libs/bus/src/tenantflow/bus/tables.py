"""The outbox and inbox tables, placed in the schema of the service that uses them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from tenantflow.bus.db import check_schema_name


@dataclass(frozen=True)
class BusTables:
    schema: str
    metadata: MetaData
    outbox: Table
    inbox: Table
    audit_chain: Table
    """Per tenant, the head of this service's audit chain (``contracts.chain``)."""

    @property
    def notify_channel(self) -> str:
        return f"{self.schema}_outbox"


@cache
def bus_tables(schema: str) -> BusTables:
    check_schema_name(schema)
    metadata = MetaData(schema=schema)
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("headers", JSONB, nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("outbox_published_at", "published_at"),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
        Index("inbox_processed_at", "processed_at"),
    )
    audit_chain = Table(
        "audit_chain",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("seq", BigInteger, nullable=False),
        Column("head", Text, nullable=False),
    )
    return BusTables(schema, metadata, outbox, inbox, audit_chain)
