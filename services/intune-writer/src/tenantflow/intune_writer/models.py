"""Tables of intune-writer, all in its own PostgreSQL schema ("intune_writer").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from tenantflow.bus.tables import bus_tables

SCHEMA = "intune_writer"
metadata = bus_tables(SCHEMA).metadata
