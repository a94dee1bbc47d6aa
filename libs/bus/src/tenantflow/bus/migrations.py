"""What every service's Alembic environment and first migration share."""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import MetaData, text

from tenantflow.bus.tables import bus_tables


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every service's ``migrations/env.py``.

    ``tenantflow.bus.db.migrate`` hands over an open connection and the service's schema;
    Alembic's version table lives in that schema too, so services never see each other's.
    """
    connection = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def service_schema() -> str:
    """The schema the running migration belongs to (set by ``tenantflow.bus.db.migrate``)."""
    schema: str = context.config.attributes["schema"]
    return schema


def create_bus_tables(schema: str) -> None:
    """Outbox, inbox, and the trigger that wakes the relay when a transaction commits rows."""
    tables = bus_tables(schema)
    bind = op.get_bind()
    tables.metadata.create_all(bind, tables=[tables.outbox, tables.inbox])
    op.execute(
        text(
            f"""
            CREATE FUNCTION "{schema}".outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{tables.notify_channel}', '');
                RETURN NULL;
            END $$
            """
        )
    )
    op.execute(
        text(
            f"""
            CREATE TRIGGER outbox_notify AFTER INSERT ON "{schema}".outbox
                FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".outbox_notify();
            """
        )
    )


def create_audit_chain(schema: str) -> None:
    """The heads of the service's audit chains, one per tenant (``Outbox`` keeps them)."""
    tables = bus_tables(schema)
    tables.metadata.create_all(op.get_bind(), tables=[tables.audit_chain])


def drop_audit_chain(schema: str) -> None:
    tables = bus_tables(schema)
    tables.metadata.drop_all(op.get_bind(), tables=[tables.audit_chain])


def drop_bus_tables(schema: str) -> None:
    op.execute(text(f'DROP TRIGGER IF EXISTS outbox_notify ON "{schema}".outbox'))
    op.execute(text(f'DROP FUNCTION IF EXISTS "{schema}".outbox_notify()'))
    tables = bus_tables(schema)
    tables.metadata.drop_all(op.get_bind(), tables=[tables.outbox, tables.inbox])
