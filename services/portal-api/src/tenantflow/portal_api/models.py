"""Tables of portal-api, all in its own PostgreSQL schema ("portal_api").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from tenantflow.bus.tables import bus_tables

SCHEMA = "portal_api"
metadata = bus_tables(SCHEMA).metadata
