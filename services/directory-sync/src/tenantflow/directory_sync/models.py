"""Tables of directory-sync, all in its own PostgreSQL schema ("directory_sync").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from tenantflow.bus.tables import bus_tables

SCHEMA = "directory_sync"
metadata = bus_tables(SCHEMA).metadata
