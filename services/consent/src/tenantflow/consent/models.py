"""Tables of consent, all in its own PostgreSQL schema ("consent").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from tenantflow.bus.tables import bus_tables

SCHEMA = "consent"
metadata = bus_tables(SCHEMA).metadata
